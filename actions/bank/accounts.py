"""A verified customer's cards and what is on them: balances, transactions, credit-card statements.

Also the card rules the dialogue needs before it moves anything: which statement a caller means, which debit
card a repayment comes from, which card 「激活新卡」 means.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from actions.bank import lookups
from actions.bank.models import Account, Card, Customer, Statement, Transaction
from actions.bank.store import BankStore
from actions.bank.views import CardKind, CardStatus, CardView, StatementView, TransactionView

MAX_TRANSACTIONS = 100


class AccountService:
    """Read access to a verified customer's cards and accounts, on the shared store."""

    def __init__(self, store: BankStore) -> None:
        self._store = store

    def cards(self, customer_ref: str) -> list[CardView]:
        """The customer's cards, oldest first; UnknownCustomer for an unknown reference."""
        with self._store.transaction(read_only=True) as session:
            owner = lookups.customer(session, customer_ref)
            cards = session.scalars(select(Card).where(Card.customer_id == owner.id).order_by(Card.id)).all()
            return [lookups.card_view(card, owner) for card in cards]

    def card(self, customer_ref: str, card_last4: str | None) -> CardView | None:
        """The customer's own card ending `card_last4`, or None (also for someone else's card or a malformed one)."""
        with self._store.transaction(read_only=True) as session:
            owner = lookups.customer(session, customer_ref)
            card = lookups.own_card_or_none(session, owner, card_last4)
            return lookups.card_view(card, owner) if card is not None else None

    def balance(self, customer_ref: str, card_last4: str) -> int:
        """Cents: the money on a debit card, the available credit (limit minus what is owed) on a credit card."""
        with self._store.transaction(read_only=True) as session:
            card = lookups.own_card(session, customer_ref, card_last4)
            account = session.get(Account, card.account_id)
            if card.kind == CardKind.CREDIT:
                return account.credit_limit_cents + account.balance_cents
            return account.balance_cents

    def transactions(
        self,
        customer_ref: str,
        card_last4: str,
        limit: int = 5,
        start: date | None = None,
        end: date | None = None,
    ) -> list[TransactionView]:
        """The card account's transactions, newest first; `start`/`end` are inclusive bank days."""
        limit = max(1, min(int(limit), MAX_TRANSACTIONS))
        with self._store.transaction(read_only=True) as session:
            card = lookups.own_card(session, customer_ref, card_last4)
            query = select(Transaction).where(Transaction.account_id == card.account_id)
            if start is not None:
                query = query.where(Transaction.posted_at >= datetime.combine(start, time.min))
            if end is not None:
                query = query.where(Transaction.posted_at < datetime.combine(end + timedelta(days=1), time.min))
            query = query.order_by(Transaction.posted_at.desc(), Transaction.id.desc()).limit(limit)
            return [
                TransactionView(t.posted_at, t.description, t.amount_cents, t.balance_after_cents)
                for t in session.scalars(query)
            ]

    def credit_card_statement(self, customer_ref: str, card_last4: str | None = None) -> StatementView | None:
        """The latest statement of that credit card; without a card, the customer's statement with most still due.

        None when the card is not a credit card or has no statement yet; NotYourCard for someone else's card.
        """
        with self._store.transaction(read_only=True) as session:
            owner = lookups.customer(session, customer_ref)
            card = lookups.own_card(session, customer_ref, card_last4) if card_last4 is not None else None
            return _statement_to_pay(session, owner, card)

    def statement_for(self, customer_ref: str, card_last4: str | None) -> StatementView | None:
        """The statement a caller means: that of the card they named if it is their credit card, otherwise
        their statement with most still due (they named a debit card, someone else's card, or none)."""
        with self._store.transaction(read_only=True) as session:
            owner = lookups.customer(session, customer_ref)
            named = lookups.own_card_or_none(session, owner, card_last4)
            card = named if named is not None and named.kind == CardKind.CREDIT else None
            return _statement_to_pay(session, owner, card)

    def debit_source(self, customer_ref: str, preferred_last4: str | None) -> CardView | None:
        """The customer's debit card a repayment comes from; see `debit_source`."""
        return debit_source(self.cards(customer_ref), preferred_last4)

    def card_to_activate(self, customer_ref: str, named_last4: str | None) -> str | None:
        """The last-4 of the card the caller means to activate; see `card_to_activate`."""
        return card_to_activate(self.cards(customer_ref), named_last4)


def debit_source(cards: Sequence[CardView], preferred_last4: str | None) -> CardView | None:
    """The debit card to pay from: the preferred card if it is an active debit card, else the first active one."""
    debit = [card for card in cards if card.kind is CardKind.DEBIT and card.status is CardStatus.ACTIVE]
    return next((card for card in debit if card.last4 == preferred_last4), debit[0] if debit else None)


def card_to_activate(cards: Sequence[CardView], named_last4: str | None) -> str | None:
    """The card the caller means: the one named, unless it is active and exactly one other card awaits
    activation (a caller verified earlier with their old card who says 「激活新卡」)."""
    inactive = [card.last4 for card in cards if card.status is CardStatus.INACTIVE]
    named = next((card for card in cards if card.last4 == named_last4), None)
    if named is not None and named.status is CardStatus.ACTIVE and len(inactive) == 1:
        return inactive[0]
    return named_last4


def _statement_to_pay(session: Session, owner: Customer, card: Card | None) -> StatementView | None:
    """The latest statement of `card`, or with no card the owner's latest statement with most still due."""
    query = (
        select(Statement, Card)
        .join(Card, Statement.card_id == Card.id)
        .where(Card.customer_id == owner.id, Card.kind == CardKind.CREDIT)
        .order_by(Statement.statement_date.desc(), Statement.id.desc())
    )
    if card is not None:
        query = query.where(Card.id == card.id)
    latest_per_card: dict[int, StatementView] = {}
    for statement, statement_card in session.execute(query):
        latest_per_card.setdefault(statement_card.id, lookups.statement_view(statement, statement_card))
    if not latest_per_card:
        return None
    return max(latest_per_card.values(), key=lambda view: (view.remaining_due_cents, view.due_date))
