"""Accounts of a verified customer: cards, balances, transaction history, credit-card statements, card rules."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from actions.bank import BankService, NotYourCard, UnknownCustomer
from actions.bank.accounts import card_to_activate, debit_source
from actions.bank.seed import CUSTOMERS
from actions.bank.views import CardStatus, CardView, StatementView


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


# ---------------------------------------------------------------- card rules (moved here from actions/cards.py)


def test_own_card(bank_service: BankService) -> None:
    assert bank_service.accounts.card("C1001", "8888") == CardView("8888", "credit", "active", "C1001")
    assert bank_service.accounts.card("C1006", "1111").status is CardStatus.LOST
    for not_theirs in ("5678", "0000", "88", None):
        assert bank_service.accounts.card("C1001", not_theirs) is None
    with pytest.raises(UnknownCustomer):
        bank_service.accounts.card("C9999", "1234")


@pytest.mark.parametrize(
    "customer, named, statement_of",
    [
        ("C1001", "8888", "8888"),  # the credit card named
        ("C1001", "1234", "8888"),  # a debit card named: the statement with something due
        ("C1001", None, "8888"),
        ("C1001", "5678", "8888"),  # someone else's card is not refused here, just not used
        ("C1003", "9999", "9999"),
        ("C1003", "7777", None),  # the credit card named has no statement yet
        ("C1002", "5678", None),  # no credit card at all
    ],
)
def test_statement_for_the_card_the_caller_means(bank_service: BankService, customer, named, statement_of) -> None:
    statement = bank_service.accounts.statement_for(customer, named)
    assert (statement.card_last4 if statement else None) == statement_of


def test_statement_for_an_unknown_customer(bank_service: BankService) -> None:
    with pytest.raises(UnknownCustomer):
        bank_service.accounts.statement_for("C9999", "8888")


def _card(last4: str, kind: str, status: str = "active") -> CardView:
    return CardView(last4, kind, status, "C1")


@pytest.mark.parametrize(
    "cards, preferred, expected",
    [
        ([_card("1234", "debit"), _card("8888", "credit")], "1234", "1234"),
        ([_card("1234", "debit"), _card("8888", "credit")], "8888", "1234"),  # a credit card is not a source
        ([_card("1234", "debit"), _card("5555", "debit")], "5555", "5555"),
        ([_card("1234", "debit"), _card("5555", "debit")], None, "1234"),
        ([_card("1234", "debit", "lost"), _card("5555", "debit")], "1234", "5555"),  # only an active card
        ([_card("1234", "debit", "inactive"), _card("8888", "credit")], "1234", None),
        ([], None, None),
    ],
)
def test_debit_source(cards, preferred, expected) -> None:
    source = debit_source(cards, preferred)
    assert (source.last4 if source else None) == expected


def test_debit_source_of_a_customer(bank_service: BankService) -> None:
    assert bank_service.accounts.debit_source("C1001", "8888").last4 == "1234"
    assert bank_service.accounts.debit_source("C1006", "1111").last4 == "6666"  # 1111 is lost


@pytest.mark.parametrize(
    "cards, named, expected",
    [
        ([_card("4321", "debit"), _card("7777", "credit", "inactive")], "4321", "7777"),  # 「激活新卡」
        ([_card("4321", "debit"), _card("7777", "credit", "inactive")], "7777", "7777"),
        ([_card("4321", "debit"), _card("7777", "credit", "inactive"), _card("7778", "credit", "inactive")],
         "4321", "4321"),  # two new cards: the caller must say which
        ([_card("4321", "debit"), _card("1111", "debit", "lost")], "1111", "1111"),
        ([_card("4321", "debit")], "0000", "0000"),  # not theirs: activation says so
        ([_card("4321", "debit")], None, None),
    ],
)
def test_card_to_activate(cards, named, expected) -> None:
    assert card_to_activate(cards, named) == expected


def test_card_to_activate_of_a_customer(bank_service: BankService) -> None:
    assert bank_service.accounts.card_to_activate("C1003", "4321") == "7777"
    assert bank_service.accounts.card_to_activate("C1001", "1234") == "1234"
