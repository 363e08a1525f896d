"""The full per-call pipeline with real Silero VAD and real espeak-ng TTS, a scripted recognizer and a fake Rasa:
greeting, a spoken turn, barge-in, backchannels that do not interrupt, non-interruptible prompts, the record."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.bot.voice_doubles import CALLER, CallHarness, ScriptedRasa, espeak_pcm

LONG_PROMPT = "您好，欢迎致电银行电话服务。查询余额、转账汇款、信用卡服务、挂失补卡、理财产品，您都可以直接告诉我。"
SHORT_GREETING = [{"text": "您好。"}]


@pytest.fixture
def audio_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "caller_audio"


def caller_audio(audio_dir: Path, text: str) -> bytes:
    audio_dir.mkdir(exist_ok=True)
    return espeak_pcm(text, audio_dir / f"{abs(hash(text))}.raw")


@pytest.fixture
async def rasa():
    server = ScriptedRasa(replies={})
    await server.start()
    yield server
    await server.stop()


async def test_greeting_then_spoken_turn_reaches_rasa_with_metadata(rasa, make_call, audio_dir, tmp_path):
    rasa.replies["/call_start"] = SHORT_GREETING
    rasa.replies["我要查余额"] = [{"text": "好的。"}]
    call = make_call(rasa, script=["我要查余额"], end_of_turn_s=0.3)
    started = time.monotonic()
    await call.call.start()
    await call.wait_for(lambda: call.audio_times, timeout=1.0)
    assert call.audio_times[0] - started < 1.0  # greeting audio within 1 s of the call starting
    await call.wait_until_quiet()

    await call.feed_realtime(caller_audio(audio_dir, "我要查余额"))
    await call.feed_silence(1.5)
    await call.wait_for(lambda: len(rasa.received) == 2, timeout=3)

    assert rasa.received[0] == {"sender": call.call.info.call_id, "message": "/call_start",
                                "metadata": {"caller_number": CALLER, "channel": "voice", "asr_available": True},
                                "message_id": rasa.received[0]["message_id"]}
    assert rasa.received[1]["message"] == "我要查余额"
    assert rasa.received[1]["metadata"]["asr_available"] is True
    await call.wait_for(lambda: any(e["type"] == "metrics" and e.get("voice_to_voice_ms") for e in call.events), 3)

    await call.call.stop("remote_hangup")
    record = json.loads(next((tmp_path / "calls").glob("*.jsonl")).read_text().splitlines()[-1])
    assert record["caller_number"] == "138****0001"
    assert [t["who"] for t in record["transcript"]] == ["bot", "caller", "bot"]
    assert record["outcome"] == "served_by_bot"
    assert record["turn_metrics"][0]["voice_to_voice_ms"] > 0
    # the KPIs' fields: the door (a test's call id names none), the caller's keyed hash, no barge-in or silence
    assert record["channel"] == "unknown" and (record["barge_ins"], record["no_inputs"]) == (0, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", record["caller_key"]) and CALLER not in json.dumps(record)


async def test_caller_speech_during_prompt_barges_in_and_flushes_audio(rasa, make_call, audio_dir):
    rasa.replies["/call_start"] = [{"text": LONG_PROMPT}]
    rasa.replies["转人工"] = [{"text": "好的。"}]
    call = make_call(rasa, script=["转人工"], end_of_turn_s=0.3)
    await call.call.start()
    await call.wait_for(lambda: call.audio_bytes > 8000 * 2, timeout=3)  # a second of the prompt has played

    await call.feed_realtime(caller_audio(audio_dir, "转人工"))
    await call.wait_for(lambda: call.clears, timeout=3)
    cleared_at = call.clears[0]
    await call.feed_silence(1.0)

    # The prompt stopped at once: no prompt audio after the clear until the reply to the caller starts.
    after_clear = [t for t in call.audio_times if t > cleared_at + 0.1]
    reply_started = after_clear[0] if after_clear else None
    assert reply_started is None or reply_started - cleared_at > 0.3
    await call.wait_for(lambda: "转人工" in rasa.messages, timeout=3)
    assert any(e["type"] == "barge_in" for e in call.events)
    assert call.call.record.barge_ins == 1  # one prompt cut short, however many interruption frames it took


async def test_backchannel_while_bot_speaks_does_not_interrupt(rasa, make_call, audio_dir):
    rasa.replies["/call_start"] = [{"text": LONG_PROMPT}]
    call = make_call(rasa, script=["嗯 好 的"], end_of_turn_s=0.3)
    await call.call.start()
    await call.wait_for(lambda: call.audio_bytes > 8000 * 2, timeout=3)

    await call.feed_realtime(caller_audio(audio_dir, "嗯嗯，好的"))
    await call.feed_silence(1.0)

    assert call.clears == []
    assert rasa.messages == ["/call_start"]
    assert call.bot_is_speaking(0.2)  # the prompt is still playing


async def test_non_interruptible_prompt_plays_to_the_end(rasa, make_call, audio_dir):
    rasa.replies["/call_start"] = [{"custom": {"event": "interruptible", "value": False}}, {"text": LONG_PROMPT}]
    call = make_call(rasa, script=["我要挂失"], end_of_turn_s=0.3)
    await call.call.start()
    await call.wait_for(lambda: call.audio_bytes > 8000 * 2, timeout=3)

    await call.feed_realtime(caller_audio(audio_dir, "我要挂失"))
    await call.feed_silence(0.8)

    assert call.clears == []
    assert "我要挂失" not in rasa.messages
    assert call.bot_is_speaking(0.2)
