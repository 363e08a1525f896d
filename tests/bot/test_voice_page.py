"""The voice page's WebSocket and the `make call` CLI, end to end through the real voice loop
(Silero VAD, espeak-ng TTS), with a scripted recognizer and a fake Rasa."""

from __future__ import annotations

import dataclasses
import json
import re
import wave
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import settings as settings_module
from bot import call_cli
from bot.call import VoiceRuntime
from bot.rasa_client import RasaClient
from bot.services.espeak.tts import EspeakTTSService
from bot.web.voice import add_voice_routes
from bot.web.voice_loop import VoiceLoop
from tests.bot.voice_doubles import ScriptedRasa, ScriptedSTT, espeak_pcm


@pytest.fixture
async def rasa():
    server = ScriptedRasa(replies={"/call_start": [{"text": "您好，请讲。"}],
                                   "我要查余额": [{"text": "您的余额是一百元。"}],
                                   "/human_agent": [{"text": "正在转接。"},
                                                    {"custom": {"event": "handoff", "queue": "general",
                                                                "reason": "human_agent"}}]})
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def gateway(rasa, tmp_path):
    base = settings_module.Settings()
    settings = dataclasses.replace(base, voice=dataclasses.replace(base.voice, end_of_turn_s=0.3))
    runtime = VoiceRuntime(settings=settings, rasa=RasaClient(rasa.url, "t", timeout_s=2.0),
                           tts_factory=lambda rate: EspeakTTSService(sample_rate=rate),
                           stt_factory=lambda: ScriptedSTT(["我要查余额"]))
    app = web.Application()
    voice = VoiceLoop(settings, runtime)
    app.cleanup_ctx.append(voice.serve)
    add_voice_routes(app, settings, voice)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


def write_wav(path: Path, pcm: bytes, rate: int) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    return path


async def test_cli_call_completes_and_prints_the_conversation(gateway, rasa, tmp_path, capsys):
    wav = write_wav(tmp_path / "caller.wav", espeak_pcm("我要查余额", tmp_path / "q.raw", rate=8000), 8000)
    pcm = call_cli.read_wav_16k_mono(wav)
    report = await call_cli.run_call(gateway, pcm, caller="13800000001", keys="", timeout_s=15)

    out = capsys.readouterr().out
    assert report.completed
    assert "caller: 我要查余额" in out and "bot:    您的余额是一百元。" in out
    assert "voice_to_voice=" in out and "call ended" in out
    assert rasa.messages[:2] == ["/call_start", "我要查余额"]


async def test_page_and_socket_keys_and_handoff(gateway, rasa):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway}/voice") as page:
            assert page.status == 200 and "/voice/static/voice.js" in await page.text()
        async with session.get(f"{gateway}/voice/static/voice.js") as script:
            assert script.status == 200 and "getUserMedia" in await script.text()
        async with session.ws_connect(f"{gateway}/voice/ws?caller=13900000002") as ws:
            events, audio_bytes = [], 0
            await ws.send_str("not json")
            await ws.send_bytes(b"\x01")  # half a sample: ignored, not a crash
            await ws.send_str(json.dumps({"type": "dtmf", "key": "0"}))
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    audio_bytes += len(msg.data)
                else:
                    events.append(json.loads(msg.data))
                    if events[-1]["type"] == "ended":
                        break
    kinds = [e["type"] for e in events]
    assert "error" in kinds and "handoff" in kinds and kinds[-1] == "ended"
    ready = next(e for e in events if e["type"] == "ready")
    assert re.fullmatch(r"web-[0-9a-f]{32}", ready["call_id"])  # uuid4: unique and unguessable
    assert events[-1]["outcome"] == "handoff"
    assert audio_bytes > 16000  # greeting and announcement audio came back at 16 kHz
    assert rasa.received[0]["metadata"]["caller_number"] == "13900000002"


async def test_socket_rejects_a_bad_caller_number(gateway):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway}/voice/ws?caller=DROP%20TABLE") as resp:
            assert resp.status == 400


def test_cli_refuses_unreadable_wav(tmp_path, capsys):
    bogus = tmp_path / "bogus.wav"
    bogus.write_bytes(b"RIFF....not a wav")
    assert call_cli.main([str(bogus)]) == 2
    assert "not a PCM WAV" in capsys.readouterr().err
    assert call_cli.main([str(tmp_path / "missing.wav")]) == 2


def test_cli_reports_an_unreachable_gateway(tmp_path, capsys):
    wav = write_wav(tmp_path / "s.wav", b"\x00\x00" * 1600, 16000)
    assert call_cli.main([str(wav), "--url", "http://127.0.0.1:9"]) == 3
    assert "cannot reach the gateway" in capsys.readouterr().err


async def test_socket_says_why_when_the_voice_loop_could_not_load(monkeypatch):
    def broken_load(settings, **kwargs):
        raise RuntimeError("no TTS: espeak-ng not installed")

    monkeypatch.setattr(VoiceRuntime, "load", staticmethod(broken_load))
    app = web.Application()
    settings = settings_module.Settings()
    voice = VoiceLoop(settings)
    app.cleanup_ctx.append(voice.serve)
    add_voice_routes(app, settings, voice)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{server.port}/voice/ws") as resp:
                assert resp.status == 503
                assert "espeak-ng not installed" in (await resp.json())["error"]
    finally:
        await server.close()
