"""The dialogue's facts for the call record and the KPIs (call_contract.py): `task_completed`, `elderly`, and the
satisfaction survey's `survey_offered` / `survey_answer`, as the dialogue builds them and the gateway reads them.
Runs in both venvs, like tests/test_call_contract.py."""

from __future__ import annotations

import json
import math

import pytest

import call_contract as contract


def test_task_completed_names_only_known_tasks():
    assert contract.task_completed("transfer_money") == {"event": "task_completed", "task": "transfer_money"}
    with pytest.raises(ValueError, match="TASKS"):
        contract.task_completed("move_all_money")
    assert contract.parse_task_completed(contract.task_completed("complaint")) == "complaint"
    for forged in ("DROP TABLE", "check_balance ", "ｃheck_balance", None, 7, ["check_balance"], "x" * 10_000):
        assert contract.parse_task_completed({"event": "task_completed", "task": forged}) is None
    assert contract.parse_task_completed({"event": "task_completed"}) is None


def test_every_task_is_a_task_intent_of_the_dialogue():
    # the KPIs match completed tasks against recognised intents: the names must be the intents' own
    from pathlib import Path

    domain = " ".join(p.read_text(encoding="utf-8") for p in Path(contract.__file__).parent.glob("domain/*.yml"))
    assert all(f"- {task}\n" in domain for task in contract.TASKS)


def test_elderly_is_true_only_when_said_so():
    assert contract.parse_elderly(contract.elderly_caller()) is True
    for value in (False, "true", 1, None, [True]):
        assert contract.parse_elderly({"event": "elderly", "value": value}) is False


def test_survey_events_carry_a_score_of_one_to_three_or_none():
    assert contract.survey_offered() == {"event": "survey_offered"}
    assert contract.survey_answer(3) == {"event": "survey_answer", "score": 3}
    assert json.loads(json.dumps(contract.survey_answer(None))) == {"event": "survey_answer", "score": None}
    for bad in (0, 4, -1):
        with pytest.raises(ValueError):
            contract.survey_answer(bad)
    assert [contract.parse_survey_score(contract.survey_answer(s)) for s in (1, 2, 3, None)] == [1, 2, 3, None]
    for forged in (True, False, "1", 1.0, 1.5, 0, 4, 10**100, math.nan, None, [1], {"score": 1}):
        assert contract.parse_survey_score({"event": "survey_answer", "score": forged}) is None
    assert sorted(contract.SURVEY_SCORES) == [1, 2, 3]


def test_the_survey_no_answer_message_is_an_intent_message():
    assert contract.SURVEY_NO_ANSWER == "/survey_no_answer"
    assert contract.SURVEY_NO_ANSWER.lstrip("/") == contract.SURVEY_NO_ANSWER_INTENT
