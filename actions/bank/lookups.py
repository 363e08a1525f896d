"""Row lookups the bank domains share, inside a transaction they already hold, and the views made from rows.

Whose card is whose is decided here only: a verified customer's card is found among that customer's cards,
never among everyone's.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from actions.bank.errors import NotYourCard, UnknownCustomer
from actions.bank.models import Card, Customer, Statement
from actions.bank.normalise import clean_last4, normalise_phone
from actions.bank.views import CardStatus, CardView, StatementView


def customer(session: Session, customer_ref: str) -> Customer:
    found = session.scalars(select(Customer).where(Customer.ref == customer_ref)).first()
    if found is None:
        raise UnknownCustomer(f"no customer {customer_ref!r}")
    return found


def locked_customer(session: Session, customer_ref: str) -> Customer:
    """The customer row, locked for this transaction (FOR UPDATE; SQLite is serialised by BEGIN IMMEDIATE).

    Operations on a customer's money take this lock first, so concurrent requests of one customer are serialised.
    """
    found = session.scalars(select(Customer).where(Customer.ref == customer_ref).with_for_update()).first()
    if found is None:
        raise UnknownCustomer(f"no customer {customer_ref!r}")
    return found


def own_card_or_none(session: Session, owner: Customer, last4: object) -> Card | None:
    """The customer's card ending `last4`, or None (also for a malformed last-4)."""
    digits = clean_last4(last4)
    if digits is None:
        return None
    return session.scalars(
        select(Card).where(Card.customer_id == owner.id, Card.last4 == digits).order_by(Card.id)
    ).first()


def own_card(session: Session, customer_ref: str, last4: object) -> Card:
    """The customer's card ending `last4`; NotYourCard when they have none."""
    card = own_card_or_none(session, customer(session, customer_ref), last4)
    if card is None:
        raise NotYourCard(f"customer {customer_ref} has no card ending {clean_last4(last4) or '(invalid)'}")
    return card


def card_by_last4(session: Session, last4: object, caller_phone: str | None) -> tuple[Card, Customer] | None:
    """Anyone's card ending `last4`: the caller's own first, then an active one, then the oldest."""
    digits = clean_last4(last4)
    if digits is None:
        return None
    rows = session.execute(
        select(Card, Customer).join(Customer, Card.customer_id == Customer.id)
        .where(Card.last4 == digits).order_by(Card.id)
    ).all()
    if not rows:
        return None
    phone = normalise_phone(caller_phone)
    best = min(rows, key=lambda row: (row[1].reserved_phone != phone, row[0].status != CardStatus.ACTIVE))
    return best[0], best[1]


def latest_statement(session: Session, card_id: int) -> Statement | None:
    return session.scalars(
        select(Statement).where(Statement.card_id == card_id)
        .order_by(Statement.statement_date.desc(), Statement.id.desc())
    ).first()


def card_view(card: Card, owner: Customer) -> CardView:
    return CardView(card.last4, card.kind, card.status, owner.ref)


def statement_view(statement: Statement, card: Card) -> StatementView:
    return StatementView(card.last4, statement.amount_due_cents, statement.minimum_due_cents,
                         statement.due_date, statement.paid_cents)
