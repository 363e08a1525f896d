"""Both media doors against the real voice loop (bot/call.py: pipecat pipeline, espeak-ng TTS), with a
scripted Rasa standing in for the dialogue server: greeting audio comes back, key 0 asks for an agent,
the door declines the transfer and the bot tells Rasa `/transfer_failed`."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import uuid

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import settings as settings_module
from bot.call import VoiceRuntime
from bot.call_records import CallRecordWriter
from bot.rasa_client import RasaClient
from bot.services.espeak.tts import EspeakTTSService
from telephony.rtp import g711
from telephony.websocket.audiosocket import KIND_AUDIO, KIND_DTMF, KIND_UUID, Message
from telephony.websocket.routes import AUDIOSOCKET_KEY, add_media_routes
from tests.bot.voice_doubles import ScriptedRasa

pytestmark = pytest.mark.integration

TOKEN = "voice-loop-media-token"
HANDOFF = {"event": "handoff", "queue": "general", "priority": 1, "reason": "human_agent",
           "context": {"intent": "human_agent", "verified": False, "customer_ref": None, "green_channel": False,
                       "call_id": "x"}}


@pytest.fixture
async def rasa():
    server = ScriptedRasa(replies={"/call_start": [{"text": "您好，欢迎致电。"}],
                                   "/human_agent": [{"text": "正在为您转接。"}, {"custom": HANDOFF}],
                                   "/transfer_failed": [{"text": "抱歉，暂时无法转接。"}]})
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def gateway(rasa, tmp_path):
    base = settings_module.Settings.from_env({"MEDIA_WS_TOKEN": TOKEN, "AUDIOSOCKET_PORT": "0",
                                              "RASA_URL": rasa.url, "CALL_RECORDS_DIR": str(tmp_path)})
    runtime = VoiceRuntime(settings=base, rasa=RasaClient(rasa.url, "t", timeout_s=2.0),
                           tts_factory=lambda rate: EspeakTTSService(sample_rate=rate),
                           record_writer=CallRecordWriter(tmp_path))
    app = web.Application()
    add_media_routes(app, runtime.create_call, base)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield server
    await server.close()
    await runtime.close()
    assert runtime.calls == {} or all(not call.running for call in runtime.calls.values())


async def until(condition, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_media_stream_call_hears_the_greeting_and_a_transfer_is_declined(gateway, rasa):
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(str(gateway.make_url("/media")) + f"?token={TOKEN}")
        await ws.send_str(json.dumps({"event": "start", "streamSid": "MZ1",
                                      "start": {"streamSid": "MZ1", "callSid": "CA-voice-loop",
                                                "customParameters": {"caller_number": "13800000001"}}}))
        greeting = bytearray()
        while len(greeting) < 8000:  # half a second of bot speech
            message = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
            if message["event"] == "media":
                greeting += g711.ulaw_to_pcm16(base64.b64decode(message["media"]["payload"]))
        assert np.abs(np.frombuffer(bytes(greeting), "<i2")).max() > 1000  # speech, not silence
        assert rasa.received[0]["metadata"]["caller_number"] == "13800000001"

        await ws.send_str(json.dumps({"event": "dtmf", "streamSid": "MZ1", "dtmf": {"digit": "0"}}))
        await until(lambda: "/transfer_failed" in rasa.messages, timeout=15)
        await ws.send_str(json.dumps({"event": "stop", "streamSid": "MZ1"}))
        await ws.close()


async def test_audiosocket_call_hears_the_greeting(gateway, rasa):
    server = gateway.app[AUDIOSOCKET_KEY]
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(Message(KIND_UUID, uuid.uuid4().bytes).serialise())
        writer.write(Message(KIND_AUDIO, bytes(320)).serialise())
        greeting = bytearray()
        while len(greeting) < 8000:
            kind, length = struct.unpack("!BH", await asyncio.wait_for(reader.readexactly(3), 10))
            payload = await reader.readexactly(length)
            if kind == KIND_AUDIO:
                greeting += payload
        assert np.abs(np.frombuffer(bytes(greeting), "<i2")).max() > 1000
        writer.write(Message(KIND_DTMF, b"0").serialise())
        await until(lambda: "/transfer_failed" in rasa.messages, timeout=15)
    finally:
        writer.write(Message(0x00).serialise())
        writer.close()
        await writer.wait_closed()
