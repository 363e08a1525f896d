"""Everything that changes a customer's money or cards: repayment, transfer, card loss, activation.

Rules kept here:
- money is integer cents, never float; the dialogue checks a heard amount with `money.is_phone_amount` and
  `transfer_limit_left` before it reads the request back, and the movement checks everything again;
- repayment, transfer and card loss are idempotent per request id: a retry returns the stored result, marked
  `repeated` (`IdempotencyRecord`); and they commit only before the caller's reply deadline (`commit_deadline`),
  so a movement is never done after the dialogue gave up and apologised;
- each operation locks the customer's row first, so concurrent requests of one customer are serialised.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time as clock
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from actions.bank import lookups
from actions.bank.accounts import AccountService
from actions.bank.errors import BankUnavailable, DeadlineExceeded, IdempotencyConflict
from actions.bank.models import Account, CardLossReport, Customer, IdempotencyRecord, Repayment, Transaction, Transfer
from actions.bank.money import is_valid_amount
from actions.bank.normalise import required_text
from actions.bank.store import BankStore, bank_now, reference_number
from actions.bank.views import (
    ActivationResult,
    ActivationStatus,
    CardKind,
    CardLossResult,
    CardLossStatus,
    CardStatus,
    RepaymentPlan,
    RepaymentResult,
    RepaymentStatus,
    StrEnum,
    TransferResult,
    TransferStatus,
)

log = logging.getLogger(__name__)

Result = TypeVar("Result")


@dataclass(frozen=True)
class _Operation:
    """An idempotent operation: its name in the idempotency records, its result, and the status that is stored."""

    name: str
    result_type: type
    # The outcome that changed something. Only it is stored: a refused request wrote nothing, so running it again
    # is harmless and lets the caller retry after, say, topping up the account.
    stored_status: StrEnum


_REPAYMENT = _Operation("repayment", RepaymentResult, RepaymentStatus.OK)
_TRANSFER = _Operation("transfer", TransferResult, TransferStatus.OK)
_CARD_LOSS = _Operation("card_loss", CardLossResult, CardLossStatus.REPORTED)

# time.monotonic() by which a money movement must be ready to commit; None: no deadline (tests, the CLI).
_COMMIT_DEADLINE: ContextVar[float | None] = ContextVar("bank_commit_deadline", default=None)


@contextmanager
def commit_deadline(deadline: float | None) -> Iterator[None]:
    """Money movements inside this block roll back, raising DeadlineExceeded, when ready after `deadline`."""
    token = _COMMIT_DEADLINE.set(deadline)
    try:
        yield
    finally:
        _COMMIT_DEADLINE.reset(token)


class PaymentService:
    """Money movements and card state changes of a verified customer, on the shared store."""

    def __init__(self, store: BankStore, accounts: AccountService) -> None:
        self._store = store
        self._accounts = accounts

    def repayment_plan(self, customer_ref: str, card_last4: str | None) -> RepaymentPlan:
        """The statement the caller means (see `AccountService.statement_for`) and the debit card to pay from."""
        statement = self._accounts.statement_for(customer_ref, card_last4)
        return RepaymentPlan(statement, self._accounts.debit_source(customer_ref, card_last4))

    def repay_credit_card(
        self, customer_ref: str, credit_last4: str, from_debit_last4: str, amount_cents: int, request_id: str
    ) -> RepaymentResult:
        """Pay `amount_cents` (at most what is still due) from the customer's debit card to their credit card."""
        if not is_valid_amount(amount_cents):
            return RepaymentResult(RepaymentStatus.INVALID_AMOUNT)
        params = {"credit": credit_last4, "debit": from_debit_last4, "amount": amount_cents}

        def repay(session: Session, customer: Customer, now: datetime) -> RepaymentResult:
            return _repay(session, customer, credit_last4, from_debit_last4, amount_cents, now)

        return self._once(_REPAYMENT, customer_ref, request_id, params, repay)

    def transfer(
        self,
        customer_ref: str,
        from_last4: str,
        to_last4: str,
        amount_cents: int,
        request_id: str,
        today: date | None = None,
    ) -> TransferResult:
        """Move money between two of the customer's own cards, from a debit card, within the daily limit."""
        if not is_valid_amount(amount_cents):
            return TransferResult(TransferStatus.INVALID_AMOUNT)
        if from_last4 == to_last4:
            return TransferResult(TransferStatus.SAME_CARD)
        params = {"from": from_last4, "to": to_last4, "amount": amount_cents}
        daily_limit = self._store.config.daily_transfer_limit_cents

        def move(session: Session, customer: Customer, now: datetime) -> TransferResult:
            if today is not None:
                now = datetime.combine(today, now.time())
            return _transfer(session, customer, (from_last4, to_last4), amount_cents, daily_limit, now)

        return self._once(_TRANSFER, customer_ref, request_id, params, move)

    def transfer_limit_left(self, customer_ref: str, today: date | None = None) -> int:
        """Cents the customer may still transfer today (bank day), so a larger amount is refused before a read-back."""
        day = today or bank_now().date()
        with self._store.transaction(read_only=True) as session:
            customer = lookups.customer(session, customer_ref)
            return _limit_left(session, customer, day, self._store.config.daily_transfer_limit_cents)

    def report_card_loss(self, customer_ref: str, card_last4: str, request_id: str) -> CardLossResult:
        """Mark the card lost and return a report reference; a card already lost is not reported twice."""

        def report(session: Session, customer: Customer, now: datetime) -> CardLossResult:
            return _report_loss(session, customer, card_last4, now)

        params = {"card": card_last4}
        return self._once(_CARD_LOSS, customer_ref, request_id, params, report)

    def activate_card(self, customer_ref: str, card_last4: str) -> ActivationResult:
        """Activate a new (inactive) card; naturally idempotent, so it needs no request id."""
        with self._store.transaction() as session:
            customer = lookups.locked_customer(session, customer_ref)
            card = lookups.own_card_or_none(session, customer, card_last4)
            if card is None:
                return ActivationResult(ActivationStatus.NOT_YOUR_CARD)
            if card.status == CardStatus.LOST:
                return ActivationResult(ActivationStatus.LOST)
            if card.status == CardStatus.ACTIVE:
                return ActivationResult(ActivationStatus.ALREADY_ACTIVE)
            card.status = CardStatus.ACTIVE.value
            return ActivationResult(ActivationStatus.ACTIVATED)

    def _once(
        self, operation: _Operation, customer_ref: str, request_id: str, params: dict,
        work: Callable[[Session, Customer, datetime], Result],
    ) -> Result:
        """Run `work` once per (operation, request id); a retry gets the stored result back, marked `repeated`."""
        request_id = required_text(request_id, "request_id", 128)
        fingerprint = _fingerprint(operation.name, customer_ref, params)
        try:
            with self._store.transaction() as session:
                customer = lookups.locked_customer(session, customer_ref)  # serialises retries racing each other
                stored = _stored_result(session, operation, request_id, fingerprint)
                if stored is not None:
                    return stored
                now = bank_now()
                result = work(session, customer, now)
                if result.status is operation.stored_status:
                    _store_result(session, operation, request_id, fingerprint, result, now)
                    _check_commit_deadline(operation.name)  # raising here rolls the whole movement back
                return result
        except IntegrityError:
            with self._store.transaction(read_only=True) as session:
                stored = _stored_result(session, operation, request_id, fingerprint)
            if stored is None:
                raise BankUnavailable(f"could not store the {operation.name}") from None
            return stored


def _repay(
    session: Session, customer: Customer, credit_last4: str, debit_last4: str, amount: int, now: datetime
) -> RepaymentResult:
    credit_card = lookups.own_card_or_none(session, customer, credit_last4)
    debit_card = lookups.own_card_or_none(session, customer, debit_last4)
    if credit_card is None or debit_card is None:
        return RepaymentResult(RepaymentStatus.NOT_YOUR_CARD)
    if credit_card.kind != CardKind.CREDIT or debit_card.kind != CardKind.DEBIT or debit_card.status != CardStatus.ACTIVE:
        return RepaymentResult(RepaymentStatus.CARD_UNAVAILABLE)
    statement = lookups.latest_statement(session, credit_card.id)
    remaining = statement.amount_due_cents - statement.paid_cents if statement else 0
    if remaining <= 0:
        return RepaymentResult(RepaymentStatus.NOTHING_DUE, remaining_due_cents=0)
    if amount > remaining:
        return RepaymentResult(RepaymentStatus.INVALID_AMOUNT, remaining_due_cents=remaining)
    new_balance = _withdraw(session, debit_card.account_id, amount)
    if new_balance is None:
        balance = session.get(Account, debit_card.account_id).balance_cents
        return RepaymentResult(RepaymentStatus.INSUFFICIENT_FUNDS, new_balance_cents=balance,
                               remaining_due_cents=remaining)
    _deposit_and_record(
        session, now, amount,
        source=(debit_card.account_id, new_balance, f"信用卡还款 尾号{credit_card.last4}"),
        target=(credit_card.account_id, f"还款 来自尾号{debit_card.last4}"),
    )
    statement.paid_cents += amount
    repayment = Repayment(statement_id=statement.id, from_account_id=debit_card.account_id,
                          amount_cents=amount, created_at=now)
    session.add(repayment)
    session.flush()
    repayment.reference = reference_number("repayment", now, repayment.id)
    return RepaymentResult(RepaymentStatus.OK, repayment.reference, new_balance, remaining - amount)


def _transfer(
    session: Session, customer: Customer, cards: tuple[str, str], amount: int, daily_limit: int, now: datetime
) -> TransferResult:
    """Move `amount` between the customer's cards `cards` = (from last-4, to last-4)."""
    source = lookups.own_card_or_none(session, customer, cards[0])
    target = lookups.own_card_or_none(session, customer, cards[1])
    if source is None or target is None:
        return TransferResult(TransferStatus.NOT_YOUR_CARD)
    if source.kind != CardKind.DEBIT or source.status != CardStatus.ACTIVE or target.status != CardStatus.ACTIVE:
        return TransferResult(TransferStatus.CARD_UNAVAILABLE)
    if source.account_id == target.account_id:
        return TransferResult(TransferStatus.SAME_CARD)
    limit_left = _limit_left(session, customer, now.date(), daily_limit)
    if amount > limit_left:
        return TransferResult(TransferStatus.DAILY_LIMIT, limit_left_cents=limit_left)
    source_balance = _withdraw(session, source.account_id, amount)
    if source_balance is None:
        return TransferResult(TransferStatus.INSUFFICIENT_FUNDS, limit_left_cents=limit_left)
    _deposit_and_record(
        session, now, amount,
        source=(source.account_id, source_balance, f"转账至尾号{target.last4}"),
        target=(target.account_id, f"转入 来自尾号{source.last4}"),
    )
    transfer = Transfer(customer_id=customer.id, from_account_id=source.account_id,
                        to_account_id=target.account_id, amount_cents=amount,
                        business_date=now.date(), created_at=now)
    session.add(transfer)
    session.flush()
    transfer.reference = reference_number("transfer", now, transfer.id)
    return TransferResult(TransferStatus.OK, transfer.reference, limit_left - amount)


def _limit_left(session: Session, customer: Customer, day: date, daily_limit: int) -> int:
    """What the customer may still transfer on bank day `day`: the daily limit minus the transfers of that day."""
    used = session.scalar(
        select(func.coalesce(func.sum(Transfer.amount_cents), 0))
        .where(Transfer.customer_id == customer.id, Transfer.business_date == day)
    )
    return max(daily_limit - int(used), 0)


def _report_loss(session: Session, customer: Customer, card_last4: str, now: datetime) -> CardLossResult:
    card = lookups.own_card_or_none(session, customer, card_last4)
    if card is None:
        return CardLossResult(CardLossStatus.NOT_YOUR_CARD)
    if card.status == CardStatus.LOST:
        earlier = session.scalars(
            select(CardLossReport.reference)
            .where(CardLossReport.card_id == card.id)
            .order_by(CardLossReport.id.desc())
        ).first()
        return CardLossResult(CardLossStatus.ALREADY_LOST, earlier)
    card.status = CardStatus.LOST.value
    loss_report = CardLossReport(card_id=card.id, created_at=now)
    session.add(loss_report)
    session.flush()
    loss_report.reference = reference_number("card_loss", now, loss_report.id)
    log.info("card loss reported by customer %s, reference %s", customer.ref, loss_report.reference)
    return CardLossResult(CardLossStatus.REPORTED, loss_report.reference)


def _withdraw(session: Session, account_id: int, amount: int) -> int | None:
    """Take `amount` from a debit account if it holds enough (one conditional UPDATE); the new balance or None."""
    taken = session.execute(
        update(Account)
        .where(Account.id == account_id, Account.balance_cents >= amount)
        .values(balance_cents=Account.balance_cents - amount)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        return None
    return session.scalar(select(Account.balance_cents).where(Account.id == account_id))


def _deposit(session: Session, account_id: int, amount: int) -> int:
    session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(balance_cents=Account.balance_cents + amount)
        .execution_options(synchronize_session=False)
    )
    return session.scalar(select(Account.balance_cents).where(Account.id == account_id))


def _deposit_and_record(
    session: Session, now: datetime, amount: int,
    source: tuple[int, int, str], target: tuple[int, str],
) -> None:
    """Finish a movement whose withdrawal already succeeded: credit the target and book both statement lines.

    `source` is (account id, balance after the withdrawal, description); `target` is (account id, description).
    """
    source_account_id, source_balance, source_text = source
    target_account_id, target_text = target
    target_balance = _deposit(session, target_account_id, amount)
    session.add_all([
        Transaction(account_id=source_account_id, posted_at=now, amount_cents=-amount,
                    description=source_text, balance_after_cents=source_balance),
        Transaction(account_id=target_account_id, posted_at=now, amount_cents=amount,
                    description=target_text, balance_after_cents=target_balance),
    ])


def _check_commit_deadline(operation: str) -> None:
    deadline = _COMMIT_DEADLINE.get()
    if deadline is not None and clock.monotonic() > deadline:
        raise DeadlineExceeded(f"the {operation} was ready after the caller's deadline; rolled back")


def _store_result(
    session: Session, operation: _Operation, request_id: str, fingerprint: str, result: object, now: datetime
) -> None:
    session.add(IdempotencyRecord(
        operation=operation.name, request_id=request_id, fingerprint=fingerprint,
        result_json=json.dumps(dataclasses.asdict(result)), created_at=now,
    ))
    session.flush()


def _stored_result(session: Session, operation: _Operation, request_id: str, fingerprint: str) -> Result | None:
    """The result stored for this request id, marked `repeated`; IdempotencyConflict if it was another request."""
    record = session.scalars(
        select(IdempotencyRecord).where(
            IdempotencyRecord.operation == operation.name, IdempotencyRecord.request_id == request_id
        )
    ).first()
    if record is None:
        return None
    if record.fingerprint != fingerprint:
        raise IdempotencyConflict(f"request id {request_id!r} was already used for a different {operation.name}")
    return dataclasses.replace(operation.result_type(**json.loads(record.result_json)), repeated=True)


def _fingerprint(operation: str, customer_ref: str, params: dict) -> str:
    canonical = json.dumps({"op": operation, "customer": customer_ref, **params}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
