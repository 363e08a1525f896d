"""The sandbox bank as the action server sees it: one façade over the bank's domains, all on one store.

    bank.identity     customer by phone, card lookup, PIN check and lock-outs        (identity.py)
    bank.accounts     cards, balances, transactions, statements, card rules           (accounts.py)
    bank.payments     repayment, transfer, card loss, activation; idempotency, deadline (payments.py)
    bank.information  branches, deposit/loan rates, exchange rates                   (information.py)
    bank.records      work orders, handoff records                                   (records.py)
    bank.store        engine, transactions, schema and seed, health                  (store.py)

New code asks the domain (`bank.accounts.debit_source(...)`); the methods below keep the callers written against
the one-class service working unchanged, and each does nothing but hand over to its domain.
Every public call is one database transaction; results are the frozen views of `views.py`.
"""

from __future__ import annotations

import functools
from datetime import date, datetime

import settings as app_settings
from actions.bank.accounts import AccountService
from actions.bank.identity import IdentityService
from actions.bank.information import InformationService
from actions.bank.payments import PaymentService, commit_deadline
from actions.bank.records import RecordService
from actions.bank.store import BankStore
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
    WorkOrderKind,
)

__all__ = ["BankService", "commit_deadline"]


class BankService:
    """The bank's domains over one store. Thread-safe; create one per process (see `from_settings`)."""

    def __init__(self, db_url: str, config: app_settings.BankSettings | None = None) -> None:
        self.store = BankStore(db_url, config or app_settings.get_settings().bank)
        self.identity = IdentityService(self.store)
        self.accounts = AccountService(self.store)
        self.payments = PaymentService(self.store, self.accounts)
        self.information = InformationService(self.store)
        self.records = RecordService(self.store)

    @classmethod
    def from_settings(cls) -> "BankService":
        """The process-wide service on `settings.bank.db_url`."""
        return _service_from_settings()

    # ------------------------------------------------------------------ store

    def prepare(self) -> bool:
        return self.store.prepare()

    def ping(self) -> bool:
        return self.store.ping()

    def reset_sandbox(self) -> None:
        self.store.reset()

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ identity

    def customer_by_phone(self, phone: str | None, today: date | None = None) -> CustomerView | None:
        return self.identity.customer_by_phone(phone, today)

    def find_card(self, last4: str, caller_phone: str | None = None) -> CardView | None:
        return self.identity.find_card(last4, caller_phone)

    def verify_pin(
        self, card_last4: str, pin: str, caller_phone: str | None = None, now: datetime | None = None
    ) -> PinResult:
        return self.identity.verify_pin(card_last4, pin, caller_phone, now)

    # ------------------------------------------------------------------ accounts

    def cards(self, customer_ref: str) -> list[CardView]:
        return self.accounts.cards(customer_ref)

    def balance(self, customer_ref: str, card_last4: str) -> int:
        return self.accounts.balance(customer_ref, card_last4)

    def transactions(
        self, customer_ref: str, card_last4: str, limit: int = 5, start: date | None = None, end: date | None = None
    ) -> list[TransactionView]:
        return self.accounts.transactions(customer_ref, card_last4, limit, start, end)

    def credit_card_statement(self, customer_ref: str, card_last4: str | None = None) -> StatementView | None:
        return self.accounts.credit_card_statement(customer_ref, card_last4)

    # ------------------------------------------------------------------ payments

    def repay_credit_card(
        self, customer_ref: str, credit_last4: str, from_debit_last4: str, amount_cents: int, request_id: str
    ) -> RepaymentResult:
        return self.payments.repay_credit_card(customer_ref, credit_last4, from_debit_last4, amount_cents, request_id)

    def transfer(
        self, customer_ref: str, from_last4: str, to_last4: str, amount_cents: int, request_id: str,
        today: date | None = None,
    ) -> TransferResult:
        return self.payments.transfer(customer_ref, from_last4, to_last4, amount_cents, request_id, today)

    def report_card_loss(self, customer_ref: str, card_last4: str, request_id: str) -> CardLossResult:
        return self.payments.report_card_loss(customer_ref, card_last4, request_id)

    def activate_card(self, customer_ref: str, card_last4: str) -> ActivationResult:
        return self.payments.activate_card(customer_ref, card_last4)

    # ------------------------------------------------------------------ public information

    def branches(self, query: str, limit: int = 3) -> list[BranchView]:
        return self.information.branches(query, limit)

    def deposit_rates(self) -> list[RateView]:
        return self.information.deposit_rates()

    def loan_rates(self) -> list[RateView]:
        return self.information.loan_rates()

    def fx_rate(self, currency: str) -> FxRateView | None:
        return self.information.fx_rate(currency)

    # ------------------------------------------------------------------ service records

    def create_work_order(
        self, kind: WorkOrderKind | str, description: str, call_id: str,
        customer_ref: str | None = None, request_id: str | None = None,
    ) -> str:
        return self.records.create_work_order(kind, description, call_id, customer_ref, request_id)

    def record_handoff(
        self, call_id: str, queue: str, reason: str, intent: str | None, verified: bool, customer_ref: str | None
    ) -> None:
        self.records.record_handoff(call_id, queue, reason, intent, verified, customer_ref)


@functools.lru_cache(maxsize=1)
def _service_from_settings() -> BankService:
    config = app_settings.get_settings().bank
    return BankService(config.db_url, config)
