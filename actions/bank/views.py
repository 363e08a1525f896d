"""Read-only results of the bank service: small frozen dataclasses, safe to hand to the Rasa actions.

Money is always integer cents (`int`); rates are `Decimal`. Views carry no database objects, so they stay
valid after the session that produced them is closed. Status strings are documented on each field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal


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
    kind: str  # "debit" | "credit"
    status: str  # "active" | "lost" | "inactive"
    customer_ref: str


@dataclass(frozen=True)
class PinResult:
    status: str  # "ok" | "wrong" | "locked" | "unknown_card"
    attempts_left: int
    customer_ref: str | None  # only set when status == "ok": nothing is disclosed before verification


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
class RepaymentResult:
    # "ok" | "insufficient_funds" | "not_your_card" | "nothing_due" | "invalid_amount" | "card_unavailable"
    status: str
    reference: str | None = None
    new_balance_cents: int | None = None  # the debit account's balance after the repayment
    remaining_due_cents: int | None = None
    repeated: bool = False  # the same request was already carried out in this call: nothing moved again


@dataclass(frozen=True)
class CardLossResult:
    status: str  # "reported" | "already_lost" | "not_your_card"
    reference: str | None = None  # digits only
    repeated: bool = False  # the same request was already carried out in this call: nothing moved again


@dataclass(frozen=True)
class ActivationResult:
    status: str  # "activated" | "already_active" | "lost" | "not_your_card"


@dataclass(frozen=True)
class TransferResult:
    # "ok" | "insufficient_funds" | "daily_limit" | "same_card" | "not_your_card" | "invalid_amount"
    # | "card_unavailable" (a card is lost or inactive, or the source is a credit card)
    status: str
    reference: str | None = None
    limit_left_cents: int | None = None  # what may still be transferred today, after this transfer
    repeated: bool = False  # the same request was already carried out in this call: nothing moved again


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
