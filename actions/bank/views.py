"""Read-only results of the bank service: small frozen dataclasses and the status enums, safe to hand to actions.

Money is always integer cents (`int`); rates are `Decimal`. Views carry no database objects, so they stay
valid after the session that produced them is closed.

Statuses are `str` enums whose values are the strings stored in the database and compared by the actions
(`CardStatus.LOST == "lost"`), so stored rows, stored idempotent results and existing callers keep working;
a view built from a plain string turns it into the enum member, and refuses a string that is not one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum


class StrEnum(str, Enum):
    """`enum.StrEnum` of Python 3.11, which the action server's Python 3.10 lacks: str() and format() give the value."""

    __str__ = str.__str__
    __format__ = str.__format__


class CardKind(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


class CardStatus(StrEnum):
    ACTIVE = "active"
    LOST = "lost"
    INACTIVE = "inactive"  # a new card, not activated yet


class PinStatus(StrEnum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"
    UNKNOWN_CARD = "unknown_card"


class RepaymentStatus(StrEnum):
    OK = "ok"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    NOT_YOUR_CARD = "not_your_card"
    NOTHING_DUE = "nothing_due"
    INVALID_AMOUNT = "invalid_amount"
    CARD_UNAVAILABLE = "card_unavailable"  # not a credit card, or the debit card is lost or inactive


class CardLossStatus(StrEnum):
    REPORTED = "reported"
    ALREADY_LOST = "already_lost"
    NOT_YOUR_CARD = "not_your_card"


class ActivationStatus(StrEnum):
    ACTIVATED = "activated"
    ALREADY_ACTIVE = "already_active"
    LOST = "lost"
    NOT_YOUR_CARD = "not_your_card"


class TransferStatus(StrEnum):
    OK = "ok"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    DAILY_LIMIT = "daily_limit"
    SAME_CARD = "same_card"
    NOT_YOUR_CARD = "not_your_card"
    INVALID_AMOUNT = "invalid_amount"
    CARD_UNAVAILABLE = "card_unavailable"  # a card is lost or inactive, or the source is a credit card


class WorkOrderKind(StrEnum):
    COMPLAINT = "complaint"
    CALLBACK = "callback"


class RateKind(StrEnum):
    DEPOSIT = "deposit"
    LOAN = "loan"


def _as_enum(view: object, field: str, enum: type[StrEnum]) -> None:
    """Turn a frozen view's string field into its enum member (ValueError for a string that is not one)."""
    object.__setattr__(view, field, enum(getattr(view, field)))


@dataclass(frozen=True)
class CustomerView:
    ref: str  # opaque customer reference such as "C1001"; not PII, safe in handoff context
    surname: str
    title: str  # "先生" | "女士"
    age: int
    is_elderly: bool


@dataclass(frozen=True)
class CardView:
    last4: str
    kind: CardKind
    status: CardStatus
    customer_ref: str

    def __post_init__(self) -> None:
        _as_enum(self, "kind", CardKind)
        _as_enum(self, "status", CardStatus)


@dataclass(frozen=True)
class PinResult:
    status: PinStatus
    attempts_left: int
    customer_ref: str | None  # only set when status is OK: nothing is disclosed before verification

    def __post_init__(self) -> None:
        _as_enum(self, "status", PinStatus)


@dataclass(frozen=True)
class TransactionView:
    posted_at: datetime
    description: str
    amount_cents: int  # negative = money out
    balance_after_cents: int | None


@dataclass(frozen=True)
class StatementView:
    card_last4: str
    amount_due_cents: int
    minimum_due_cents: int
    due_date: date
    paid_cents: int

    @property
    def remaining_due_cents(self) -> int:
        return max(self.amount_due_cents - self.paid_cents, 0)


@dataclass(frozen=True)
class RepaymentPlan:
    """What a repayment would be made of: the statement to pay and the debit card to pay it from."""

    statement: StatementView | None  # None: no credit-card statement
    source: CardView | None  # None: no active debit card to pay from

    @property
    def remaining_due_cents(self) -> int:
        return self.statement.remaining_due_cents if self.statement is not None else 0

    @property
    def possible(self) -> bool:
        """Something is due and there is a card to pay it from (the amount is still to be asked)."""
        return self.remaining_due_cents > 0 and self.source is not None


@dataclass(frozen=True)
class RepaymentResult:
    status: RepaymentStatus
    reference: str | None = None
    new_balance_cents: int | None = None  # the debit account's balance after the repayment
    remaining_due_cents: int | None = None
    repeated: bool = False  # the same request was already carried out in this call: nothing moved again

    def __post_init__(self) -> None:
        _as_enum(self, "status", RepaymentStatus)


@dataclass(frozen=True)
class CardLossResult:
    status: CardLossStatus
    reference: str | None = None  # digits only
    repeated: bool = False  # the same request was already carried out in this call: nothing moved again

    def __post_init__(self) -> None:
        _as_enum(self, "status", CardLossStatus)


@dataclass(frozen=True)
class ActivationResult:
    status: ActivationStatus

    def __post_init__(self) -> None:
        _as_enum(self, "status", ActivationStatus)


@dataclass(frozen=True)
class TransferResult:
    status: TransferStatus
    reference: str | None = None
    limit_left_cents: int | None = None  # what may still be transferred today, after this transfer
    repeated: bool = False  # the same request was already carried out in this call: nothing moved again

    def __post_init__(self) -> None:
        _as_enum(self, "status", TransferStatus)


@dataclass(frozen=True)
class BranchView:
    name: str
    district: str
    address: str
    hours: str
    phone: str


@dataclass(frozen=True)
class RateView:
    product: str
    term: str
    rate_percent: Decimal


@dataclass(frozen=True)
class FxRateView:
    currency: str
    name_zh: str
    buy: Decimal  # CNY per 100 units of `currency`
    sell: Decimal
    as_of: date
