"""Keypad gathering and secure input through the full per-call pipeline (real TTS, scripted recognizer, fake Rasa)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from tests.bot.test_pipeline_turns import LONG_PROMPT, caller_audio
from tests.bot.voice_doubles import CallHarness, ScriptedRasa

GREETING = [{"text": "您好。"}]
ASK_CARD = [{"text": "请输入卡号后四位。"},
            {"custom": {"event": "expect", "input": "digits", "max_length": 4, "secure": False}}]
ASK_PIN = [{"text": "请输入密码。"},
           {"custom": {"event": "expect", "input": "digits", "max_length": 6, "secure": True}}]
PIN = "135790"
SPOKEN_PIN = "一 三 五 七 九 零"


@pytest.fixture
async def rasa():
    server = ScriptedRasa(replies={"/call_start": GREETING})
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def captured_logs(log_lines):
    return log_lines  # tests/bot/conftest.py: everything the gateway would log, pipecat's loguru lines included


def lines_with_keys(lines: list[str], *keyed: str) -> list[str]:
    """The lines that show one of the `keyed` strings as such: not inside a longer run of ASCII letters or digits
    (a call id made of a clock's digits, a memory address) nor after `#` (pipecat's object counters,
    PipelineWorker#135). A shuffled run once failed on `call=test-20395135059384` holding 135."""
    patterns = [re.compile(rf"(?<![#0-9A-Za-z]){re.escape(k)}(?![0-9A-Za-z])") for k in keyed]
    return [line for line in lines if any(p.search(line) for p in patterns)]


async def press(call: CallHarness, keys: str) -> None:
    for key in keys:
        call.call.feed_dtmf(key)


async def test_digits_end_on_pound(rasa, make_call):
    call = make_call(rasa, script=[], interdigit_timeout_s=5.0)
    await call.call.start()
    await call.wait_until_quiet()
    rasa.replies['/dtmf{"digits":"*"}'] = ASK_CARD
    call.call.feed_dtmf("*")  # no digits expected: the keypad menu at once
    await call.wait_for(lambda: len(rasa.messages) == 2, timeout=2)

    await press(call, "98#")
    await call.wait_for(lambda: len(rasa.messages) == 3, timeout=2)
    assert rasa.messages[1:] == ['/dtmf{"digits":"*"}', '/dtmf{"digits":"98"}']


async def test_digits_end_on_max_length_and_interdigit_timeout(rasa, make_call):
    rasa.replies["/call_start"] = GREETING + ASK_CARD[1:]
    rasa.replies['/dtmf{"digits":"1234"}'] = ASK_CARD
    call = make_call(rasa, script=[], interdigit_timeout_s=0.4)
    await call.call.start()
    await call.wait_until_quiet()

    await press(call, "1234")  # max_length 4: sent without '#'
    await call.wait_for(lambda: len(rasa.messages) == 2, timeout=1)
    await press(call, "56")  # then the inter-digit timeout ends it
    await call.wait_for(lambda: len(rasa.messages) == 3, timeout=2)
    assert rasa.messages[1:] == ['/dtmf{"digits":"1234"}', '/dtmf{"digits":"56"}']


async def test_human_key_asks_for_an_agent_and_handoff_follows_the_spoken_text(rasa, make_call):
    rasa.replies["/human_agent"] = [
        {"text": "正在为您转接人工。"},
        {"custom": {"event": "handoff", "queue": "general", "priority": 1, "reason": "human_agent",
                    "context": {"intent": "human_agent", "verified": False, "customer_ref": None,
                                "green_channel": False, "call_id": "x"}}},
    ]
    call = make_call(rasa, script=[])
    await call.call.start()
    await call.wait_until_quiet()
    call.call.feed_dtmf("0")
    await call.wait_for(lambda: call.handoffs, timeout=5)

    assert rasa.messages[-1] == "/human_agent"
    assert call.handoffs[0]["queue"] == "general"
    # The transfer only starts once the announcement has been played to its last 20 ms chunk.
    assert call.handoff_times[0] >= call.audio_times[-1] + 0.015
    assert call.call.record.outcome == "handoff"


async def test_a_key_pressed_as_the_reply_starts_stops_all_of_it(rasa, make_call):
    # The greeting and a long menu are queued; the caller keys 0 before the bot is known to be speaking.
    rasa.replies["/call_start"] = [{"text": "您好。"}, {"text": LONG_PROMPT}]
    rasa.replies["/human_agent"] = [
        {"text": "正在转接。"},
        {"custom": {"event": "handoff", "queue": "general", "priority": 1, "reason": "human_agent"}},
    ]
    call = make_call(rasa, script=[])
    await call.call.start()
    await call.wait_for(lambda: call.audio_times, timeout=3)
    call.call.feed_dtmf("0")

    await call.wait_for(lambda: call.handoffs, timeout=5)  # the long menu (≈8 s of audio) was never played
    assert call.clears
    assert call.audio_bytes < 8000 * 2 * 5


async def test_a_non_interruptible_prompt_plays_through_a_key_press(rasa, make_call):
    # The dialogue's flag is back to True by the end of the reply: what counts is the flag of the prompt playing.
    rasa.replies["/call_start"] = [
        {"custom": {"event": "interruptible", "value": False}},
        {"text": LONG_PROMPT},
        {"custom": {"event": "interruptible", "value": True}},
        {"text": "还有什么可以帮您？"},
    ]
    rasa.replies['/dtmf{"digits":"5"}'] = [{"text": "好的。"}]
    call = make_call(rasa, script=[])
    await call.call.start()
    await call.wait_for(lambda: call.audio_bytes > 8000 * 2, timeout=3)

    call.call.feed_dtmf("5")
    await call.wait_for(lambda: '/dtmf{"digits":"5"}' in rasa.messages, timeout=2)  # the key still counts
    await asyncio.sleep(0.5)
    assert call.clears == []
    assert call.bot_is_speaking(0.2)  # the long prompt is still playing
    assert call.call.record.barge_ins == 0


async def test_failed_transfer_goes_back_to_the_dialogue(rasa, make_call):
    rasa.replies["/human_agent"] = [{"custom": {"event": "handoff", "queue": "general", "reason": "human_agent"}}]
    rasa.replies["/transfer_failed"] = [{"text": "抱歉，坐席繁忙。"}]
    call = make_call(rasa, script=[])
    await call.call.start()
    await call.wait_until_quiet()
    call.call.feed_dtmf("0")
    await call.wait_for(lambda: call.handoffs, timeout=3)
    call.call.transfer_result(False, "486 Busy Here")
    await call.wait_for(lambda: "/transfer_failed" in rasa.messages, timeout=3)
    assert call.call.record.outcome is None  # not handed off after all


async def test_secure_keypad_input_reaches_rasa_only(rasa, make_call, captured_logs, tmp_path):
    rasa.replies["/call_start"] = ASK_PIN
    call = make_call(rasa, script=[])
    await call.call.start()
    await call.wait_until_quiet()
    await press(call, PIN)
    await call.wait_for(lambda: len(rasa.messages) == 2, timeout=2)
    await call.call.stop("remote_hangup")

    assert rasa.messages[1] == '/dtmf{"digits":"%s"}' % PIN
    record_text = next((tmp_path / "calls").glob("*.jsonl")).read_text()
    assert PIN not in record_text and "****" in record_text
    assert not lines_with_keys(captured_logs, PIN)
    assert not [e for e in call.events if PIN in json.dumps(e, ensure_ascii=False)]


async def test_secure_spoken_digits_are_masked(rasa, make_call, captured_logs, tmp_path, tmp_path_factory):
    rasa.replies["/call_start"] = ASK_PIN
    call = make_call(rasa, script=[SPOKEN_PIN], end_of_turn_s=0.3)
    await call.call.start()
    await call.wait_until_quiet()
    await call.feed_realtime(caller_audio(tmp_path_factory.getbasetemp() / "caller_audio", "一三五七九零"))
    await call.feed_silence(1.2)
    await call.wait_for(lambda: len(rasa.messages) == 2, timeout=3)
    await call.call.stop("remote_hangup")

    assert rasa.messages[1] == SPOKEN_PIN
    record_text = next((tmp_path / "calls").glob("*.jsonl")).read_text()
    assert SPOKEN_PIN not in record_text
    assert not lines_with_keys(captured_logs, SPOKEN_PIN)
    partials = [e["text"] for e in call.events if e["type"] in ("partial", "caller")]
    assert partials and all(text == "****" for text in partials)


# -- type-ahead: keys pressed before the next prompt arrives answer that prompt ---------------------------------

BALANCE = [{"text": "您的余额是一百元。"}]


async def test_card_and_pin_keyed_in_one_go_verify_without_leaking_the_pin(rasa, make_call, captured_logs,
                                                                          tmp_path):
    # Reproduction (issue 7): press 1 (balance), then 1234135790# in one go, before the card prompt arrives.
    rasa.delay_s = 0.2  # each reply takes a moment, as a real dialogue does
    rasa.replies['/dtmf{"digits":"1"}'] = ASK_CARD
    rasa.replies['/dtmf{"digits":"1234"}'] = ASK_PIN
    rasa.replies['/dtmf{"digits":"%s"}' % PIN] = BALANCE
    call = make_call(rasa, script=[], interdigit_timeout_s=5.0)
    await call.call.start()
    await call.wait_until_quiet()

    await press(call, "1" + "1234" + PIN + "#")
    await call.wait_for(lambda: len(rasa.messages) == 4, timeout=5)
    await asyncio.sleep(0.5)  # nothing else may follow: the `#` closes the PIN entry
    await call.call.stop("remote_hangup")

    assert rasa.messages[1:] == ['/dtmf{"digits":"1"}', '/dtmf{"digits":"1234"}', '/dtmf{"digits":"%s"}' % PIN]
    assert "/human_agent" not in rasa.messages  # the PIN's 0 is a digit, not the agent key
    record_text = next((tmp_path / "calls").glob("*.jsonl")).read_text()
    assert PIN not in record_text and '"1"' not in record_text.replace('"digits":"1"', "")
    assert not lines_with_keys(captured_logs, PIN, "135790")
    assert not [e for e in call.events if PIN in json.dumps(e, ensure_ascii=False)]


async def test_keys_held_after_an_entry_are_dropped_when_the_reply_expects_no_digits(rasa, make_call,
                                                                                     captured_logs):
    # The card is refused without a new digit prompt: the keys after it may be a PIN, never menu keys.
    rasa.delay_s = 0.2
    rasa.replies["/call_start"] = GREETING + ASK_CARD[1:]
    rasa.replies['/dtmf{"digits":"1234"}'] = [{"text": "这张卡暂时不能办理。"}]
    call = make_call(rasa, script=[], interdigit_timeout_s=5.0)
    await call.call.start()
    await call.wait_until_quiet()

    await press(call, "1234" + PIN)
    await call.wait_for(lambda: len(rasa.messages) == 2, timeout=3)
    await asyncio.sleep(1.0)

    assert rasa.messages[1:] == ['/dtmf{"digits":"1234"}']
    assert not lines_with_keys(captured_logs, PIN)


async def test_a_key_typed_during_the_greeting_request_answers_the_greeting(rasa, make_call):
    rasa.delay_s = 0.5
    call = make_call(rasa, script=[])
    await call.call.start()
    call.call.feed_dtmf("*")  # before the greeting has arrived: held, then a menu request

    await call.wait_for(lambda: len(rasa.messages) == 2, timeout=5)
    assert rasa.messages == ["/call_start", '/dtmf{"digits":"*"}']


HANDOFF = [{"text": "好的，正在为您转接人工客服，请稍候。"},
           {"custom": {"event": "handoff", "queue": "general", "priority": 1, "reason": "human_agent", "context": {}}}]


@pytest.mark.parametrize("words", ["人工", "绿色 通道"])
async def test_a_service_word_at_the_pin_prompt_reaches_the_dialogue_and_hands_off(
    rasa, make_call, tmp_path_factory, words
):
    """Issue 8: at a digit prompt the recogniser's grammar holds the service words too; what is said reaches Rasa
    as the caller's words (not forced onto digits), and the handoff follows in the same turn."""
    from bot.services.vosk.stt import MANDARIN_DIGIT_WORDS

    assert set(words.split()) <= {w for phrase in MANDARIN_DIGIT_WORDS for w in phrase.split()}
    rasa.replies["/call_start"] = ASK_PIN
    rasa.replies[words] = HANDOFF
    call = make_call(rasa, script=[words], end_of_turn_s=0.3)
    await call.call.start()
    await call.wait_until_quiet()
    await call.feed_realtime(caller_audio(tmp_path_factory.getbasetemp() / "caller_audio", "人工"))
    await call.feed_silence(1.2)
    # The handoff follows the spoken reply, played out in real time (≈6 s of espeak-ng): a bound, not a target.
    await call.wait_for(lambda: call.handoffs, timeout=30)
    await call.call.stop("remote_hangup")
    assert rasa.messages[1] == words


async def test_star_inside_an_entry_cancels_it_and_asks_for_the_menu(rasa, make_call, captured_logs):
    """Issue 8: `*` at a card or PIN prompt drops the digits keyed so far (never sent: they may be half a PIN) and
    sends the menu key, which the dialogue answers by leaving the task and reading the menu."""
    rasa.replies["/call_start"] = ASK_PIN
    rasa.replies['/dtmf{"digits":"*"}'] = [{"text": "好的，已取消。查询余额请按1。"}]
    call = make_call(rasa, script=[], interdigit_timeout_s=5.0)
    await call.call.start()
    await call.wait_until_quiet()
    await press(call, "135*")
    await call.wait_for(lambda: len(rasa.messages) == 2, timeout=5)
    await call.wait_until_quiet()
    await press(call, "1")  # after the cancel, a single key is a menu choice again
    await call.wait_for(lambda: len(rasa.messages) == 3, timeout=5)
    await call.call.stop("remote_hangup")

    assert rasa.messages[1:] == ['/dtmf{"digits":"*"}', '/dtmf{"digits":"1"}']
    assert not lines_with_keys(captured_logs, "135")
