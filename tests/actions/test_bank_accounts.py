"""Accounts of a verified customer: cards, balances, transaction history and credit-card statements."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from actions.bank import BankService, NotYourCard, UnknownCustomer
from actions.bank.seed import CUSTOMERS
from actions.bank.views import CardView, StatementView


def test_cards_of_a_customer(bank_service: BankService) -> None:
    assert bank_service.cards("C1003") == [
        CardView("4321", "debit", "active", "C1003"),
        CardView("9999", "credit", "active", "C1003"),
        CardView("7777", "credit", "inactive", "C1003"),
    ]


def test_cards_of_an_unknown_customer(bank_service: BankService) -> None:
    with pytest.raises(UnknownCustomer):
        bank_service.cards("C9999")


@pytest.mark.parametrize(
    "customer, card, cents",
    [
        ("C1001", "1234", 5_234_050),
        ("C1002", "5678", 800_000),
        ("C1003", "4321", 120_000),
        ("C1005", "6666", 2_345_678),
        ("C1006", "6666", 305_000),
        # credit cards: available credit = limit - owed
        ("C1001", "8888", 5_000_000 - 328_000),
        ("C1003", "7777", 2_000_000),
    ],
)
def test_balance(bank_service: BankService, customer: str, card: str, cents: int) -> None:
    assert bank_service.balance(customer, card) == cents


@pytest.mark.parametrize("customer, card", [("C1002", "1234"), ("C1001", "0000"), ("C1001", "abcd"), ("C1001", "")])
def test_balance_of_someone_elses_card_is_refused(bank_service: BankService, customer: str, card: str) -> None:
    with pytest.raises(NotYourCard):
        bank_service.balance(customer, card)


def test_recent_transactions_newest_first(bank_service: BankService) -> None:
    recent = bank_service.transactions("C1001", "1234", limit=3)
    assert [t.description for t in recent] == ["利息入账", "物美超市 消费", "北京自来水 水费"]
    assert [t.amount_cents for t in recent] == [1245, -15860, -6320]
    assert recent[0].posted_at == datetime(2026, 11, 19, 0, 30)
    assert recent[0].balance_after_cents == 5_234_050
    assert recent[1].balance_after_cents == 5_234_050 - 1245


def test_transactions_default_to_five(bank_service: BankService) -> None:
    assert len(bank_service.transactions("C1002", "5678")) == 5


@pytest.mark.parametrize("limit, expected", [(0, 1), (-5, 1), (1, 1), (10, 10), (10_000, 10)])
def test_transaction_limit_is_clamped(bank_service: BankService, limit: int, expected: int) -> None:
    assert len(bank_service.transactions("C1001", "1234", limit=limit)) == expected


def test_transactions_by_period_are_inclusive(bank_service: BankService) -> None:
    period = bank_service.transactions("C1001", "1234", limit=20, start=date(2026, 11, 1), end=date(2026, 11, 8))
    assert [t.posted_at.date() for t in period] == [date(2026, 11, 8), date(2026, 11, 5), date(2026, 11, 1)]
    assert bank_service.transactions("C1001", "1234", start=date(2027, 1, 1)) == []


def test_transactions_of_someone_elses_card(bank_service: BankService) -> None:
    with pytest.raises(NotYourCard):
        bank_service.transactions("C1003", "1234")


@pytest.mark.parametrize("customer", [c.ref for c in CUSTOMERS])
def test_seeded_histories_add_up(bank_service: BankService, customer: str) -> None:
    """Each running balance is the previous one plus the amount, and ends at the card's balance."""
    for card in bank_service.cards(customer):
        history = list(reversed(bank_service.transactions(customer, card.last4, limit=100)))
        for earlier, later in zip(history, history[1:]):
            assert later.balance_after_cents == earlier.balance_after_cents + later.amount_cents
        if history and card.kind == "debit":
            assert history[-1].balance_after_cents == bank_service.balance(customer, card.last4)
            assert history[0].balance_after_cents - history[0].amount_cents >= 0  # never overdrawn
            assert all(t.balance_after_cents >= 0 for t in history)


def test_every_debit_card_has_a_realistic_history(bank_service: BankService) -> None:
    for customer in CUSTOMERS:
        for card in bank_service.cards(customer.ref):
            if card.kind == "debit" and card.status == "active":
                assert len(bank_service.transactions(customer.ref, card.last4, limit=100)) >= 8


def test_statement(bank_service: BankService) -> None:
    expected = StatementView("8888", 328_000, 32_800, date(2026, 12, 5), 0)
    assert bank_service.credit_card_statement("C1001") == expected
    assert bank_service.credit_card_statement("C1001", "8888") == expected
    assert expected.remaining_due_cents == 328_000


def test_statement_picks_the_card_with_something_due(bank_service: BankService) -> None:
    assert bank_service.credit_card_statement("C1003") == StatementView("9999", 0, 0, date(2026, 12, 8), 0)
    assert bank_service.credit_card_statement("C1005").card_last4 == "3333"


def test_no_statement(bank_service: BankService) -> None:
    assert bank_service.credit_card_statement("C1002") is None  # no credit card at all
    assert bank_service.credit_card_statement("C1003", "7777") is None  # new card, no statement yet
    assert bank_service.credit_card_statement("C1001", "1234") is None  # a debit card


def test_statement_of_someone_elses_card(bank_service: BankService) -> None:
    with pytest.raises(NotYourCard):
        bank_service.credit_card_statement("C1002", "8888")
