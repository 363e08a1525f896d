"""The voice loop's Rasa bridge against the REAL Rasa server and action server (the shared `stack` fixture):
the greeting is spoken, the dialogue's custom events become frames (a handoff reaches telephony's `on_handoff`
after its announcement), and a Rasa that stops answering (SIGSTOP) becomes a spoken apology."""

from __future__ import annotations

import dataclasses
import os
import signal

import pytest

from bot.processors.rasa_bridge import APOLOGY_TEXT
from tests.bot.voice_doubles import CallHarness

pytestmark = pytest.mark.integration


@pytest.fixture
def voice_call(stack, stack_voice_calls):
    calls = 0

    def _make(*, rasa_timeout_s: float = 15.0, caller: str = "13800000001") -> CallHarness:
        nonlocal calls
        calls += 1
        settings = dataclasses.replace(
            stack.settings,
            rasa=dataclasses.replace(stack.settings.rasa, timeout_s=rasa_timeout_s),
            voice=dataclasses.replace(stack.settings.voice, no_input_s=60.0, no_input_elderly_s=60.0),
        )
        # keypad-only (no recogniser): the dialogue's answers do not depend on recognition here
        return stack_voice_calls(settings, f"voice-it-{calls}-{os.getpid()}", caller, rasa_timeout_s=rasa_timeout_s)

    return _make


async def test_greeting_and_handoff_event_from_the_real_dialogue(voice_call, stack):
    call = voice_call()
    await call.call.start()
    await call.wait_for(lambda: call.bot_texts(), timeout=20)
    await call.wait_for(lambda: call.audio_times, timeout=5)  # the greeting is spoken
    tracker = stack.tracker(call.call.info.call_id)
    assert tracker["latest_message"]["intent"]["name"] == "call_start"

    call.call.feed_dtmf("0")  # key 0, no digits expected → /human_agent → the dialogue's handoff event
    # The key stops the slowed elderly greeting and the keypad menu queued behind it (≈60 s of audio); the handoff
    # follows the announcement alone (≈5 s at the elderly rate). The bound leaves room for a loaded CI box.
    await call.wait_for(lambda: call.handoffs, timeout=25)
    event = call.handoffs[0]
    assert event["event"] == "handoff"
    assert event["queue"] in {"general", "elderly_priority", "complaint", "card_services"}
    assert event["context"]["call_id"] == call.call.info.call_id
    assert call.handoff_times[0] >= call.audio_times[-1]  # after the announcement was played
    assert call.call.record.outcome == "handoff"


async def test_rasa_that_stops_answering_becomes_an_apology(voice_call, stack):
    call = voice_call(rasa_timeout_s=1.0, caller="13900009999")
    await call.call.start()
    await call.wait_for(lambda: call.bot_texts(), timeout=20)
    rasa = stack.procs["rasa"]
    os.killpg(rasa.pid, signal.SIGSTOP)
    try:
        call.call.feed_dtmf("*")  # interrupts the greeting and asks the (now frozen) dialogue for the menu
        await call.wait_for(lambda: APOLOGY_TEXT in call.bot_texts(), timeout=5)
    finally:
        os.killpg(rasa.pid, signal.SIGCONT)
