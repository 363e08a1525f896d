"""The gateway entry point: telephony setups plug into the app, the media doors serve calls with the gateway's
voice runtime, and the access log never shows query strings."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from settings import Settings
from telephony import gateway
from telephony.sip_calls import add_sip_service
from telephony.websocket.audiosocket import KIND_AUDIO, KIND_HANGUP, KIND_UUID, Message
from telephony.websocket.routes import AUDIOSOCKET_KEY, add_media_service
from tests.bot.voice_doubles import QuietCall


async def test_telephony_setups_start_and_stop_with_the_app(monkeypatch):
    lifecycle: list[str] = []

    async def door(app: web.Application):
        lifecycle.append("started")
        yield
        lifecycle.append("stopped")

    def add_door(app: web.Application, voice) -> None:
        app.cleanup_ctx.append(door)

    monkeypatch.setattr(gateway, "TELEPHONY_SETUPS", [add_door])
    async with TestClient(TestServer(gateway.build_app(Settings()))) as client:
        assert lifecycle == ["started"]
        assert (await client.get("/console")).status == 200
    assert lifecycle == ["started", "stopped"]


def test_access_log_has_no_query_string(caplog):
    logger = logging.getLogger("test.access")
    request = make_mocked_request("GET", "/media?token=s3cret-media-token")
    with caplog.at_level(logging.INFO, logger="test.access"):
        gateway.PathOnlyAccessLogger(logger, "").log(request, web.Response(status=101), 0.0123)
    line = caplog.records[-1].getMessage()
    assert "GET /media 101 12.3ms" in line
    assert "s3cret" not in line


class GreetingCall(QuietCall):
    """The voice loop's CallHandle reduced to a greeting chunk and a record of how it ended (tests only)."""

    def __init__(self, info) -> None:
        super().__init__(info)
        self.on_audio = lambda pcm16: None
        self.on_clear = lambda: None

    async def start(self) -> None:
        self.on_audio(bytes(320))


class GreetingRuntime:
    """The gateway's VoiceRuntime, reduced to what the doors use."""

    def __init__(self) -> None:
        self.created: list[GreetingCall] = []

    def create_call(self, info) -> GreetingCall:
        self.created.append(GreetingCall(info))
        return self.created[-1]


def media_app(tmp_path, runtime: GreetingRuntime | None) -> web.Application:
    """An app shaped like the gateway's: settings under SETTINGS_KEY, the voice loop handed to the doors (without a
    runtime: one whose engines never loaded)."""
    from bot.web.app import SETTINGS_KEY
    from bot.web.voice_loop import VoiceLoop

    app = web.Application()
    settings = Settings.from_env({"MEDIA_WS_TOKEN": "gw-token", "AUDIOSOCKET_PORT": "0",
                                  "CALL_RECORDS_DIR": str(tmp_path)})
    app[SETTINGS_KEY] = settings
    add_media_service(app, VoiceLoop(settings, runtime))
    return app


START = json.dumps({"event": "start", "streamSid": "MZ1", "start": {"streamSid": "MZ1", "callSid": "CA1"}})


def test_the_gateway_opens_every_telephony_door():
    assert gateway.TELEPHONY_SETUPS == [add_sip_service, add_media_service]


async def test_media_doors_hand_their_calls_to_the_gateways_voice_runtime(tmp_path):
    runtime = GreetingRuntime()
    app = media_app(tmp_path, runtime)
    async with TestClient(TestServer(app)) as client:
        ws = await client.ws_connect("/media?token=gw-token")
        await ws.send_str(START)
        assert json.loads((await ws.receive(timeout=2)).data)["event"] == "media"  # the greeting
        await ws.send_str(json.dumps({"event": "stop", "streamSid": "MZ1"}))
        assert (await ws.receive(timeout=2)).type == WSMsgType.CLOSE

        reader, writer = await asyncio.open_connection("127.0.0.1", app[AUDIOSOCKET_KEY].port)
        writer.write(Message(KIND_UUID, uuid.uuid4().bytes).serialise())
        assert (await asyncio.wait_for(reader.readexactly(3), 2))[0] == KIND_AUDIO  # the greeting
        writer.write(Message(KIND_HANGUP).serialise())
        await asyncio.wait_for(reader.read(), 2)
        writer.close()
    assert [(call.info.call_id.split("-")[0], call.stop_cause) for call in runtime.created] == [
        ("media_stream", "remote_hangup"), ("audiosocket", "remote_hangup")]  # our own ids, never the peer's
    cdrs = [json.loads(line) for path in tmp_path.glob("cdr-*.jsonl") for line in path.read_text().splitlines()]
    assert sorted(cdr["door"] for cdr in cdrs) == ["audiosocket", "media_stream"]


async def test_a_media_call_without_a_voice_runtime_is_refused_and_the_gateway_stays_up(tmp_path, caplog):
    app = media_app(tmp_path, runtime=None)
    async with TestClient(TestServer(app)) as client:
        for _ in range(2):
            ws = await client.ws_connect("/media?token=gw-token")
            await ws.send_str(START)
            closing = await ws.receive(timeout=2)
            assert (closing.type, closing.data) == (WSMsgType.CLOSE, WSCloseCode.INTERNAL_ERROR)
    assert any("refused the call" in record.getMessage() and "voice loop unavailable" in record.exc_text
               for record in caplog.records if record.exc_text)
