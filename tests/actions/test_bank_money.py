"""Money movements and card state: repayment, transfer, card loss, activation; idempotency and atomicity."""

from __future__ import annotations

from dataclasses import replace

import re
import threading
from datetime import date

import pytest

import actions.bank.payments as payments_module
from actions.bank import BankService, IdempotencyConflict, UnknownCustomer
from actions.bank.money import MAX_AMOUNT_CENTS, is_phone_amount
from actions.bank.views import (
    ActivationResult,
    ActivationStatus,
    CardLossResult,
    CardLossStatus,
    RepaymentResult,
    TransferResult,
    TransferStatus,
)

REFERENCE = re.compile(r"[0-9]{12}")


# ---------------------------------------------------------------- repayment


def test_repayment_moves_money_once(bank_service: BankService) -> None:
    result = bank_service.repay_credit_card("C1001", "8888", "1234", 100_000, request_id="call-1:repay")
    assert result.status == "ok"
    assert REFERENCE.fullmatch(result.reference) and result.reference.startswith("3")
    assert result.new_balance_cents == 5_234_050 - 100_000
    assert result.remaining_due_cents == 228_000
    assert bank_service.balance("C1001", "1234") == 5_134_050
    assert bank_service.balance("C1001", "8888") == 5_000_000 - 228_000
    statement = bank_service.credit_card_statement("C1001", "8888")
    assert (statement.paid_cents, statement.remaining_due_cents) == (100_000, 228_000)
    latest = bank_service.transactions("C1001", "1234", limit=1)[0]
    assert (latest.description, latest.amount_cents) == ("信用卡还款 尾号8888", -100_000)
    assert latest.balance_after_cents == 5_134_050


def test_repayment_retry_returns_the_original_result(bank_service: BankService) -> None:
    first = bank_service.repay_credit_card("C1001", "8888", "1234", 32_800, request_id="r-1")
    again = bank_service.repay_credit_card("C1001", "8888", "1234", 32_800, request_id="r-1")
    assert again == replace(first, repeated=True)  # the stored result, marked as a repeat
    assert bank_service.balance("C1001", "1234") == 5_234_050 - 32_800
    assert bank_service.credit_card_statement("C1001").paid_cents == 32_800


def test_two_requests_are_two_repayments(bank_service: BankService) -> None:
    first = bank_service.repay_credit_card("C1001", "8888", "1234", 32_800, request_id="r-1")
    second = bank_service.repay_credit_card("C1001", "8888", "1234", 32_800, request_id="r-2")
    assert first.reference != second.reference
    assert second.remaining_due_cents == 328_000 - 2 * 32_800


def test_full_repayment_then_nothing_due(bank_service: BankService) -> None:
    assert bank_service.repay_credit_card("C1001", "8888", "1234", 328_000, "r-1").remaining_due_cents == 0
    assert bank_service.repay_credit_card("C1001", "8888", "1234", 100, "r-2") == RepaymentResult(
        "nothing_due", remaining_due_cents=0
    )


def test_repayment_with_insufficient_funds_changes_nothing(bank_service: BankService) -> None:
    # 刘洋 owes 1,560.40 on 3333; move his money to the credit card first, leaving 100.00 on 6666
    bank_service.transfer("C1005", "6666", "3333", 2_345_678 - 10_000, "t-1")
    result = bank_service.repay_credit_card("C1005", "3333", "6666", 50_000, "r-1")
    assert result.status == "insufficient_funds"
    assert result.new_balance_cents == 10_000
    assert bank_service.balance("C1005", "6666") == 10_000
    # a refused request is not stored, so its id may carry a corrected request
    assert bank_service.repay_credit_card("C1005", "3333", "6666", 5_000, "r-1").status == "ok"
    assert bank_service.balance("C1005", "6666") == 5_000


def test_nothing_due_on_a_paid_statement(bank_service: BankService) -> None:
    assert bank_service.repay_credit_card("C1003", "9999", "4321", 10_000, "r-1").status == "nothing_due"
    assert bank_service.balance("C1003", "4321") == 120_000


@pytest.mark.parametrize("amount", [0, -100, 1.5, "100", True, None, 328_001])
def test_invalid_repayment_amounts(bank_service: BankService, amount) -> None:
    assert bank_service.repay_credit_card("C1001", "8888", "1234", amount, "r-1").status == "invalid_amount"
    assert bank_service.balance("C1001", "1234") == 5_234_050


@pytest.mark.parametrize(
    "customer, credit, debit",
    [("C1002", "8888", "5678"), ("C1001", "8888", "5678"), ("C1001", "9999", "1234"), ("C1001", "88", "1234")],
)
def test_repayment_only_between_own_cards(bank_service: BankService, customer, credit, debit) -> None:
    assert bank_service.repay_credit_card(customer, credit, debit, 1000, "r-1").status == "not_your_card"


def test_repayment_needs_a_credit_card_and_an_active_debit_card(bank_service: BankService) -> None:
    assert bank_service.repay_credit_card("C1001", "1234", "8888", 1000, "r-1").status == "card_unavailable"
    bank_service.report_card_loss("C1001", "1234", "loss-1")
    assert bank_service.repay_credit_card("C1001", "8888", "1234", 1000, "r-2").status == "card_unavailable"


def test_reusing_a_request_id_for_another_repayment_is_refused(bank_service: BankService) -> None:
    bank_service.repay_credit_card("C1001", "8888", "1234", 32_800, "r-1")
    with pytest.raises(IdempotencyConflict):
        bank_service.repay_credit_card("C1001", "8888", "1234", 50_000, "r-1")
    assert bank_service.balance("C1001", "1234") == 5_234_050 - 32_800


@pytest.mark.parametrize("request_id", ["", "   ", None])
def test_a_request_id_is_required(bank_service: BankService, request_id) -> None:
    with pytest.raises(ValueError):
        bank_service.repay_credit_card("C1001", "8888", "1234", 100, request_id)


def test_concurrent_retries_move_money_once(bank_service: BankService) -> None:
    results: list[RepaymentResult] = []
    barrier = threading.Barrier(4)

    def retry() -> None:
        barrier.wait()
        results.append(bank_service.repay_credit_card("C1001", "8888", "1234", 10_000, "same-request"))

    threads = [threading.Thread(target=retry) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 4 and len({replace(r, repeated=False) for r in results}) == 1
    assert results[0].status == "ok" and sum(not r.repeated for r in results) == 1  # moved once, 3 repeats
    assert bank_service.balance("C1001", "1234") == 5_234_050 - 10_000


def test_a_failure_midway_rolls_back_everything(bank_service: BankService, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_reference(*_args) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr(payments_module, "reference_number", broken_reference)
    with pytest.raises(RuntimeError):
        bank_service.repay_credit_card("C1001", "8888", "1234", 10_000, "r-1")
    with pytest.raises(RuntimeError):
        bank_service.transfer("C1001", "1234", "8888", 10_000, "t-1")
    monkeypatch.undo()
    assert bank_service.balance("C1001", "1234") == 5_234_050
    assert bank_service.credit_card_statement("C1001").paid_cents == 0
    assert bank_service.transactions("C1001", "1234", limit=1)[0].description == "利息入账"
    assert bank_service.repay_credit_card("C1001", "8888", "1234", 10_000, "r-1").status == "ok"


# ---------------------------------------------------------------- transfer


def test_transfer_between_own_cards(bank_service: BankService) -> None:
    result = bank_service.transfer("C1003", "4321", "9999", 50_000, "t-1", today=date(2026, 11, 26))
    assert result.status == "ok" and REFERENCE.fullmatch(result.reference) and result.reference.startswith("2")
    assert result.limit_left_cents == 5_000_000 - 50_000
    assert bank_service.balance("C1003", "4321") == 70_000
    assert bank_service.balance("C1003", "9999") == 3_000_000 + 50_000
    incoming = bank_service.transactions("C1003", "9999", limit=1)[0]
    assert (incoming.description, incoming.amount_cents) == ("转入 来自尾号4321", 50_000)


def test_transfer_retry_moves_money_once(bank_service: BankService) -> None:
    first = bank_service.transfer("C1003", "4321", "9999", 50_000, "t-1")
    assert bank_service.transfer("C1003", "4321", "9999", 50_000, "t-1") == replace(first, repeated=True)
    assert bank_service.balance("C1003", "4321") == 70_000


def test_daily_limit(bank_service: BankService) -> None:
    day = date(2026, 11, 26)
    assert bank_service.transfer("C1001", "1234", "8888", 3_000_000, "t-1", today=day).limit_left_cents == 2_000_000
    assert bank_service.transfer("C1001", "1234", "8888", 2_000_001, "t-2", today=day) == TransferResult(
        "daily_limit", limit_left_cents=2_000_000
    )
    assert bank_service.transfer("C1001", "1234", "8888", 2_000_000, "t-3", today=day).limit_left_cents == 0
    # the limit is per day
    assert bank_service.transfer("C1001", "1234", "8888", 100, "t-4", today=date(2026, 11, 27)).status == "ok"


def test_daily_limit_comes_from_settings(bank_db_url, bank_settings) -> None:
    import dataclasses

    service = BankService(bank_db_url, dataclasses.replace(bank_settings, daily_transfer_limit_cents=10_000))
    try:
        assert service.transfer("C1001", "1234", "8888", 10_001, "t-1").status == "daily_limit"
    finally:
        service.close()


def test_transfer_with_insufficient_funds(bank_service: BankService) -> None:
    assert bank_service.transfer("C1003", "4321", "9999", 120_001, "t-1") == TransferResult(
        "insufficient_funds", limit_left_cents=5_000_000
    )
    assert bank_service.balance("C1003", "4321") == 120_000


def test_transfer_refusals(bank_service: BankService) -> None:
    assert bank_service.transfer("C1003", "4321", "4321", 100, "t-1").status == "same_card"
    assert bank_service.transfer("C1003", "4321", "1234", 100, "t-2").status == "not_your_card"  # 王建国's card
    assert bank_service.transfer("C1003", "0000", "9999", 100, "t-3").status == "not_your_card"
    assert bank_service.transfer("C1003", "9999", "4321", 100, "t-4").status == "card_unavailable"  # from credit
    assert bank_service.transfer("C1003", "4321", "7777", 100, "t-5").status == "card_unavailable"  # inactive
    assert bank_service.transfer("C1006", "6666", "1111", 100, "t-6").status == "card_unavailable"  # lost
    for amount in (0, -1, 0.5, "100", None, False):
        assert bank_service.transfer("C1003", "4321", "9999", amount, "t-7").status == "invalid_amount"
    assert bank_service.balance("C1003", "4321") == 120_000


def test_transfer_for_an_unknown_customer(bank_service: BankService) -> None:
    with pytest.raises(UnknownCustomer):
        bank_service.transfer("C0000", "4321", "9999", 100, "t-1")


# ---------------------------------------------------------------- card loss and activation


def test_report_card_loss(bank_service: BankService) -> None:
    reported = bank_service.report_card_loss("C1001", "1234", "loss-1")
    assert reported.status == "reported"
    assert REFERENCE.fullmatch(reported.reference) and reported.reference.startswith("1")
    assert bank_service.find_card("1234").status == "lost"
    assert bank_service.report_card_loss("C1001", "1234", "loss-1") == replace(reported, repeated=True)  # a retry
    second_report = bank_service.report_card_loss("C1001", "1234", "loss-2")
    assert second_report == CardLossResult("already_lost", reported.reference)


def test_report_loss_of_a_card_lost_before(bank_service: BankService) -> None:
    assert bank_service.report_card_loss("C1006", "1111", "loss-1") == CardLossResult("already_lost", None)


def test_report_loss_of_someone_elses_card(bank_service: BankService) -> None:
    assert bank_service.report_card_loss("C1002", "1234", "loss-1") == CardLossResult("not_your_card")
    assert bank_service.find_card("1234").status == "active"


def test_loss_reports_survive_a_restart(bank_db_url, bank_settings) -> None:
    first = BankService(bank_db_url, bank_settings)
    reported = first.report_card_loss("C1001", "1234", "loss-1")
    first.close()
    second = BankService(bank_db_url, bank_settings)
    try:
        assert second.report_card_loss("C1001", "1234", "loss-1") == replace(reported, repeated=True)
        assert second.find_card("1234").status == "lost"
    finally:
        second.close()


def test_activate_card(bank_service: BankService) -> None:
    assert bank_service.activate_card("C1003", "7777") == ActivationResult("activated")
    assert bank_service.find_card("7777").status == "active"
    assert bank_service.activate_card("C1003", "7777") == ActivationResult("already_active")
    assert bank_service.activate_card("C1006", "1111") == ActivationResult("lost")
    assert bank_service.activate_card("C1001", "7777") == ActivationResult("not_your_card")


# ---------------------------------------------------------------- rules before a movement (moved from actions/cards.py)


def test_repayment_plan(bank_service: BankService) -> None:
    plan = bank_service.payments.repayment_plan("C1001", "1234")
    assert (plan.statement.card_last4, plan.source.last4, plan.remaining_due_cents, plan.possible) == (
        "8888", "1234", 328_000, True
    )
    bank_service.repay_credit_card("C1001", "8888", "1234", 328_000, "r-1")
    assert bank_service.payments.repayment_plan("C1001", "8888").possible is False  # nothing due any more


def test_no_repayment_without_a_statement_or_a_debit_card(bank_service: BankService) -> None:
    assert bank_service.payments.repayment_plan("C1003", "9999").possible is False  # the bill is 0
    assert bank_service.payments.repayment_plan("C1002", "5678").statement is None  # no credit card
    bank_service.report_card_loss("C1001", "1234", "loss-1")
    plan = bank_service.payments.repayment_plan("C1001", "8888")
    assert plan.remaining_due_cents == 328_000 and plan.source is None and not plan.possible


@pytest.mark.parametrize("cents, ok", [(1, True), (MAX_AMOUNT_CENTS, True), (MAX_AMOUNT_CENTS + 1, False), (0, False),
                                       (-100, False), (True, False), (1.0, False), ("100", False)])
def test_is_phone_amount(cents, ok: bool) -> None:
    assert is_phone_amount(cents) is ok


def test_results_are_typed(bank_service: BankService) -> None:
    first = bank_service.transfer("C1003", "4321", "9999", 100, "t-1")
    again = bank_service.transfer("C1003", "4321", "9999", 100, "t-1")  # read back from the stored record
    assert first.status is TransferStatus.OK and again.status is TransferStatus.OK and again.repeated
    loss = bank_service.report_card_loss("C1001", "1234", "loss-1")
    assert bank_service.report_card_loss("C1001", "1234", "loss-1").status is CardLossStatus.REPORTED
    assert loss.status is CardLossStatus.REPORTED
    assert bank_service.activate_card("C1003", "7777").status is ActivationStatus.ACTIVATED


def test_transfer_limit_left(bank_service: BankService) -> None:
    day = date(2026, 11, 26)
    assert bank_service.payments.transfer_limit_left("C1001", today=day) == 5_000_000
    bank_service.transfer("C1001", "1234", "8888", 3_000_000, "t-1", today=day)
    assert bank_service.payments.transfer_limit_left("C1001", today=day) == 2_000_000
    assert bank_service.payments.transfer_limit_left("C1001", today=date(2026, 11, 27)) == 5_000_000
    assert bank_service.payments.transfer_limit_left("C1003") == 5_000_000  # today in bank time by default
    with pytest.raises(UnknownCustomer):
        bank_service.payments.transfer_limit_left("C0000")
