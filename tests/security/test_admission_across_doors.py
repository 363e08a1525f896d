"""One admission limit across every door (issue 7 §6): a flood at one door cannot take the cores the admitted calls
need, and a caller beyond the limit is told so, cleanly, at whatever door they came in by.

Before: each door admitted without limit (SIP only by its own SIP_MAX_CALLS of 300, the voice page by 8 sockets of
its own), so a 16th caller on a 2-core box slowed every admitted caller's recognition to seconds.

The gateway here is the real one (create_app with the telephony doors) around the real voice loop (keypad-only,
espeak-ng, a scripted Rasa), with an admission limit of one call.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY

import settings as settings_module
from bot.admission import Admission
from bot.call import VoiceRuntime
from bot.rasa_client import RasaClient
from bot.services.espeak.tts import EspeakTTSService
from bot.web.app import create_app
from bot.web.voice_loop import VOICE_LOOP_KEY
from telephony.sip.message import parse_message
from telephony.sip_calls import add_sip_service
from telephony.websocket.audiosocket import KIND_AUDIO, KIND_HANGUP, KIND_UUID, Message, read_message
from telephony.websocket.routes import AUDIOSOCKET_KEY, add_media_service
from tests.bot.voice_doubles import ScriptedRasa
from tests.rasa_servers import free_port
from tests.telephony.sip.sip_test_support import Uac

pytestmark = pytest.mark.integration

TOKEN = "admission-test-media-token"
BUSY_PCM = b"\x10\x00" * 1600  # 0.2 s at 8 kHz: the test's busy prompt (the real one is synthesised: BUSY_TEXT)


async def until(condition, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def refused(door: str) -> float:
    return REGISTRY.get_sample_value("ivr_admission_refused_total", {"door": door}) or 0.0


@pytest.fixture
async def rasa():
    server = ScriptedRasa(replies={"/call_start": [{"text": "您好，欢迎致电。"}]})
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def gateway(rasa, tmp_path):
    """The gateway with all its doors and a voice loop that takes one call at a time."""
    settings = settings_module.Settings.from_env({
        "MEDIA_WS_TOKEN": TOKEN, "AUDIOSOCKET_PORT": "0", "SIP_PORT": str(free_port()), "RASA_URL": rasa.url,
        "CALL_RECORDS_DIR": str(tmp_path), "SIP_RETRY_AFTER_S": "7"})

    async def busy_audio(sample_rate: int) -> bytes:
        return BUSY_PCM if sample_rate == 8000 else BUSY_PCM * 2

    runtime = VoiceRuntime(settings=settings, rasa=RasaClient(rasa.url, "t", timeout_s=2.0),
                           tts_factory=lambda rate: EspeakTTSService(sample_rate=rate),
                           busy_audio=busy_audio, admission=Admission(1))
    app = create_app(settings, voice_runtime=runtime, extra_setup=[add_sip_service, add_media_service])
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    yield server, settings, app
    await server.close()


async def open_voice_socket(http: aiohttp.ClientSession,
                            server: TestServer) -> tuple[aiohttp.ClientWebSocketResponse, dict]:
    """A /voice/ws call and its first JSON event (ready, busy or error)."""
    ws = await http.ws_connect(str(server.make_url("/voice/ws")) + "?caller=13800000009")
    while True:
        message = await asyncio.wait_for(ws.receive(), 10)
        if message.type == aiohttp.WSMsgType.TEXT:
            return ws, json.loads(message.data)


async def media_stream_refusal(http: aiohttp.ClientSession, server: TestServer) -> tuple[int, int | None]:
    """Bytes of bot audio a /media caller hears, and the close code, when the loop is full."""
    ws = await http.ws_connect(str(server.make_url("/media")) + f"?token={TOKEN}")
    await ws.send_str(json.dumps({"event": "start", "streamSid": "MZ9", "start": {"streamSid": "MZ9",
                                                                                 "callSid": "CA9"}}))
    heard = 0
    while True:
        message = await asyncio.wait_for(ws.receive(), 10)
        if message.type != aiohttp.WSMsgType.TEXT:
            return heard, ws.close_code
        event = json.loads(message.data)
        if event["event"] == "media":
            heard += len(event["media"]["payload"])


async def audiosocket_refusal(port: int) -> tuple[int, int]:
    """Bytes of bot audio an AudioSocket caller hears before our hangup message, and that message's kind."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(Message(KIND_UUID, uuid.uuid4().bytes).serialise())
    heard = 0
    try:
        while True:
            message = await read_message(reader, 10)
            assert message is not None, "closed without a hangup message"
            if message.kind != KIND_AUDIO:
                return heard, message.kind
            heard += len(message.payload)
    finally:
        writer.close()


def sip_invite_status(port: int) -> tuple[int, str | None]:
    """The final response to one INVITE sent over UDP, and its Retry-After."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        sock.sendto(Uac(sock.getsockname()).invite(), ("127.0.0.1", port))
        while True:
            response = parse_message(sock.recv(65535))
            if response.status >= 200:
                return response.status, response.get("retry-after")


async def test_beyond_the_limit_every_door_refuses_cleanly_and_the_admitted_call_goes_on(gateway):
    server, settings, app = gateway
    before = {door: refused(door) for door in ("web", "media_stream", "audiosocket", "sip")}
    async with aiohttp.ClientSession() as http:
        admitted, ready = await open_voice_socket(http, server)
        assert ready["type"] == "ready"

        second, busy = await open_voice_socket(http, server)
        assert busy == {"type": "busy"}  # the limit itself is not told: it would say how many calls lock everyone out
        await second.close()

        heard, close_code = await media_stream_refusal(http, server)
        assert heard > 0 and close_code == aiohttp.WSCloseCode.TRY_AGAIN_LATER

        heard, last_kind = await audiosocket_refusal(app[AUDIOSOCKET_KEY].port)
        assert heard >= len(BUSY_PCM) and last_kind == KIND_HANGUP

        status, retry_after = await asyncio.to_thread(sip_invite_status, settings.sip.port)
        assert (status, retry_after) == (503, "7")

        for door in before:
            assert refused(door) == before[door] + 1, door
        await admitted.send_str(json.dumps({"type": "dtmf", "key": "5"}))  # the admitted call is still served
        await admitted.close()
        await until(lambda: app[VOICE_LOOP_KEY].admission.in_use == 0)

        again, ready = await open_voice_socket(http, server)  # its slot is free again
        assert ready["type"] == "ready"
        await again.close()


async def test_refused_calls_leave_a_cdr_line_and_hold_no_slot(gateway, tmp_path):
    server, _, app = gateway
    async with aiohttp.ClientSession() as http:
        admitted, _ = await open_voice_socket(http, server)
        await media_stream_refusal(http, server)
        await admitted.close()
    await until(lambda: app[VOICE_LOOP_KEY].admission.in_use == 0)
    cdrs = [json.loads(line) for path in tmp_path.glob("cdr-*.jsonl") for line in path.read_text().splitlines()]
    busy = [cdr for cdr in cdrs if cdr["door"] == "media_stream"]
    assert [(cdr["cause"], cdr["outcome"]) for cdr in busy] == [("busy", "rejected")]


async def test_shutdown_ends_open_calls_before_the_voice_loop_goes(rasa, tmp_path):
    """Sockets close in on_shutdown, before the cleanup contexts stop the voice loop: every call still ends in a
    CDR line and frees its slot."""
    settings = settings_module.Settings.from_env({"MEDIA_WS_TOKEN": TOKEN, "AUDIOSOCKET_PORT": "0",
                                                  "SIP_PORT": str(free_port()), "CALL_RECORDS_DIR": str(tmp_path)})
    runtime = VoiceRuntime(settings=settings, rasa=RasaClient(rasa.url, "t", timeout_s=2.0),
                           tts_factory=lambda rate: EspeakTTSService(sample_rate=rate), admission=Admission(4))
    app = create_app(settings, voice_runtime=runtime, extra_setup=[add_sip_service, add_media_service])
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        _, ready = await open_voice_socket(http, server)
        media = await http.ws_connect(str(server.make_url("/media")) + f"?token={TOKEN}")
        await media.send_str(json.dumps({"event": "start", "start": {"streamSid": "MZ1", "callSid": "CA1"}}))
        await until(lambda: runtime.admission.in_use == 2)
        await server.close()
    assert ready["type"] == "ready" and runtime.admission.in_use == 0
    cdrs = [json.loads(line) for path in tmp_path.glob("cdr-*.jsonl") for line in path.read_text().splitlines()]
    assert sorted(cdr["door"] for cdr in cdrs) == ["media_stream", "web"]
