"""SQLAlchemy tables of the sandbox bank (1.4 and 2.x compatible, classic Column declarations).

Money columns are BigInteger cents; rates and FX prices use `ScaledDecimal`, an exact fixed-point type stored as
an integer, because SQLite has no exact decimal type and floats must never touch money.
Datetimes are naive and in bank time (China Standard Time, see `store.BANK_TZ`).
Status and kind columns are plain strings holding the values of the enums in `views.py` (`CardStatus`, ...).
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import declarative_base
from sqlalchemy.types import TypeDecorator

Base = declarative_base()


class ScaledDecimal(TypeDecorator):
    """A Decimal with a fixed number of places, stored exactly as an integer (e.g. places=4: 1.2345 -> 12345)."""

    impl = BigInteger
    cache_ok = True

    def __init__(self, places: int) -> None:
        super().__init__()
        self.places = places

    def process_bind_param(self, value: Decimal | None, dialect) -> int | None:
        if value is None:
            return None
        scaled = Decimal(value).scaleb(self.places)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value} has more than {self.places} decimal places")
        return int(scaled)

    def process_result_value(self, value: int | None, dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(value).scaleb(-self.places)


class Customer(Base):
    __tablename__ = "customers"
    id = Column(Integer, primary_key=True)
    ref = Column(String(16), nullable=False, unique=True)  # opaque, shown to other layers instead of PII
    surname = Column(String(8), nullable=False)
    given_name = Column(String(16), nullable=False)
    gender = Column(String(1), nullable=False)  # "M" | "F"
    birth_date = Column(Date, nullable=False)
    reserved_phone = Column(String(20), nullable=False, index=True)
    pin_hash = Column(String(160), nullable=False)


class Account(Base):
    __tablename__ = "accounts"
    id = Column(Integer, primary_key=True)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=False, index=True)
    number = Column(String(24), nullable=False, unique=True)
    kind = Column(String(8), nullable=False)  # CardKind
    # debit: money held; credit: negative of what is owed
    balance_cents = Column(BigInteger, nullable=False)
    credit_limit_cents = Column(BigInteger, nullable=False, default=0)


class Card(Base):
    __tablename__ = "cards"
    id = Column(Integer, primary_key=True)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=False, index=True)
    account_id = Column(Integer, ForeignKey("accounts.id"), nullable=False)
    number = Column(String(19), nullable=False, unique=True)
    last4 = Column(String(4), nullable=False, index=True)
    kind = Column(String(8), nullable=False)  # CardKind
    status = Column(String(8), nullable=False)  # CardStatus


class Transaction(Base):
    __tablename__ = "transactions"
    id = Column(Integer, primary_key=True)
    account_id = Column(Integer, ForeignKey("accounts.id"), nullable=False, index=True)
    posted_at = Column(DateTime, nullable=False, index=True)
    description = Column(String(64), nullable=False)
    amount_cents = Column(BigInteger, nullable=False)  # negative = money out
    balance_after_cents = Column(BigInteger)


class Statement(Base):
    __tablename__ = "statements"
    id = Column(Integer, primary_key=True)
    card_id = Column(Integer, ForeignKey("cards.id"), nullable=False, index=True)
    statement_date = Column(Date, nullable=False)
    amount_due_cents = Column(BigInteger, nullable=False)
    minimum_due_cents = Column(BigInteger, nullable=False)
    due_date = Column(Date, nullable=False)
    paid_cents = Column(BigInteger, nullable=False, default=0)


class Repayment(Base):
    __tablename__ = "repayments"
    id = Column(Integer, primary_key=True)
    reference = Column(String(24), unique=True)
    statement_id = Column(Integer, ForeignKey("statements.id"), nullable=False)
    from_account_id = Column(Integer, ForeignKey("accounts.id"), nullable=False)
    amount_cents = Column(BigInteger, nullable=False)
    created_at = Column(DateTime, nullable=False)


class Transfer(Base):
    __tablename__ = "transfers"
    id = Column(Integer, primary_key=True)
    reference = Column(String(24), unique=True)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=False, index=True)
    from_account_id = Column(Integer, ForeignKey("accounts.id"), nullable=False)
    to_account_id = Column(Integer, ForeignKey("accounts.id"), nullable=False)
    amount_cents = Column(BigInteger, nullable=False)
    business_date = Column(Date, nullable=False, index=True)  # the day the daily limit is counted on
    created_at = Column(DateTime, nullable=False)


class CardLossReport(Base):
    __tablename__ = "card_loss_reports"
    id = Column(Integer, primary_key=True)
    reference = Column(String(24), unique=True)
    card_id = Column(Integer, ForeignKey("cards.id"), nullable=False, index=True)
    created_at = Column(DateTime, nullable=False)


class PinAttemptState(Base):
    """Wrong phone-banking PINs per customer and day; a lock lasts until the end of the bank day."""

    __tablename__ = "pin_attempts"
    customer_id = Column(Integer, ForeignKey("customers.id"), primary_key=True)
    failed_count = Column(Integer, nullable=False, default=0)
    failed_on = Column(Date)  # the bank day failed_count belongs to
    locked_until = Column(DateTime)


class CallerPinAttemptState(Base):
    """Wrong PINs and unknown cards per calling number and day, so one PIN cannot be sprayed across many cards.

    Keyed by a SHA-256 of the normalised number: the table is not a list of who called.
    """

    __tablename__ = "caller_pin_attempts"
    caller_key = Column(String(64), primary_key=True)
    failed_count = Column(Integer, nullable=False, default=0)
    failed_on = Column(Date)
    locked_until = Column(DateTime)


class IdempotencyRecord(Base):
    """The stored outcome of a money-moving or reporting request, keyed by the caller's request id."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("operation", "request_id"),)
    id = Column(Integer, primary_key=True)
    operation = Column(String(32), nullable=False)
    request_id = Column(String(128), nullable=False)
    fingerprint = Column(String(64), nullable=False)  # sha256 of the request's parameters
    result_json = Column(Text, nullable=False)
    created_at = Column(DateTime, nullable=False)


class Branch(Base):
    __tablename__ = "branches"
    id = Column(Integer, primary_key=True)
    name = Column(String(64), nullable=False)
    district = Column(String(16), nullable=False, index=True)
    address = Column(String(128), nullable=False)
    hours = Column(String(64), nullable=False)
    phone = Column(String(20), nullable=False)


class Rate(Base):
    __tablename__ = "rates"
    id = Column(Integer, primary_key=True)
    kind = Column(String(8), nullable=False)  # RateKind
    product = Column(String(32), nullable=False)
    term = Column(String(16), nullable=False)
    rate_percent = Column(ScaledDecimal(4), nullable=False)
    position = Column(Integer, nullable=False)  # display order


class FxRate(Base):
    __tablename__ = "fx_rates"
    id = Column(Integer, primary_key=True)
    currency = Column(String(3), nullable=False, unique=True)
    name_zh = Column(String(16), nullable=False)
    buy = Column(ScaledDecimal(4), nullable=False)  # CNY per 100 units
    sell = Column(ScaledDecimal(4), nullable=False)
    as_of = Column(Date, nullable=False)


class WorkOrder(Base):
    __tablename__ = "work_orders"
    id = Column(Integer, primary_key=True)
    ticket = Column(String(24), unique=True)
    kind = Column(String(16), nullable=False)  # WorkOrderKind
    description = Column(Text, nullable=False)
    call_id = Column(String(128), nullable=False, index=True)
    customer_id = Column(Integer, ForeignKey("customers.id"))
    request_id = Column(String(128), unique=True)
    created_at = Column(DateTime, nullable=False)


class HandoffRecord(Base):
    __tablename__ = "handoff_records"
    id = Column(Integer, primary_key=True)
    call_id = Column(String(128), nullable=False, index=True)
    queue = Column(String(32), nullable=False)
    reason = Column(String(64), nullable=False)
    intent = Column(String(64))
    verified = Column(Boolean, nullable=False)
    customer_ref = Column(String(16))
    created_at = Column(DateTime, nullable=False)
