"""The Rasa bridge on its own (pipecat's run_test) against an HTTP server speaking the call contract:
replies become TTS text and control frames in order; a slow, failing or nonsensical Rasa becomes an apology.

The same bridge against the real Rasa server: tests/integration/test_voice_rasa_bridge.py.
"""

from __future__ import annotations

import dataclasses

import pytest
from pipecat.frames.frames import TTSSpeakFrame
from pipecat.tests.utils import SleepFrame, run_test

from bot.call_records import CallRecord
from bot.frames import (
    BotReplyTextFrame,
    CallerTurnFrame,
    ExpectInputFrame,
    HandoffFrame,
    HangupFrame,
    NoInputFrame,
    PromptInterruptibleFrame,
    SpeechRateFrame,
)
from bot.metrics import RASA_UNAVAILABLE_TURNS
from bot.processors.rasa_bridge import APOLOGY_TEXT, HOLD_TEXT, CallMetadata, RasaBridge
from bot.rasa_client import RasaClient
from call_contract import HUMAN_AGENT, fallback_handoff
from settings import Settings
from tests.bot.voice_doubles import CALLER, ScriptedRasa

HANDOFF = {"event": "handoff", "queue": "elderly_priority", "priority": 9, "reason": "human_agent",
           "context": {"intent": "human_agent", "verified": True, "customer_ref": "c-1", "green_channel": True,
                       "call_id": "c1"}}


@pytest.fixture
async def rasa():
    server = ScriptedRasa(replies={"/call_start": []})
    await server.start()
    yield server
    await server.stop()


def make_bridge(rasa: ScriptedRasa, *, timeout_s: float = 1.0, asr: bool = True,
                record: CallRecord | None = None, hold_after_s: float = 0.0, **kwargs) -> RasaBridge:
    return RasaBridge(client=RasaClient(rasa.url, "t", timeout_s=timeout_s), call_id="c1",
                      metadata=CallMetadata(caller_number=CALLER, asr_available=asr), record=record,
                      hold_after_s=hold_after_s, **kwargs)


def of_type(frames, cls):
    return [f for f in frames if isinstance(f, cls)]


async def test_reply_items_become_frames_in_order(rasa):
    rasa.replies["/call_start"] = [
        {"text": "您好。"},
        {"custom": {"event": "speech_rate", "rate": 0.8}},
        {"custom": {"event": "interruptible", "value": False}},
        {"text": "请输入密码。"},
        {"custom": {"event": "expect", "input": "digits", "max_length": 6, "secure": True}},
    ]
    down, up = await run_test(make_bridge(rasa), frames_to_send=[SleepFrame(sleep=0.3)])

    assert [f.text for f in of_type(down, TTSSpeakFrame)] == ["您好。", "请输入密码。"]
    assert of_type(down, SpeechRateFrame)[0].rate == 0.8 and of_type(up, SpeechRateFrame)[0].elderly
    assert [f.value for f in of_type(down, PromptInterruptibleFrame)] == [True, False]
    expect = of_type(up, ExpectInputFrame)[0]  # upstream too: the recognizer and keypad gatherer need it
    assert (expect.input, expect.max_length, expect.secure) == ("digits", 6, True)
    assert of_type(down, BotReplyTextFrame)[0].texts == ["您好。", "请输入密码。"]
    assert rasa.received[0]["metadata"] == {"caller_number": CALLER, "channel": "voice", "asr_available": True}


async def test_handoff_and_hangup_follow_the_texts_downstream(rasa):
    rasa.replies["/human_agent"] = [{"text": "正在转接。"}, {"custom": HANDOFF}]
    rasa.replies["再见"] = [{"text": "再见。"}, {"custom": {"event": "hangup"}}]
    record = CallRecord(call_id="c1", caller_number=CALLER)
    down, _ = await run_test(make_bridge(rasa, record=record), frames_to_send=[
        SleepFrame(sleep=0.2), CallerTurnFrame(text="/human_agent", source="keypad"), SleepFrame(sleep=0.3)])

    kinds = [type(f) for f in down if isinstance(f, (TTSSpeakFrame, HandoffFrame))]
    assert kinds == [TTSSpeakFrame, HandoffFrame]
    assert of_type(down, HandoffFrame)[0].event == HANDOFF
    assert (record.outcome, record.handoff_reason, record.handoff_queue) == ("handoff", "human_agent", "elderly_priority")

    goodbye = CallRecord(call_id="c1", caller_number=CALLER)
    down, _ = await run_test(make_bridge(rasa, record=goodbye), frames_to_send=[
        SleepFrame(sleep=0.2), CallerTurnFrame(text="再见"), SleepFrame(sleep=0.3)])
    kinds = [type(f) for f in down if isinstance(f, (TTSSpeakFrame, HangupFrame))]
    assert kinds == [TTSSpeakFrame, HangupFrame]
    assert (goodbye.outcome, goodbye.bot_hangup) == ("served_by_bot", "goodbye")  # the 智能服务占比 counts it


async def test_slow_rasa_becomes_an_apology(rasa):
    rasa.delay_s = 0.8
    down, _ = await run_test(make_bridge(rasa, timeout_s=0.2), frames_to_send=[SleepFrame(sleep=0.5)])
    assert [f.text for f in of_type(down, TTSSpeakFrame)] == [APOLOGY_TEXT]


async def test_a_slow_turn_is_held_and_its_real_outcome_is_spoken_never_an_apology(rasa):
    # Issue 7: the gateway gave up after 3 s while the dialogue's budget is 6 s, so a transfer could complete after
    # the caller heard an apology. Now a slow turn gets 「请稍候」 and the reply that really comes.
    rasa.delay_s = 0.8
    rasa.replies["/call_start"] = [{"text": "转账成功。"}]
    down, _ = await run_test(make_bridge(rasa, timeout_s=3.0, hold_after_s=0.2),
                             frames_to_send=[SleepFrame(sleep=1.2)])
    assert [f.text for f in of_type(down, TTSSpeakFrame)] == [HOLD_TEXT, "转账成功。"]


def test_the_gateway_waits_longer_than_the_dialogue_turn_budget():
    settings = Settings()
    assert settings.rasa_reply_timeout_s > settings.actions.turn_budget_s > settings.actions.timeout_s
    slow_actions = dataclasses.replace(settings, actions=dataclasses.replace(settings.actions, timeout_s=10.0))
    assert slow_actions.rasa_reply_timeout_s > 20.0


async def test_dead_rasa_becomes_an_apology_counted_as_a_lost_turn():
    dead = ScriptedRasa(replies={})
    dead.port = 9  # discard port: nothing listens
    lost_before = RASA_UNAVAILABLE_TURNS._value.get()
    down, _ = await run_test(make_bridge(dead), frames_to_send=[SleepFrame(sleep=0.3)])
    assert [f.text for f in of_type(down, TTSSpeakFrame)] == [APOLOGY_TEXT]
    assert RASA_UNAVAILABLE_TURNS._value.get() == lost_before + 1  # what bench/cluster_failover.py counts


async def test_rasa_down_apology_offers_the_human_key_the_gateway_obeys_then_the_contracts_fallback_handoff():
    # Issue 11: HUMAN_KEY=9 moved the agent key, but the apology still said 「请按0」.
    dead = ScriptedRasa(replies={})
    dead.port = 9  # discard port: nothing listens
    down, _ = await run_test(make_bridge(dead, human_key="9"), frames_to_send=[
        SleepFrame(sleep=0.3), CallerTurnFrame(text=HUMAN_AGENT, source="keypad"), SleepFrame(sleep=0.3)])
    apology = of_type(down, TTSSpeakFrame)[0].text
    assert "请按9" in apology and "按0" not in apology
    assert of_type(down, HandoffFrame)[0].event == fallback_handoff("c1")


async def test_garbage_reply_items_are_skipped(rasa):
    rasa.replies["/call_start"] = [
        {"custom": {"event": "teleport"}},
        {"custom": {"event": "speech_rate", "rate": "fast"}},
        {"custom": {"event": "expect", "max_length": "many"}},
        {"image": "x.png"},
        {"text": "您好。"},
    ]
    down, _ = await run_test(make_bridge(rasa), frames_to_send=[SleepFrame(sleep=0.3)])
    assert [f.text for f in of_type(down, TTSSpeakFrame)] == ["您好。"]
    assert of_type(down, SpeechRateFrame)[0].rate == 1.0  # nonsense rate → normal
    assert of_type(down, ExpectInputFrame)[0].max_length == 0


async def test_no_input_rungs(rasa):
    rasa.replies["/call_start"] = [{"text": "请讲。"}]
    down, _ = await run_test(make_bridge(rasa), frames_to_send=[
        SleepFrame(sleep=0.2), NoInputFrame(attempt=1), SleepFrame(sleep=0.2),
        NoInputFrame(attempt=2), SleepFrame(sleep=0.2), NoInputFrame(attempt=3), SleepFrame(sleep=0.3)])
    assert [f.text for f in of_type(down, TTSSpeakFrame)][:2] == ["请讲。", "请讲。"]
    assert rasa.messages == ["/call_start", '/dtmf{"digits":"*"}', "/human_agent"]


async def test_secure_turn_is_sent_but_masked_in_the_record(rasa):
    record = CallRecord(call_id="c1", caller_number=CALLER)
    await run_test(make_bridge(rasa, record=record), frames_to_send=[
        SleepFrame(sleep=0.2), CallerTurnFrame(text='/dtmf{"digits":"135790"}', source="keypad", secure=True),
        SleepFrame(sleep=0.3)])
    assert rasa.messages[-1] == '/dtmf{"digits":"135790"}'
    assert [t["text"] for t in record.transcript if t["who"] == "caller"] == ["****"]


# -- what Rasa understood, noted on each caller turn for the trainers (bot/nlu_review.py) -------------------------

UNSURE = {"intent": {"name": "nlu_fallback", "confidence": 0.4},
          "intent_ranking": [{"name": "nlu_fallback", "confidence": 0.4},
                             {"name": "check_balance", "confidence": 0.31}, {"name": "inform", "confidence": 0.2}]}
SURE = {"intent": {"name": "report_card_loss", "confidence": 0.934567}, "intent_ranking": []}


async def test_each_caller_turn_notes_the_nlu_result_and_a_fallback_names_the_classifiers_guess(rasa):
    rasa.parses.update({"那个钱匣子还剩多少": UNSURE, "我卡丢了": SURE})
    record = CallRecord(call_id="c1", caller_number=CALLER)
    await run_test(make_bridge(rasa, record=record), frames_to_send=[
        SleepFrame(sleep=0.2), CallerTurnFrame(text="那个钱匣子还剩多少", source="speech"), SleepFrame(sleep=0.3),
        CallerTurnFrame(text="我卡丢了", source="speech"), SleepFrame(sleep=0.3)])
    notes = [t.get("nlu") for t in record.transcript if t["who"] == "caller"]
    assert notes == [{"intent": "check_balance", "confidence": 0.31, "fallback": True},
                     {"intent": "report_card_loss", "confidence": 0.9346, "fallback": False}]
    assert record.intents == ["nlu_fallback", "report_card_loss"]


async def test_a_secure_turn_gets_no_nlu_note(rasa):
    rasa.parses['/dtmf{"digits":"135790"}'] = {"intent": {"name": "dtmf", "confidence": 1.0}}
    record = CallRecord(call_id="c1", caller_number=CALLER)
    await run_test(make_bridge(rasa, record=record), frames_to_send=[
        SleepFrame(sleep=0.2), CallerTurnFrame(text='/dtmf{"digits":"135790"}', source="keypad", secure=True),
        SleepFrame(sleep=0.3)])
    caller = [t for t in record.transcript if t["who"] == "caller"]
    assert caller == [{k: v for k, v in caller[0].items() if k != "nlu"}] and caller[0]["text"] == "****"


def test_the_parse_of_a_turn_is_its_own_even_when_a_later_turn_is_the_latest_message():
    from bot.processors.rasa_bridge import nlu_note, parse_data_of

    tracker = {"latest_message": {"text": "later", "intent": {"name": "greet", "confidence": 0.9}},
               "events": [{"event": "user", "text": "mine", "parse_data": SURE},
                          {"event": "user", "text": "later", "parse_data": {"intent": {"name": "greet"}}}]}
    assert parse_data_of(tracker, "mine") is SURE
    assert parse_data_of({"latest_message": {"text": "later"}}, "mine") is None  # not another turn's parse
    assert nlu_note({"intent": {"name": "x", "confidence": float("nan")}}) == \
        {"intent": "x", "confidence": None, "fallback": False}
    assert nlu_note({"intent": {}}) is None and nlu_note(None) is None
