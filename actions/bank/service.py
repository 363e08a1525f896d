"""The sandbox bank: every operation the Rasa actions may ask of a bank, on a real SQL database.

Rules kept here:
- money is integer cents (Decimal for rates), never float;
- every public call is one database transaction (see `_transaction`);
- repayment, transfer and card loss are idempotent per request id: a retry returns the stored result, marked
  `repeated`; and they commit only before the caller's reply deadline (`commit_deadline`), so a movement is never
  done after the dialogue gave up and apologised;
- PINs exist only as salted PBKDF2 hashes, are compared in constant time and are never logged; an unknown card
  costs the same hashing as a wrong PIN; wrong PINs count per customer and per caller number and bank day;
- operations on a customer's money lock that customer's row first, so concurrent requests are serialised.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import secrets
import threading
import time as clock
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, time, timedelta, timezone
from typing import TypeVar

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError
from sqlalchemy.orm import Session

import settings as app_settings
from actions.bank.database import build_engine, read_only
from actions.bank.errors import BankUnavailable, DeadlineExceeded, IdempotencyConflict, NotYourCard, UnknownCustomer
from actions.bank.models import (
    Account,
    Base,
    Branch,
    Card,
    CardLossReport,
    Customer,
    FxRate,
    HandoffRecord,
    CallerPinAttemptState,
    IdempotencyRecord,
    PinAttemptState,
    Rate,
    Repayment,
    Statement,
    Transaction,
    Transfer,
    WorkOrder,
)
from actions.bank.money import is_valid_amount, tidy_decimal
from actions.bank.normalise import CURRENCY_ALIASES, branch_search_terms, clean_last4, normalise_phone
from actions.bank.security import hash_pin, pin_matches
from actions.bank.seed import seed_bank
from actions.bank.views import (
    ActivationResult,
    BranchView,
    CardLossResult,
    CardView,
    CustomerView,
    FxRateView,
    PinResult,
    RateView,
    RepaymentResult,
    StatementView,
    TransactionView,
    TransferResult,
)

log = logging.getLogger(__name__)

BANK_TZ = timezone(timedelta(hours=8), "China Standard Time")  # the bank day; China has no daylight saving
MAX_TRANSACTIONS = 100
MAX_TEXT_CHARS = 2000
WORK_ORDER_KINDS = ("complaint", "callback")
# First digit of a reference number, so a reference read back on the phone tells what it is for.
REFERENCE_PREFIX = {"card_loss": "1", "transfer": "2", "repayment": "3", "work_order": "8"}

Result = TypeVar("Result")


def bank_now(now: datetime | None = None) -> datetime:
    """`now` (default: the current time) as a naive datetime in bank time, the way the database stores it."""
    if now is None:
        now = datetime.now(BANK_TZ)
    if now.tzinfo is not None:
        now = now.astimezone(BANK_TZ).replace(tzinfo=None)
    return now


def reference_number(kind: str, created_at: datetime, row_id: int) -> str:
    """A digits-only reference: kind digit + yymmdd + row id (at least 5 digits), e.g. "1261126" + "00042"."""
    return f"{REFERENCE_PREFIX[kind]}{created_at:%y%m%d}{row_id:05d}"


class BankService:
    """The bank as the action server sees it. Thread-safe; create one per process (see `from_settings`)."""

    def __init__(self, db_url: str, config: app_settings.BankSettings | None = None) -> None:
        self._config = config or app_settings.get_settings().bank
        self._engine = build_engine(db_url)
        self._read_engine = read_only(self._engine)
        self._ready = False
        self._ready_lock = threading.Lock()

    @classmethod
    def from_settings(cls) -> "BankService":
        """The process-wide service on `settings.bank.db_url`."""
        return _service_from_settings()

    def reset_sandbox(self) -> None:
        """Drop every bank table and seed again, e.g. after a demo reported the test cards lost. Sandbox only."""
        with self._ready_lock:
            try:
                Base.metadata.drop_all(self._engine)
            except SQLAlchemyError as exc:
                raise BankUnavailable("the bank database is not available") from exc
            self._ready = False
        self._ensure_ready()
        log.warning("the sandbox bank was reset to its seed data")

    def close(self) -> None:
        """Release the database connections (tests, shutdown)."""
        self._engine.dispose()

    # ------------------------------------------------------------------ health

    def prepare(self) -> bool:
        """Create and seed the store now rather than at the first request; False (logged) if it is down."""
        try:
            self._ensure_ready()
            return True
        except BankUnavailable:
            return False

    def ping(self) -> bool:
        """Whether the database answers `SELECT 1`; never raises."""
        try:
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError as exc:
            log.warning("bank store does not answer: %s", type(exc).__name__)
            return False

    # ------------------------------------------------------------------ identity

    def customer_by_phone(self, phone: str | None, today: date | None = None) -> CustomerView | None:
        """The customer whose reserved phone is `phone` (any common formatting), or None."""
        number = normalise_phone(phone)
        if number is None:
            return None
        today = today or bank_now().date()
        with self._transaction(read_only=True) as session:
            customer = session.scalars(
                select(Customer).where(Customer.reserved_phone == number).order_by(Customer.id)
            ).first()
            return self._customer_view(customer, today) if customer else None

    def find_card(self, last4: str, caller_phone: str | None = None) -> CardView | None:
        """The card ending in `last4`; when several customers have one, the caller's own card wins."""
        with self._transaction(read_only=True) as session:
            found = self._card_by_last4(session, last4, caller_phone)
            return _card_view(*found) if found else None

    def verify_pin(
        self, card_last4: str, pin: str, caller_phone: str | None = None, now: datetime | None = None
    ) -> PinResult:
        """Check the phone-banking PIN of the holder of `card_last4`.

        Wrong PINs count per customer and bank day; the last allowed wrong PIN locks PIN service until
        midnight, and while locked even the right PIN gives "locked". A success resets the count.
        Wrong PINs and unknown cards also count per caller number and bank day (`max_pin_failures_per_caller`),
        so one PIN cannot be sprayed across many cards; an unknown card costs the same hashing as a wrong PIN.
        """
        now = bank_now(now)
        max_attempts = self._config.max_pin_attempts
        with self._transaction() as session:
            caller = self._caller_pin_state(session, caller_phone, now)
            if caller is not None and caller.locked_until is not None and caller.locked_until > now:
                pin_matches(str(pin), self._decoy_hash)  # the same work as any other answer
                return PinResult("locked", 0, None)
            found = self._card_by_last4(session, card_last4, caller_phone)
            if found is None:
                pin_matches(str(pin), self._decoy_hash)  # timing must not tell an unknown card from a wrong PIN
                return self._caller_failed(caller, PinResult("unknown_card", max_attempts, None), now)
            customer = self._lock_customer(session, found[1].ref)
            state = self._pin_state(session, customer.id)
            if state.locked_until is not None and state.locked_until > now:
                return PinResult("locked", 0, None)
            if state.failed_on != now.date():
                state.failed_count, state.failed_on, state.locked_until = 0, now.date(), None
            if isinstance(pin, str) and pin_matches(pin, customer.pin_hash):
                state.failed_count, state.locked_until = 0, None
                return PinResult("ok", max_attempts, customer.ref)
            state.failed_count += 1
            attempts_left = max(max_attempts - state.failed_count, 0)
            result = self._caller_failed(caller, PinResult("wrong", attempts_left, None), now)
            if attempts_left == 0:
                state.locked_until = _end_of_bank_day(now)
                log.warning("PIN service locked for customer %s until %s", customer.ref, state.locked_until)
                return PinResult("locked", 0, None)
            return result

    @functools.cached_property
    def _decoy_hash(self) -> str:
        """The hash of a random secret: checking a PIN against it costs what a real check costs, and never matches."""
        return hash_pin(secrets.token_hex(16), self._config.pin_salt_rounds)

    def _caller_pin_state(self, session: Session, caller_phone: str | None, now: datetime) -> CallerPinAttemptState | None:
        """Today's failure count of the calling number (None for an anonymous caller), keyed by a hash of it."""
        phone = normalise_phone(caller_phone)
        if not phone:
            return None
        key = hashlib.sha256(phone.encode("utf-8")).hexdigest()
        state = session.get(CallerPinAttemptState, key, with_for_update=True)
        if state is None:
            state = CallerPinAttemptState(caller_key=key, failed_count=0, failed_on=now.date())
            session.add(state)
        if state.failed_on != now.date():
            state.failed_count, state.failed_on, state.locked_until = 0, now.date(), None
        return state

    def _caller_failed(self, caller: CallerPinAttemptState | None, result: PinResult, now: datetime) -> PinResult:
        if caller is None:
            return result
        caller.failed_count += 1
        left = max(self._config.max_pin_failures_per_caller - caller.failed_count, 0)
        if left == 0:
            caller.locked_until = _end_of_bank_day(now)
            log.warning("PIN service locked for a calling number until %s", caller.locked_until)
            return PinResult("locked", 0, None)
        return dataclasses.replace(result, attempts_left=min(result.attempts_left, left))

    # ------------------------------------------------------------------ accounts (verified customer)

    def cards(self, customer_ref: str) -> list[CardView]:
        with self._transaction(read_only=True) as session:
            customer = self._customer(session, customer_ref)
            cards = session.scalars(select(Card).where(Card.customer_id == customer.id).order_by(Card.id)).all()
            return [_card_view(card, customer) for card in cards]

    def balance(self, customer_ref: str, card_last4: str) -> int:
        """Cents: the money on a debit card, the available credit (limit minus what is owed) on a credit card."""
        with self._transaction(read_only=True) as session:
            card = self._own_card(session, customer_ref, card_last4)
            account = session.get(Account, card.account_id)
            if card.kind == "credit":
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
        with self._transaction(read_only=True) as session:
            card = self._own_card(session, customer_ref, card_last4)
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
        with self._transaction(read_only=True) as session:
            customer = self._customer(session, customer_ref)
            query = (
                select(Statement, Card)
                .join(Card, Statement.card_id == Card.id)
                .where(Card.customer_id == customer.id, Card.kind == "credit")
                .order_by(Statement.statement_date.desc(), Statement.id.desc())
            )
            if card_last4 is not None:
                card = self._own_card(session, customer_ref, card_last4)
                query = query.where(Card.id == card.id)
            latest_per_card: dict[int, StatementView] = {}
            for statement, card in session.execute(query):
                latest_per_card.setdefault(card.id, _statement_view(statement, card))
            if not latest_per_card:
                return None
            return max(latest_per_card.values(), key=lambda view: (view.remaining_due_cents, view.due_date))

    def repay_credit_card(
        self, customer_ref: str, credit_last4: str, from_debit_last4: str, amount_cents: int, request_id: str
    ) -> RepaymentResult:
        """Pay `amount_cents` (at most what is still due) from the customer's debit card to their credit card."""
        if not is_valid_amount(amount_cents):
            return RepaymentResult("invalid_amount")
        params = {"credit": credit_last4, "debit": from_debit_last4, "amount": amount_cents}

        def repay(session: Session, customer: Customer, now: datetime) -> RepaymentResult:
            return self._repay(session, customer, credit_last4, from_debit_last4, amount_cents, now)

        return self._idempotent("repayment", customer_ref, request_id, params, RepaymentResult, {"ok"}, repay)

    def report_card_loss(self, customer_ref: str, card_last4: str, request_id: str) -> CardLossResult:
        """Mark the card lost and return a report reference; a card already lost is not reported twice."""

        def report(session: Session, customer: Customer, now: datetime) -> CardLossResult:
            card = self._own_card_or_none(session, customer, card_last4)
            if card is None:
                return CardLossResult("not_your_card")
            if card.status == "lost":
                earlier = session.scalars(
                    select(CardLossReport.reference)
                    .where(CardLossReport.card_id == card.id)
                    .order_by(CardLossReport.id.desc())
                ).first()
                return CardLossResult("already_lost", earlier)
            card.status = "lost"
            loss_report = CardLossReport(card_id=card.id, created_at=now)
            session.add(loss_report)
            session.flush()
            loss_report.reference = reference_number("card_loss", now, loss_report.id)
            log.info("card loss reported by customer %s, reference %s", customer.ref, loss_report.reference)
            return CardLossResult("reported", loss_report.reference)

        params = {"card": card_last4}
        return self._idempotent("card_loss", customer_ref, request_id, params, CardLossResult, {"reported"}, report)

    def activate_card(self, customer_ref: str, card_last4: str) -> ActivationResult:
        """Activate a new (inactive) card; naturally idempotent, so it needs no request id."""
        with self._transaction() as session:
            customer = self._lock_customer(session, customer_ref)
            card = self._own_card_or_none(session, customer, card_last4)
            if card is None:
                return ActivationResult("not_your_card")
            if card.status == "lost":
                return ActivationResult("lost")
            if card.status == "active":
                return ActivationResult("already_active")
            card.status = "active"
            return ActivationResult("activated")

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
            return TransferResult("invalid_amount")
        if from_last4 == to_last4:
            return TransferResult("same_card")
        params = {"from": from_last4, "to": to_last4, "amount": amount_cents}

        def move(session: Session, customer: Customer, now: datetime) -> TransferResult:
            if today is not None:
                now = datetime.combine(today, now.time())
            return self._transfer(session, customer, from_last4, to_last4, amount_cents, now)

        return self._idempotent("transfer", customer_ref, request_id, params, TransferResult, {"ok"}, move)

    # ------------------------------------------------------------------ public information

    def branches(self, query: str, limit: int = 3) -> list[BranchView]:
        """Branches whose district, road or name matches the query ("朝阳", "朝阳区", "建国路"), best first."""
        limit = max(1, min(int(limit), 20))
        with self._transaction(read_only=True) as session:
            districts = list(session.scalars(select(Branch.district).distinct()))
            terms = branch_search_terms(query, districts)
            if not terms:
                return []
            matches = [
                or_(Branch.district.like(f"%{t}%"), Branch.address.like(f"%{t}%"), Branch.name.like(f"%{t}%"))
                for t in terms
            ]
            candidates = session.scalars(select(Branch).where(or_(*matches)).order_by(Branch.id)).all()
            ranked = sorted(candidates, key=lambda branch: -_branch_score(branch, terms))
            return [BranchView(b.name, b.district, b.address, b.hours, b.phone) for b in ranked[:limit]]

    def deposit_rates(self) -> list[RateView]:
        return self._rates("deposit")

    def loan_rates(self) -> list[RateView]:
        return self._rates("loan")

    def fx_rate(self, currency: str) -> FxRateView | None:
        """Today's rate for an ISO code ("USD") or its Chinese name ("美元", "美金"); None if not quoted."""
        if not isinstance(currency, str) or not currency.strip():
            return None
        spoken = currency.strip()[:16]
        code = CURRENCY_ALIASES.get(spoken, spoken.upper())
        with self._transaction(read_only=True) as session:
            rate = session.scalars(
                select(FxRate).where(or_(FxRate.currency == code, FxRate.name_zh == spoken))
            ).first()
            if rate is None:
                return None
            return FxRateView(rate.currency, rate.name_zh, tidy_decimal(rate.buy), tidy_decimal(rate.sell), rate.as_of)

    # ------------------------------------------------------------------ service records

    def create_work_order(
        self,
        kind: str,
        description: str,
        call_id: str,
        customer_ref: str | None = None,
        request_id: str | None = None,
    ) -> str:
        """Open a complaint or callback ticket; returns its digits-only number. Idempotent per `request_id`."""
        if kind not in WORK_ORDER_KINDS:
            raise ValueError(f"work order kind must be one of {WORK_ORDER_KINDS}, not {kind!r}")
        call_id = _required_text(call_id, "call_id", 128)
        request_id = _optional_text(request_id, 128)
        try:
            return self._create_work_order(kind, description, call_id, customer_ref, request_id)
        except IntegrityError:
            # a concurrent retry with the same request id committed first: its ticket is the answer
            with self._transaction(read_only=True) as session:
                ticket = session.scalars(select(WorkOrder.ticket).where(WorkOrder.request_id == request_id)).first()
            if ticket is None:
                raise BankUnavailable("could not store the work order") from None
            return ticket

    def record_handoff(
        self,
        call_id: str,
        queue: str,
        reason: str,
        intent: str | None,
        verified: bool,
        customer_ref: str | None,
    ) -> None:
        """Keep a record of a transfer to a human queue, for reporting."""
        with self._transaction() as session:
            session.add(HandoffRecord(
                call_id=_required_text(call_id, "call_id", 128),
                queue=_required_text(queue, "queue", 32),
                reason=_required_text(reason, "reason", 64),
                intent=_optional_text(intent, 64),
                verified=bool(verified),
                customer_ref=_optional_text(customer_ref, 16),
                created_at=bank_now(),
            ))

    # ------------------------------------------------------------------ internals: transactions and setup

    @contextmanager
    def _transaction(self, read_only: bool = False) -> Iterator[Session]:
        """One database transaction; database failures surface as BankUnavailable (IntegrityError passes)."""
        self._ensure_ready()
        try:
            with Session(self._read_engine if read_only else self._engine, future=True) as session, session.begin():
                yield session
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            log.error("bank store failed: %s", exc.__class__.__name__)
            raise BankUnavailable("the bank database is not available") from exc

    def _ensure_ready(self) -> None:
        """Create the tables and seed an empty bank, once per process (and safely if processes race)."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            try:
                try:
                    self._create_and_seed()
                except (IntegrityError, ProgrammingError):
                    self._create_and_seed()  # another process created or seeded at the same moment; check again
            except SQLAlchemyError as exc:
                raise BankUnavailable("the bank database is not available") from exc
            self._ready = True

    def _create_and_seed(self) -> None:
        Base.metadata.create_all(self._engine)
        with Session(self._engine, future=True) as session, session.begin():
            if session.scalars(select(Customer.id).limit(1)).first() is None:
                seed_bank(session, self._config.pin_salt_rounds)
                log.info("seeded the sandbox bank")

    def _idempotent(
        self,
        operation: str,
        customer_ref: str,
        request_id: str,
        params: dict,
        result_type: type[Result],
        stored_statuses: set[str],
        work: Callable[[Session, Customer, datetime], Result],
    ) -> Result:
        """Run `work` once per (operation, request id); a retry gets the stored result back.

        Only results that changed something are stored: a refused request wrote nothing, so running it
        again is harmless and lets the caller retry after, say, topping up the account.
        """
        request_id = _required_text(request_id, "request_id", 128)
        fingerprint = _fingerprint(operation, customer_ref, params)
        try:
            with self._transaction() as session:
                customer = self._lock_customer(session, customer_ref)  # serialises retries racing each other
                stored = _stored_result(session, operation, request_id, fingerprint, result_type)
                if stored is not None:
                    return stored
                now = bank_now()
                result = work(session, customer, now)
                if result.status in stored_statuses:
                    session.add(IdempotencyRecord(
                        operation=operation, request_id=request_id, fingerprint=fingerprint,
                        result_json=json.dumps(dataclasses.asdict(result)), created_at=now,
                    ))
                    session.flush()
                    _check_commit_deadline(operation)  # raising here rolls the whole movement back
                return result
        except IntegrityError:
            with self._transaction(read_only=True) as session:
                stored = _stored_result(session, operation, request_id, fingerprint, result_type)
            if stored is None:
                raise BankUnavailable(f"could not store the {operation}") from None
            return stored

    # ------------------------------------------------------------------ internals: money movements

    def _repay(
        self, session: Session, customer: Customer, credit_last4: str, debit_last4: str, amount: int, now: datetime
    ) -> RepaymentResult:
        credit_card = self._own_card_or_none(session, customer, credit_last4)
        debit_card = self._own_card_or_none(session, customer, debit_last4)
        if credit_card is None or debit_card is None:
            return RepaymentResult("not_your_card")
        if credit_card.kind != "credit" or debit_card.kind != "debit" or debit_card.status != "active":
            return RepaymentResult("card_unavailable")
        statement = session.scalars(
            select(Statement).where(Statement.card_id == credit_card.id)
            .order_by(Statement.statement_date.desc(), Statement.id.desc())
        ).first()
        remaining = statement.amount_due_cents - statement.paid_cents if statement else 0
        if remaining <= 0:
            return RepaymentResult("nothing_due", remaining_due_cents=0)
        if amount > remaining:
            return RepaymentResult("invalid_amount", remaining_due_cents=remaining)
        new_balance = _withdraw(session, debit_card.account_id, amount)
        if new_balance is None:
            balance = session.get(Account, debit_card.account_id).balance_cents
            return RepaymentResult("insufficient_funds", new_balance_cents=balance, remaining_due_cents=remaining)
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
        return RepaymentResult("ok", repayment.reference, new_balance, remaining - amount)

    def _transfer(
        self, session: Session, customer: Customer, from_last4: str, to_last4: str, amount: int, now: datetime
    ) -> TransferResult:
        source = self._own_card_or_none(session, customer, from_last4)
        target = self._own_card_or_none(session, customer, to_last4)
        if source is None or target is None:
            return TransferResult("not_your_card")
        if source.kind != "debit" or source.status != "active" or target.status != "active":
            return TransferResult("card_unavailable")
        if source.account_id == target.account_id:
            return TransferResult("same_card")
        used_today = session.scalar(
            select(func.coalesce(func.sum(Transfer.amount_cents), 0))
            .where(Transfer.customer_id == customer.id, Transfer.business_date == now.date())
        )
        limit_left = max(self._config.daily_transfer_limit_cents - int(used_today), 0)
        if amount > limit_left:
            return TransferResult("daily_limit", limit_left_cents=limit_left)
        source_balance = _withdraw(session, source.account_id, amount)
        if source_balance is None:
            return TransferResult("insufficient_funds", limit_left_cents=limit_left)
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
        return TransferResult("ok", transfer.reference, limit_left - amount)

    def _create_work_order(
        self, kind: str, description: str, call_id: str, customer_ref: str | None, request_id: str | None
    ) -> str:
        with self._transaction() as session:
            if request_id is not None:
                ticket = session.scalars(select(WorkOrder.ticket).where(WorkOrder.request_id == request_id)).first()
                if ticket is not None:
                    return ticket
            customer_id = self._customer(session, customer_ref).id if customer_ref else None
            now = bank_now()
            order = WorkOrder(kind=kind, description=(description or "").strip()[:MAX_TEXT_CHARS],
                              call_id=call_id, customer_id=customer_id, request_id=request_id, created_at=now)
            session.add(order)
            session.flush()
            order.ticket = reference_number("work_order", now, order.id)
            log.info("work order %s (%s) opened for call %s", order.ticket, kind, call_id)
            return order.ticket

    # ------------------------------------------------------------------ internals: lookups

    def _customer(self, session: Session, customer_ref: str) -> Customer:
        customer = session.scalars(select(Customer).where(Customer.ref == customer_ref)).first()
        if customer is None:
            raise UnknownCustomer(f"no customer {customer_ref!r}")
        return customer

    def _lock_customer(self, session: Session, customer_ref: str) -> Customer:
        """The customer row, locked for this transaction (FOR UPDATE; SQLite is serialised by BEGIN IMMEDIATE)."""
        customer = session.scalars(
            select(Customer).where(Customer.ref == customer_ref).with_for_update()
        ).first()
        if customer is None:
            raise UnknownCustomer(f"no customer {customer_ref!r}")
        return customer

    def _own_card(self, session: Session, customer_ref: str, last4: str) -> Card:
        card = self._own_card_or_none(session, self._customer(session, customer_ref), last4)
        if card is None:
            raise NotYourCard(f"customer {customer_ref} has no card ending {clean_last4(last4) or '(invalid)'}")
        return card

    @staticmethod
    def _own_card_or_none(session: Session, customer: Customer, last4: str) -> Card | None:
        digits = clean_last4(last4)
        if digits is None:
            return None
        return session.scalars(
            select(Card).where(Card.customer_id == customer.id, Card.last4 == digits).order_by(Card.id)
        ).first()

    @staticmethod
    def _card_by_last4(session: Session, last4: str, caller_phone: str | None) -> tuple[Card, Customer] | None:
        """The card ending `last4`: the caller's own first, then an active one, then the oldest."""
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
        best = min(rows, key=lambda row: (row[1].reserved_phone != phone, row[0].status != "active"))
        return best[0], best[1]

    @staticmethod
    def _pin_state(session: Session, customer_id: int) -> PinAttemptState:
        state = session.get(PinAttemptState, customer_id)
        if state is None:
            state = PinAttemptState(customer_id=customer_id, failed_count=0)
            session.add(state)
        return state

    def _customer_view(self, customer: Customer, today: date) -> CustomerView:
        age = _age_on(customer.birth_date, today)
        title = "女士" if customer.gender == "F" else "先生"
        return CustomerView(customer.ref, customer.surname, title, age, age >= self._config.elderly_age)

    def _rates(self, kind: str) -> list[RateView]:
        with self._transaction(read_only=True) as session:
            rates = session.scalars(select(Rate).where(Rate.kind == kind).order_by(Rate.position)).all()
            return [RateView(r.product, r.term, tidy_decimal(r.rate_percent)) for r in rates]


@functools.lru_cache(maxsize=1)
def _service_from_settings() -> BankService:
    config = app_settings.get_settings().bank
    return BankService(config.db_url, config)


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


def _check_commit_deadline(operation: str) -> None:
    deadline = _COMMIT_DEADLINE.get()
    if deadline is not None and clock.monotonic() > deadline:
        raise DeadlineExceeded(f"the {operation} was ready after the caller's deadline; rolled back")


def _stored_result(
    session: Session, operation: str, request_id: str, fingerprint: str, result_type: type[Result]
) -> Result | None:
    record = session.scalars(
        select(IdempotencyRecord).where(
            IdempotencyRecord.operation == operation, IdempotencyRecord.request_id == request_id
        )
    ).first()
    if record is None:
        return None
    if record.fingerprint != fingerprint:
        raise IdempotencyConflict(f"request id {request_id!r} was already used for a different {operation}")
    stored = result_type(**json.loads(record.result_json))
    return dataclasses.replace(stored, repeated=True) if hasattr(stored, "repeated") else stored


def _fingerprint(operation: str, customer_ref: str, params: dict) -> str:
    canonical = json.dumps({"op": operation, "customer": customer_ref, **params}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _card_view(card: Card, customer: Customer) -> CardView:
    return CardView(card.last4, card.kind, card.status, customer.ref)


def _statement_view(statement: Statement, card: Card) -> StatementView:
    return StatementView(card.last4, statement.amount_due_cents, statement.minimum_due_cents,
                         statement.due_date, statement.paid_cents)


def _branch_score(branch: Branch, terms: list[str]) -> int:
    """Roads and names weigh more than a district, which many branches share."""
    score = 0
    for term in terms:
        if term in branch.address or term in branch.name:
            score += 2
        if term in branch.district:
            score += 1
    return score


def _end_of_bank_day(now: datetime) -> datetime:
    return datetime.combine(now.date() + timedelta(days=1), time.min)


def _age_on(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _required_text(value: object, name: str, max_chars: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value.strip()[:max_chars]


def _optional_text(value: object, max_chars: int) -> str | None:
    if value is None:
        return None
    return _required_text(value, "value", max_chars)
