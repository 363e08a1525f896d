"""Issue 10 §2 against the real stack: the satisfaction survey at the dialogue's goodbye, answered by keypad, reaches
the call record with the dialogue's other facts (completed tasks, elderly).

Each call is the real voice loop (keypad, no-input ladder, espeak TTS) on the shared `stack` fixture's Rasa and
action server (survey on, sample rate 1, the defaults); the caller's 「再见」 comes from a scripted recogniser fed real
speech, and everything after it is decided by the trained dialogue: the survey question, the elderly caller's one
retry after silence, the farewell and the hang-up. (A standard caller's silence, let go without a retry, is checked
against the real dialogue in tests/dialogue/test_survey_conversations.py and through the voice loop in
tests/bot/test_pipeline_survey.py: each call here costs real-time speech.)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from actions.bank.seed import CUSTOMERS
from actions.keypad import KEYPAD_MENU
from bot.call_records import CallRecordWriter
from tests.bot.test_pipeline_turns import caller_audio
from tests.bot.voice_doubles import CallHarness, ScriptedSTT

pytestmark = pytest.mark.integration

ELDERLY = next(c for c in CUSTOMERS if c.surname + c.given_name == "王建国").phone
STANDARD = next(c for c in CUSTOMERS if c.surname + c.given_name == "陈晓明").phone
RATES_KEY = next(key for key, (intent, _) in KEYPAD_MENU.items() if intent == "interest_rate")
SURVEY_QUESTION = "满意请按1"  # in the domain's utter_ask_survey_score and its retry
RETRY = "没有收到您的评价"


@pytest.fixture
def survey_call(stack, stack_voice_calls, tmp_path):
    def _make(caller: str) -> CallHarness:
        settings = dataclasses.replace(
            stack.settings,
            voice=dataclasses.replace(stack.settings.voice, no_input_s=1.0, no_input_elderly_s=1.5),
        )
        return stack_voice_calls(settings, f"survey-it-{caller}-{os.getpid()}", caller,
                                 stt_factory=lambda: ScriptedSTT(["再见"]),
                                 record_writer=CallRecordWriter(tmp_path / "calls"))

    return _make


async def say_goodbye(call: CallHarness, tmp_path: Path) -> None:
    """The caller says 「再见」 over the bot's prompt (a barge-in, so the test does not sit through it), and the survey
    question comes back."""
    await call.feed_realtime(caller_audio(tmp_path / "caller_audio", "再见"))
    await call.feed_silence(1.5)
    await call.wait_for(lambda: any(SURVEY_QUESTION in text for text in call.bot_texts()), timeout=30)


async def test_a_served_caller_rates_the_call_by_keypad(survey_call, tmp_path):
    call = survey_call(STANDARD)
    await call.call.start()
    await call.wait_for(lambda: call.bot_texts(), timeout=30)
    call.call.feed_dtmf(RATES_KEY)  # the keypad menu's rates: a task the bot completes without verification
    await call.wait_for(lambda: any("利率" in text for text in call.bot_texts()[1:]), timeout=30)
    await say_goodbye(call, tmp_path)
    call.call.feed_dtmf("2")  # 一般, keyed while the question plays

    record = await call.ended_record(tmp_path / "calls", timeout_s=60)
    assert record["survey_offered"] is True and record["survey_score"] == 2
    assert record["completed_tasks"] == ["interest_rate"] and record["elderly"] is False
    assert record["outcome"] == "served_by_bot" and not call.handoffs
    assert "感谢您的评价" in call.bot_texts()[-1]


async def test_an_elderly_caller_silent_at_the_question_is_asked_once_more_then_rates(survey_call, tmp_path):
    call = survey_call(ELDERLY)
    await call.call.start()
    await call.wait_for(lambda: call.bot_texts(), timeout=30)
    await say_goodbye(call, tmp_path)
    await call.wait_for(lambda: any(RETRY in text for text in call.bot_texts()), timeout=90)  # silence: the retry
    call.call.feed_dtmf("3")

    record = await call.ended_record(tmp_path / "calls", timeout_s=60)
    assert record["elderly"] is True and record["survey_offered"] is True and record["survey_score"] == 3
    assert record["outcome"] == "served_by_bot" and not call.handoffs
    survey_texts = call.bot_texts()[next(i for i, t in enumerate(call.bot_texts()) if SURVEY_QUESTION in t):]
    assert sum(RETRY in text for text in survey_texts) == 1
    assert not any("人工服务请按" in text or "转接" in text for text in survey_texts)  # no menu, no agent

