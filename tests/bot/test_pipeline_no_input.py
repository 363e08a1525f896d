"""No-input ladder, elderly timings, a slow or dead Rasa, and keypad-only calls, through the full pipeline."""

from __future__ import annotations

import time

import pytest

from bot.processors.rasa_bridge import APOLOGY_TEXT, DIRECT_HANDOFF_TEXT, NO_INPUT_GOODBYE_TEXT
from tests.bot.test_pipeline_turns import caller_audio
from tests.bot.voice_doubles import CallHarness, ScriptedRasa

GREETING = [{"text": "请讲。"}]
ELDERLY_GREETING = [{"text": "您好。"}, {"custom": {"event": "speech_rate", "rate": 0.8}}]
MENU = '/dtmf{"digits":"*"}'


@pytest.fixture
async def rasa():
    server = ScriptedRasa(replies={"/call_start": GREETING, MENU: [{"text": "请按键。"}]})
    await server.start()
    yield server
    await server.stop()


async def test_silence_ladder_reprompts_then_menu_then_handoff(rasa, make_call):
    call = make_call(rasa, script=[], no_input_s=0.4)
    await call.call.start()
    await call.wait_for(lambda: "/human_agent" in rasa.messages, timeout=20)

    # 1st silence: the last question again, without asking Rasa; 2nd: the keypad menu; 3rd: an agent.
    assert call.bot_texts()[:2] == ["请讲。", "请讲。"]
    assert rasa.messages == ["/call_start", MENU, "/human_agent"]
    assert call.call.record.no_inputs == 3  # for the dashboard's no-input rate


async def test_third_silence_can_hang_up_politely(rasa, make_call):
    call = make_call(rasa, script=[], no_input_s=0.3, third_silence_action="hangup")
    await call.call.start()
    await call.wait_for(lambda: call.hangups, timeout=15)
    assert call.bot_texts()[-1] == NO_INPUT_GOODBYE_TEXT
    assert "/human_agent" not in rasa.messages
    await call.wait_for(lambda: not call.call.running, timeout=3)
    assert call.call.record.outcome == "served_by_bot"
    assert call.call.record.to_json()["bot_hangup"] == "no_input"  # never counted as served (bot/kpis.py)


async def test_caller_activity_resets_the_ladder(rasa, make_call):
    call = make_call(rasa, script=[], no_input_s=0.8)
    await call.call.start()
    await call.wait_until_quiet(quiet_s=0.1)
    for _ in range(4):  # a key every 0.4 s keeps the 0.8 s timer from expiring
        call.call.feed_dtmf("#")
        await call.feed_silence(0.4)
    assert call.bot_texts() == ["请讲。"]
    await call.wait_for(lambda: len(call.bot_texts()) == 2, timeout=3)  # ...and silence after it still counts


async def test_elderly_mode_waits_longer_for_input(rasa, make_call):
    rasa.replies["/call_start"] = ELDERLY_GREETING
    call = make_call(rasa, script=[], no_input_s=0.3, no_input_elderly_s=1.5)
    await call.call.start()
    await call.wait_until_quiet()
    greeting_ended = call.audio_times[-1]
    await call.wait_for(lambda: len(call.bot_texts()) == 2, timeout=5)
    assert time.monotonic() - greeting_ended >= 1.4


async def test_elderly_mode_waits_longer_for_the_end_of_a_turn(rasa, make_call, tmp_path_factory):
    audio = caller_audio(tmp_path_factory.getbasetemp() / "caller_audio", "我要查余额")
    delays = {}
    for label, greeting in (("normal", GREETING), ("elderly", ELDERLY_GREETING)):
        rasa.replies["/call_start"] = greeting
        rasa.received.clear()
        rasa.received_at.clear()
        call = make_call(rasa, script=["我要查余额"], end_of_turn_s=0.2, end_of_turn_elderly_s=1.2)
        await call.call.start()
        await call.wait_until_quiet()
        await call.feed_realtime(audio)
        speech_ended = time.monotonic()
        await call.feed_silence(2.0)
        assert rasa.messages[-1] == "我要查余额"
        delays[label] = rasa.received_at[-1] - speech_ended
    assert delays["elderly"] - delays["normal"] >= 0.8


async def test_slow_rasa_becomes_a_spoken_apology_and_agent_offer(rasa, make_call):
    rasa.delay_s = 1.0
    call = make_call(rasa, script=[], rasa_timeout_s=0.3)
    started = time.monotonic()
    await call.call.start()
    await call.wait_for(lambda: call.audio_times, timeout=3)
    assert call.audio_times[0] - started < 1.0
    assert call.bot_texts() == [APOLOGY_TEXT]

    call.call.feed_dtmf("0")  # take the offer while Rasa is still too slow: transferred without it
    # after the apology and the handoff text are played out in real time (≈15 s on a busy machine): a bound only
    await call.wait_for(lambda: call.handoffs, timeout=30)
    assert call.handoffs[0]["queue"] == "general"
    assert call.handoffs[0]["reason"] == "dialogue_unavailable"
    assert call.bot_texts()[-1] == DIRECT_HANDOFF_TEXT


async def test_keypad_only_call_tells_rasa_there_is_no_asr(rasa, make_call):
    call = make_call(rasa, script=None)
    await call.call.start()
    await call.wait_for(lambda: rasa.received, timeout=2)
    assert rasa.received[0]["metadata"]["asr_available"] is False
    call.call.feed_audio(b"\x01\x02" * 4000)  # caller audio is simply not listened to
    call.call.feed_dtmf("1")
    await call.wait_for(lambda: len(rasa.messages) == 2, timeout=5)
    assert rasa.messages[1] == '/dtmf{"digits":"1"}'
