"""The media doors under attack: the `/media` WebSocket (Twilio protocol) and Asterisk AudioSocket.

A peer must never pick the conversation its call lands in, malformed input must never end a call, strangers
must never reach AudioSocket, and the published default media token is no good off loopback.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request
from prometheus_client import REGISTRY

from settings import Settings
from bot.cdr import CdrWriter
from telephony.rtp import g711
from telephony.websocket.audiosocket import (KIND_AUDIO, KIND_DTMF, KIND_HANGUP, KIND_UUID, AudioSocketServer,
                                             Message, parse_allow_cidrs, peer_allowed)
from telephony.websocket.routes import MEDIA_ENDPOINT_KEY, add_media_routes
from telephony.websocket.twilio import token_is_valid
from tests.telephony.websocket.conftest import EchoCallFactory, tone_chunk
from tests.telephony.websocket.conftest import until as until_within

TOKEN = "media-token-for-attack-tests"
STREAM = "MZattack"
UUID_RE = r"[0-9a-f]{32}"


@pytest.fixture
def factory() -> EchoCallFactory:
    return EchoCallFactory()


@pytest.fixture
async def media_door(factory, tmp_path):
    servers: list[TestServer] = []

    async def serve(**overrides: str) -> TestServer:
        settings = Settings.from_env({"MEDIA_WS_TOKEN": TOKEN, "MEDIA_IDLE_TIMEOUT_S": "5",
                                      "CALL_RECORDS_DIR": str(tmp_path / "calls"), **overrides})
        app = web.Application()
        add_media_routes(app, factory, settings, audiosocket=False)
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        servers.append(server)
        return server

    yield serve
    for server in servers:
        await server.close()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def start(call_sid: Any = "CA-forged", stream_sid: Any = STREAM, caller: Any = "13800000001") -> str:
    return json.dumps({"event": "start", "streamSid": stream_sid,
                       "start": {"streamSid": stream_sid, "callSid": call_sid,
                                 "customParameters": {"caller_number": caller}}})


def media_message(pcm16: bytes) -> str:
    return json.dumps({"event": "media", "streamSid": STREAM,
                       "media": {"payload": base64.b64encode(g711.pcm16_to_ulaw(pcm16)).decode()}})


def dtmf(key: Any) -> str:
    return json.dumps({"event": "dtmf", "streamSid": STREAM, "dtmf": {"digit": key}})


async def open_stream(http, server, first: str | None = None) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(str(server.make_url("/media")) + f"?token={TOKEN}")
    await ws.send_str(start() if first is None else first)
    return ws


async def until(condition) -> None:
    """Polls `condition`; generous, as the machine may be busy (it returns as soon as the condition holds)."""
    await until_within(condition, timeout=10.0)


def bad_messages(door: str, reason: str) -> float:
    return REGISTRY.get_sample_value("ivr_media_bad_messages_total", {"door": door, "reason": reason}) or 0.0


# ---- /media: whose conversation is it? --------------------------------------------------------

async def test_a_forged_call_sid_never_becomes_the_conversation_id(media_door, http, factory):
    """Two streams presenting the same callSid (a replay, or a forged id) get two fresh, unrelated calls."""
    server = await media_door()
    first = await open_stream(http, server, start(call_sid="sip-1"))
    await until(lambda: len(factory.calls) == 1)
    second = await open_stream(http, server, start(call_sid="sip-1"))
    await until(lambda: len(factory.calls) == 2)
    ids = [call.info.call_id for call in factory.calls]
    assert ids[0] != ids[1]
    for call_id in ids:
        assert "sip-1" not in call_id and "CA" not in call_id
        assert call_id.startswith("media_stream-") and uuid.UUID(hex=call_id.removeprefix("media_stream-"))
    await first.close()
    await second.close()


async def test_the_peer_call_sid_is_kept_as_a_reference_in_the_cdr(media_door, http, factory, tmp_path):
    server = await media_door()
    ws = await open_stream(http, server, start(call_sid="CA-peer-ref"))
    await until(lambda: bool(factory.calls))
    await ws.send_str(json.dumps({"event": "stop"}))
    await until(lambda: list((tmp_path / "calls").glob("cdr-*.jsonl")) != [])
    [line] = next((tmp_path / "calls").glob("cdr-*.jsonl")).read_text().splitlines()
    cdr = json.loads(line)
    assert cdr["peer_call_id"] == "CA-peer-ref"
    assert cdr["call_id"] == factory.calls[0].info.call_id != "CA-peer-ref"


# ---- /media: malformed input is counted and skipped ------------------------------------------

MALFORMED = [
    ("media without a payload", json.dumps({"event": "media", "media": {}})),
    ("media null", json.dumps({"event": "media", "media": None})),
    ("media payload a number", json.dumps({"event": "media", "media": {"payload": 12345}})),
    ("media payload a list", json.dumps({"event": "media", "media": {"payload": ["AAAA"]}})),
    ("base64 garbage", json.dumps({"event": "media", "media": {"payload": "!!!!not*base64"}})),
    ("base64 with bad padding", json.dumps({"event": "media", "media": {"payload": "QUJDR"}})),
    ("dtmf of two keys", dtmf("55")),
    ("dtmf with a Unicode digit", dtmf("٣")),
    ("dtmf superscript", dtmf("²")),
    ("dtmf fullwidth", dtmf("５")),
    ("dtmf lone surrogate", '{"event": "dtmf", "dtmf": {"digit": "\\ud800"}}'),
    ("dtmf null", dtmf(None)),
    ("dtmf an object", json.dumps({"event": "dtmf", "dtmf": {"digit": {"x": 1}}})),
    ("dtmf a string", json.dumps({"event": "dtmf", "dtmf": "5"})),
    ("non-JSON text", "hello, bot"),
    ("a JSON list", "[1, 2, 3]"),
    ("a JSON string", '"media"'),
    ("JSON nested too deep", "[" * 50_000),
    ("object nested too deep", '{"a":' * 12_000),
    ("number with too many digits", '{"event": "media", "n": ' + "9" * 5000 + "}"),
    ("a second start", start(call_sid="CA-second")),
    ("event an object", json.dumps({"event": {"media": 1}})),
    ("NUL bytes", json.dumps({"event": "media", "media": {"payload": "\x00\x00\x00\x00"}})),
]


@pytest.mark.parametrize("label, message", MALFORMED, ids=[label for label, _ in MALFORMED])
async def test_a_malformed_message_is_skipped_and_the_call_goes_on(media_door, http, factory, label, message):
    server = await media_door()
    ws = await open_stream(http, server)
    await until(lambda: bool(factory.calls) and factory.calls[0].started)
    (stream,) = server.app[MEDIA_ENDPOINT_KEY].active
    await ws.send_str(message)
    await ws.send_str(dtmf("7"))
    await until(lambda: factory.calls[0].keys == ["7"])
    call = factory.calls[0]
    assert call.stop_causes == [] and not ws.closed
    assert len(factory.calls) == 1 and call.keys == ["7"]  # no odd key slipped through, no second call
    assert stream.bad_messages >= 1, label
    await ws.close()


async def test_malformed_messages_are_counted_by_reason(media_door, http, factory):
    server = await media_door()
    before = {reason: bad_messages("media_stream", reason)
              for reason in ("bad_media", "bad_dtmf", "binary", "not_json_object", "start_again")}
    ws = await open_stream(http, server)
    await until(lambda: bool(factory.calls) and factory.calls[0].started)
    await ws.send_str(json.dumps({"event": "media", "media": {}}))
    await ws.send_str(dtmf("٣"))
    await ws.send_bytes(b"\x00\x01binary")
    await ws.send_str("{not json")
    await ws.send_str(start())
    await ws.send_str(dtmf("1"))
    await until(lambda: factory.calls[0].keys == ["1"])
    after = {reason: bad_messages("media_stream", reason) for reason in before}
    assert {reason: after[reason] - before[reason] for reason in before} == {
        "bad_media": 1, "bad_dtmf": 1, "binary": 1, "not_json_object": 1, "start_again": 1}
    await ws.close()


async def test_media_and_keys_before_start_are_skipped_and_counted(media_door, http, factory):
    server = await media_door()
    before = bad_messages("media_stream", "before_start")
    ws = await http.ws_connect(str(server.make_url("/media")) + f"?token={TOKEN}")
    await ws.send_str(media_message(tone_chunk()))
    await ws.send_str(dtmf("1"))
    await ws.send_str(start())
    await ws.send_str(dtmf("2"))
    await until(lambda: bool(factory.calls) and factory.calls[0].keys == ["2"])
    assert bad_messages("media_stream", "before_start") == before + 2
    assert len(factory.calls[0].audio_in) == 0  # the audio before start went nowhere
    await ws.close()


async def test_a_large_message_within_the_limit_is_handled_and_one_over_it_closes_1009(media_door, http, factory):
    """Within MEDIA_WS_MAX_MESSAGE_BYTES a message is parsed (garbage skipped); beyond it aiohttp closes 1009
    without buffering it, and the call ends cleanly with a CDR (cause media_error)."""
    server = await media_door(MEDIA_WS_MAX_MESSAGE_BYTES="65536")
    ws = await open_stream(http, server)
    await until(lambda: bool(factory.calls) and factory.calls[0].started)
    await ws.send_str(json.dumps({"event": "media", "media": {"payload": "%" * 60_000}}))
    await ws.send_str(json.dumps({"event": "unknown", "pad": "好" * 20_000}, ensure_ascii=False))  # 60 KB of UTF-8
    await ws.send_str(dtmf("3"))
    await until(lambda: factory.calls[0].keys == ["3"])
    assert factory.calls[0].stop_causes == []
    await ws.send_str(json.dumps({"event": "media", "media": {"payload": "A" * 70_000}}))
    msg = await asyncio.wait_for(ws.receive(), 3)
    while msg.type == aiohttp.WSMsgType.TEXT:
        msg = await asyncio.wait_for(ws.receive(), 3)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    await until(lambda: factory.calls[0].stop_causes == ["media_error"])


async def test_odd_unicode_in_the_caller_number_is_not_read_as_digits(media_door, http, factory):
    server = await media_door()
    ws = await open_stream(http, server, start(caller="１３８００００００００１"))  # fullwidth digits
    await until(lambda: bool(factory.calls))
    assert factory.calls[0].info.caller_number == ""
    await ws.close()


@pytest.mark.parametrize("call_sid, stream_sid", [
    (None, None), (12345, ["x"]), ({"a": 1}, ""), ("\ud800" * 10, "../../etc"), ("x" * 5000, "y" * 5000),
])
async def test_odd_peer_ids_still_give_a_fresh_call(media_door, http, factory, call_sid, stream_sid):
    server = await media_door()
    ws = await open_stream(http, server, start(call_sid=call_sid, stream_sid=stream_sid))
    await until(lambda: bool(factory.calls) and factory.calls[0].started)
    assert factory.calls[0].info.call_id.startswith("media_stream-")
    await ws.send_str(dtmf("4"))
    await until(lambda: factory.calls[0].keys == ["4"])
    await ws.close()


# ---- /media: tokens ---------------------------------------------------------------------------

@pytest.mark.parametrize("remote, accepted", [("127.0.0.1", True), ("::1", True), ("203.0.113.9", False),
                                              ("10.0.0.7", False)])
def test_the_default_media_token_is_accepted_from_loopback_only(remote, accepted):
    request = make_mocked_request("GET", "/media?token=change-me-media-token")
    request = request.clone(remote=remote)
    assert token_is_valid(request, "change-me-media-token") is accepted


def test_a_real_media_token_is_accepted_from_anywhere():
    request = make_mocked_request("GET", f"/media?token={TOKEN}").clone(remote="203.0.113.9")
    assert token_is_valid(request, TOKEN)


# ---- AudioSocket -------------------------------------------------------------------------------

def audiosocket_settings(**overrides: str) -> Settings:
    return Settings.from_env({"AUDIOSOCKET_HOST": "127.0.0.1", "AUDIOSOCKET_PORT": "0", "MEDIA_IDLE_TIMEOUT_S": "5",
                              **overrides})


@pytest.fixture
async def audiosocket(factory):
    servers: list[AudioSocketServer] = []

    async def serve(cdr_dir=None, **overrides: str) -> AudioSocketServer:
        server = AudioSocketServer(factory, audiosocket_settings(**overrides).gateway,
                                   CdrWriter(cdr_dir) if cdr_dir else None)
        await server.start()
        servers.append(server)
        return server

    yield serve
    for server in servers:
        await server.close()


async def connect(server: AudioSocketServer, peer_uuid: uuid.UUID):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(Message(KIND_UUID, peer_uuid.bytes).serialise())
    return reader, writer


async def test_audiosocket_calls_get_fresh_ids_and_keep_the_asterisk_uuid_as_reference(audiosocket, factory,
                                                                                      tmp_path):
    server = await audiosocket(cdr_dir=tmp_path)
    same = uuid.UUID("00000000-0000-4000-8000-000000000001")
    connections = [await connect(server, same) for _ in range(2)]
    await until(lambda: len(factory.calls) == 2 and all(call.started for call in factory.calls))
    ids = [call.info.call_id for call in factory.calls]
    assert ids[0] != ids[1] and all(str(same) not in call_id for call_id in ids)
    assert all(call_id.startswith("audiosocket-") for call_id in ids)
    for _, writer in connections:
        writer.write(Message(KIND_HANGUP).serialise())
    await until(lambda: len([line for path in tmp_path.glob("cdr-*.jsonl")
                             for line in path.read_text().splitlines()]) == 2)
    cdrs = [json.loads(line) for path in tmp_path.glob("cdr-*.jsonl") for line in path.read_text().splitlines()]
    assert {cdr["peer_call_id"] for cdr in cdrs} == {str(same)}
    assert {cdr["call_id"] for cdr in cdrs} == set(ids)
    for _, writer in connections:
        writer.close()


async def test_a_stranger_is_closed_at_once_and_counted(audiosocket, factory):
    # The door's allow-list does not hold 127.0.0.1 here, so our loopback client plays the stranger.
    server = await audiosocket(AUDIOSOCKET_ALLOW_CIDRS="192.0.2.0/24")
    before = REGISTRY.get_sample_value("ivr_media_refused_connections_total",
                                       {"door": "audiosocket", "reason": "not_allowed"}) or 0.0
    reader, writer = await connect(server, uuid.uuid4())
    writer.write(Message(KIND_AUDIO, tone_chunk()).serialise())
    try:
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing sent back
    except ConnectionResetError:
        pass  # closed with a reset: the door read nothing
    assert factory.calls == [] and server.refused == 1
    assert REGISTRY.get_sample_value("ivr_media_refused_connections_total",
                                     {"door": "audiosocket", "reason": "not_allowed"}) == before + 1
    writer.close()


async def test_the_default_allow_list_is_loopback_only():
    networks = parse_allow_cidrs(Settings.from_env({}).gateway.audiosocket_allow_cidrs)
    assert peer_allowed(("127.0.0.1", 5000), networks) and peer_allowed(("::1", 5000, 0, 0), networks)
    assert peer_allowed(("::ffff:127.0.0.1", 5000, 0, 0), networks)  # dual-stack listener
    for stranger in (("10.0.0.1", 1), ("::ffff:10.0.0.1", 1, 0, 0), ("fe80::1%eth0", 1, 0, 2), None, "x", ()):
        assert not peer_allowed(stranger, networks), stranger


def test_a_malformed_allow_list_is_a_clear_configuration_error():
    with pytest.raises(ValueError, match="AUDIOSOCKET_ALLOW_CIDRS"):
        parse_allow_cidrs("127.0.0.1/8,not-an-ip")


@pytest.mark.parametrize("payload", [b"", b"\xff", b"x", b"12", "٣".encode(), b"\x00"])
async def test_audiosocket_keys_that_are_not_one_keypad_key_are_skipped(audiosocket, factory, payload):
    server = await audiosocket()
    _, writer = await connect(server, uuid.uuid4())
    writer.write(Message(KIND_DTMF, payload).serialise() + Message(KIND_DTMF, b"5").serialise())
    await until(lambda: bool(factory.calls) and factory.calls[0].keys == ["5"])
    assert factory.calls[0].stop_causes == []
    writer.close()
