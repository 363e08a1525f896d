"""The bank's results: status enums whose values are the stored and compared strings, and typed frozen views."""

from __future__ import annotations

import dataclasses
import json
from datetime import date

import pytest

from actions.bank.views import (
    ActivationResult,
    ActivationStatus,
    CardKind,
    CardLossResult,
    CardLossStatus,
    CardStatus,
    CardView,
    PinResult,
    PinStatus,
    RepaymentPlan,
    RepaymentResult,
    RepaymentStatus,
    StatementView,
    TransferResult,
    TransferStatus,
    WorkOrderKind,
)

# The strings stored in the database and in idempotency records before the enums existed: they must not change.
STORED_VALUES = {
    CardKind: {"debit", "credit"},
    CardStatus: {"active", "lost", "inactive"},
    PinStatus: {"ok", "wrong", "locked", "unknown_card"},
    RepaymentStatus: {"ok", "insufficient_funds", "not_your_card", "nothing_due", "invalid_amount", "card_unavailable"},
    CardLossStatus: {"reported", "already_lost", "not_your_card"},
    ActivationStatus: {"activated", "already_active", "lost", "not_your_card"},
    TransferStatus: {"ok", "insufficient_funds", "daily_limit", "same_card", "not_your_card", "invalid_amount",
                     "card_unavailable"},
    WorkOrderKind: {"complaint", "callback"},
}


@pytest.mark.parametrize("enum", list(STORED_VALUES))
def test_enum_values_are_the_stored_strings(enum) -> None:
    assert {member.value for member in enum} == STORED_VALUES[enum]


def test_a_status_is_its_string_everywhere_the_actions_use_it() -> None:
    status = CardStatus.LOST
    assert status == "lost" and str(status) == "lost" and f"{status}" == "lost"
    assert {"lost": "挂失"}.get(status) == "挂失"  # dict lookups keyed by the old strings still find it
    assert json.dumps({"status": status}) == '{"status": "lost"}'


@pytest.mark.parametrize(
    "view, field, enum",
    [
        (CardView("1234", "debit", "active", "C1001"), "kind", CardKind),
        (CardView("1234", "debit", "active", "C1001"), "status", CardStatus),
        (PinResult("ok", 3, "C1001"), "status", PinStatus),
        (RepaymentResult("nothing_due"), "status", RepaymentStatus),
        (CardLossResult("reported", "1"), "status", CardLossStatus),
        (ActivationResult("activated"), "status", ActivationStatus),
        (TransferResult("daily_limit"), "status", TransferStatus),
    ],
)
def test_views_built_from_strings_hold_enum_members(view, field, enum) -> None:
    assert type(getattr(view, field)) is enum


def test_a_view_refuses_a_status_that_does_not_exist() -> None:
    with pytest.raises(ValueError):
        TransferResult("done")
    with pytest.raises(ValueError):
        CardView("1234", "prepaid", "active", "C1001")


def test_a_result_round_trips_through_its_stored_json() -> None:
    result = RepaymentResult(RepaymentStatus.OK, "3261126000001", 100, 0)
    stored = RepaymentResult(**json.loads(json.dumps(dataclasses.asdict(result))))
    assert stored == result and stored.status is RepaymentStatus.OK


def _statement(amount_due: int, paid: int) -> StatementView:
    return StatementView("8888", amount_due, amount_due // 10, date(2026, 12, 5), paid)


@pytest.mark.parametrize(
    "statement, source, remaining, possible",
    [
        (_statement(328_000, 0), CardView("1234", "debit", "active", "C1001"), 328_000, True),
        (_statement(328_000, 328_000), CardView("1234", "debit", "active", "C1001"), 0, False),
        (_statement(328_000, 0), None, 328_000, False),
        (None, CardView("1234", "debit", "active", "C1001"), 0, False),
    ],
)
def test_repayment_plan(statement, source, remaining: int, possible: bool) -> None:
    plan = RepaymentPlan(statement, source)
    assert (plan.remaining_due_cents, plan.possible) == (remaining, possible)
