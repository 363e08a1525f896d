"""Call records, caller-number masking, backchannel detection and CallInfo validation (no pipeline)."""

from __future__ import annotations

import json

import pytest

from bot.call import CallInfo
from bot.call_records import CallRecord, CallRecordWriter, mask_caller_number
from bot.processors.turns import is_backchannel
from call_contract import (
    EVENT_ELDERLY, EVENT_SURVEY_ANSWER, EVENT_TASK_COMPLETED, elderly_caller, survey_answer, survey_offered,
    task_completed,
)


@pytest.mark.parametrize("number, masked", [
    ("13800000001", "138****0001"), ("+8613800000001", "+86*******0001"), ("1234567", "*******"), ("", ""),
])
def test_caller_number_is_masked(number, masked):
    assert mask_caller_number(number) == masked


@pytest.mark.parametrize("text", ["嗯", "嗯 嗯", "对对对", "好的", "哦。", "嗯 好 的", "是的", "OK"])
def test_backchannels(text):
    assert is_backchannel(text)


@pytest.mark.parametrize("text", ["转人工", "我要查余额", "不对", "好的我要挂失", "停"])
def test_not_backchannels(text):
    assert not is_backchannel(text)


def test_outcomes():
    served = CallRecord("c1", "13800000001")
    served.add_caller_turn("查余额", source="speech", secure=False)
    served.bot_replied(to_caller=True)
    served.finish("remote_hangup")
    assert served.outcome == "served_by_bot"

    waiting = CallRecord("c2", "13800000001")
    waiting.add_caller_turn("查余额", source="speech", secure=False)  # hung up before the answer
    waiting.finish("remote_hangup")
    assert waiting.outcome == "abandoned"

    handed = CallRecord("c3", "13800000001")
    handed.mark_handoff({"reason": "pin_locked", "queue": "general"})
    handed.finish("transferred")
    assert (handed.outcome, handed.handoff_reason) == ("handoff", "pin_locked")


def test_writer_appends_one_masked_json_line_per_call(tmp_path):
    writer = CallRecordWriter(tmp_path / "calls")
    for call_id in ("a", "b"):
        record = CallRecord(call_id, "13800000001")
        record.add_caller_turn('/dtmf{"digits":"135790"}', source="keypad", secure=True)
        record.finish("remote_hangup")
        path = writer.write(record)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["call_id"] for r in lines] == ["a", "b"]
    assert "135790" not in path.read_text() and "13800000001" not in path.read_text()


def test_card_numbers_said_or_keyed_outside_a_secure_prompt_never_reach_a_record(tmp_path):
    """The record goes to shared storage (PostgreSQL in a cluster): a caller's card number, however ASR punctuated
    it, is `****` there, while short numbers (an amount, a card's last four digits, a menu key) stay."""
    record = CallRecord("c1", "13800000001")
    for text in ("卡号是6222，0212，3456，7890", "一二三、四五六", "我的卡号 6222 0212 3456 7890 123",
                 '/dtmf{"digits":"6222021234567890"}', "转500元", "尾号1234", '/dtmf{"digits":"0"}'):
        record.add_caller_turn(text, source="asr", secure=False)
    record.add_caller_turn("135790", source="keypad", secure=True)
    record.add_bot_texts(["请说出卡号"])
    record.finish("remote_hangup")
    path = CallRecordWriter(tmp_path / "calls").write(record)
    [stored] = [json.loads(line) for line in path.read_text().splitlines()]
    assert [turn["text"] for turn in stored["transcript"] if turn["who"] == "caller"] == [
        "卡号是****", "****", "我的卡号 ****", '/dtmf{"digits":"****"}', "转500元", "尾号1234",
        '/dtmf{"digits":"0"}', "****"]
    for secret in ("6222", "0212", "7890", "一二三", "135790"):
        assert secret not in path.read_text()


@pytest.mark.parametrize("kwargs", [{"call_id": "", "caller_number": "1"},
                                    {"call_id": "x", "caller_number": "1", "sample_rate": 11025}])
def test_call_info_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        CallInfo(**kwargs)


def test_a_turn_decoded_under_tightened_limits_is_noted_in_the_record():
    record = CallRecord(call_id="c1", caller_number="13800000001")
    record.add_caller_turn("查余额", source="speech", secure=False)
    record.add_caller_turn("****", source="speech", secure=True, asr_limits="max-active 1000, beam 8.0")

    data = record.to_json()
    assert "asr_limits" not in data["transcript"][0]
    assert data["transcript"][1]["asr_limits"] == "max-active 1000, beam 8.0"
    assert data["tightened_turns"] == 1


def test_the_dialogue_facts_are_filed_by_one_method_whoever_carries_the_reply():
    # Review SHOULD-FIX 6: the Rasa bridge and the web console each had their own copy of this, with the events'
    # names spelled out again; both now call CallRecord.note_dialogue_fact with call_contract's builders' events.
    record = CallRecord(call_id="c1", caller_number="13800000001")
    for event in (task_completed("check_balance"), elderly_caller(), task_completed("transfer_money"),
                  task_completed("check_balance"), survey_offered(), survey_answer(2)):
        assert record.note_dialogue_fact(event) is True
    assert record.completed_tasks == ["check_balance", "transfer_money"]  # each once, in order
    assert (record.elderly, record.survey_offered, record.survey_score) == (True, True, 2)

    # forged or foreign: nothing the KPIs cannot read gets in, and an elderly flag is never taken back
    assert record.note_dialogue_fact({"event": EVENT_TASK_COMPLETED, "task": "steal_money"}) is False
    assert record.note_dialogue_fact({"event": "hangup"}) is False and record.note_dialogue_fact("elderly") is False
    assert record.note_dialogue_fact({"event": EVENT_ELDERLY, "value": False}) is True and record.elderly is True
    record.note_dialogue_fact({"event": EVENT_SURVEY_ANSWER, "score": True})
    assert record.completed_tasks == ["check_balance", "transfer_money"] and record.survey_score is None
