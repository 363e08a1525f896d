"""The /media WebSocket, driven by an aiohttp client speaking the Twilio Media Streams protocol."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from settings import Settings
from telephony.rtp import g711
from telephony.websocket.routes import MEDIA_ENDPOINT_KEY, add_media_routes

CHUNK = 320  # bytes of 20 ms 16-bit PCM at 8 kHz
TOKEN = "test-media-token"
STREAM = "MZ0123456789abcdef"


def settings_for_test(**overrides: str) -> Settings:
    return Settings.from_env({"MEDIA_WS_TOKEN": TOKEN, "MEDIA_IDLE_TIMEOUT_S": "5", **overrides})


@pytest.fixture
def media_server(call_factory, tmp_path, close_at_end):
    async def serve(**overrides: str) -> TestServer:
        app = web.Application()
        settings = settings_for_test(**{"CALL_RECORDS_DIR": str(tmp_path / "calls"), **overrides})
        add_media_routes(app, call_factory, settings, audiosocket=False)
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        close_at_end(server)
        return server

    return serve


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def url(server: TestServer, token: str | None = TOKEN) -> str:
    return str(server.make_url("/media")) + (f"?token={token}" if token is not None else "")


def start_message(call_sid: str = "CA42", caller: str = "+86 138-0000-0001") -> str:
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": STREAM,
                       "start": {"streamSid": STREAM, "callSid": call_sid, "accountSid": "AC1",
                                 "tracks": ["inbound"], "customParameters": {"caller_number": caller},
                                 "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})


def media_message(pcm16: bytes) -> str:
    payload = base64.b64encode(g711.pcm16_to_ulaw(pcm16)).decode()
    return json.dumps({"event": "media", "streamSid": STREAM,
                       "media": {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": payload}})


def dtmf_message(key: str) -> str:
    return json.dumps({"event": "dtmf", "streamSid": STREAM, "dtmf": {"track": "inbound_track", "digit": key}})


async def open_call(http, server, **kwargs) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url(server), **kwargs)
    await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    await ws.send_str(start_message())
    return ws


async def next_event(ws, event: str, timeout: float = 2.0) -> dict:
    """The next message of kind `event`, skipping others (media, marks)."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, f"socket ended: {msg.type} {msg.data} {msg.extra}"
        message = json.loads(msg.data)
        if message["event"] == event:
            return message


def pcm_of(message: dict) -> np.ndarray:
    assert message["streamSid"] == STREAM
    return np.frombuffer(g711.ulaw_to_pcm16(base64.b64decode(message["media"]["payload"])), "<i2")


async def closed_code(ws, timeout: float = 3.0) -> int:
    """The code of the server's close frame (skipping messages still in flight)."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), timeout)
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return msg.data
        assert msg.type == aiohttp.WSMsgType.TEXT, f"socket ended without a close frame: {msg.type}"



async def test_a_call_gets_greeting_echo_dtmf_and_clear_on_barge_in(media_server, http, call_factory, wait_until,
                                                                   tone):
    server = await media_server()
    ws = await open_call(http, server)
    greeting = [pcm_of(await next_event(ws, "media")) for _ in range(3)]
    assert all(len(chunk) == 160 and np.abs(chunk).max() > 1000 for chunk in greeting)
    (call,) = call_factory.calls
    assert (call.info.caller_number, call.info.sample_rate) == ("+8613800000001", 8000)
    # our own id, never the peer's callSid (kept as the CDR's peer_call_id)
    assert re.fullmatch(r"media_stream-[0-9a-f]{32}", call.info.call_id)

    quiet = tone(1500)
    await ws.send_str(media_message(quiet))
    echoed = pcm_of(await next_event(ws, "media"))
    assert np.array_equal(echoed, np.frombuffer(g711.ulaw_to_pcm16(g711.pcm16_to_ulaw(quiet)), "<i2"))

    await ws.send_str(dtmf_message("5"))
    await wait_until(lambda: call.keys == ["5"])

    await ws.send_str(media_message(tone(12000)))  # the caller talks over the bot
    assert (await next_event(ws, "clear")) == {"event": "clear", "streamSid": STREAM}

    await ws.send_str(json.dumps({"event": "stop", "streamSid": STREAM, "stop": {"callSid": "CA42"}}))
    assert await closed_code(ws) == aiohttp.WSCloseCode.OK
    assert call.stop_causes == ["remote_hangup"]
    assert len(call.audio_in) == 2 * CHUNK


async def test_a_mark_follows_each_stretch_of_bot_speech_and_played_marks_are_counted(media_server, http,
                                                                                       wait_until):
    server = await media_server()
    ws = await open_call(http, server)
    mark = await next_event(ws, "mark")
    assert mark["mark"]["name"] == "bot-speech-1" and mark["streamSid"] == STREAM
    await ws.send_str(json.dumps({"event": "mark", "streamSid": STREAM, "mark": mark["mark"]}))
    (stream,) = server.app[MEDIA_ENDPOINT_KEY].active
    await wait_until(lambda: stream.marks_played == 1)
    await ws.close()


@pytest.mark.parametrize("token", [None, "", "wrong-token", TOKEN + "x"])
async def test_bad_tokens_are_refused_with_401(media_server, http, call_factory, token):
    server = await media_server()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(url(server, token))
    assert refused.value.status == 401 and call_factory.calls == []


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {TOKEN}"}, {"X-Media-Token": TOKEN}])
async def test_the_token_may_come_in_a_header(media_server, http, headers):
    server = await media_server()
    ws = await http.ws_connect(url(server, token=None), headers=headers)
    await ws.send_str(start_message())
    await next_event(ws, "media")
    await ws.close()


async def test_an_empty_configured_token_refuses_everyone(media_server, http):
    server = await media_server(MEDIA_WS_TOKEN="")
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(str(server.make_url("/media")) + "?token=")


async def test_an_oversized_frame_closes_with_1009_and_ends_the_call(media_server, http, call_factory,
                                                                     wait_until):
    server = await media_server(MEDIA_WS_MAX_MESSAGE_BYTES="4096")
    ws = await open_call(http, server)
    await next_event(ws, "media")
    await ws.send_str(json.dumps({"event": "media", "media": {"payload": "A" * 10000}}))
    assert await closed_code(ws) == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    await wait_until(lambda: call_factory.calls[0].stop_causes == ["media_error"])


async def test_an_idle_socket_times_out(media_server, http, call_factory, wait_until):
    server = await media_server(MEDIA_IDLE_TIMEOUT_S="0.3")
    ws = await open_call(http, server)
    assert await closed_code(ws) == aiohttp.WSCloseCode.GOING_AWAY
    await wait_until(lambda: call_factory.calls[0].stop_causes == ["idle_timeout"])


async def test_a_socket_that_never_starts_a_stream_times_out_without_a_call(media_server, http, call_factory):
    server = await media_server(MEDIA_IDLE_TIMEOUT_S="0.3")
    ws = await http.ws_connect(url(server))
    assert await closed_code(ws) == aiohttp.WSCloseCode.GOING_AWAY
    assert call_factory.calls == []


async def test_the_bot_hanging_up_closes_the_socket(media_server, http, call_factory, wait_until):
    server = await media_server()
    ws = await open_call(http, server)
    await ws.send_str(dtmf_message("9"))
    assert await closed_code(ws) == aiohttp.WSCloseCode.OK
    await wait_until(lambda: call_factory.calls[0].stop_causes == ["bot_hangup"])


async def test_a_handoff_is_declined_so_the_bot_can_offer_a_callback(media_server, http, call_factory,
                                                                     wait_until):
    server = await media_server()
    ws = await open_call(http, server)
    await next_event(ws, "media")  # the call is up
    await ws.send_str(dtmf_message("0"))
    await wait_until(lambda: call_factory.calls[0].transfer_results != [])
    ok, detail = call_factory.calls[0].transfer_results[0]
    assert ok is False and "cannot be transferred" in detail
    await ws.close()


async def test_garbage_messages_are_skipped_and_the_call_goes_on(media_server, http, call_factory, wait_until):
    server = await media_server()
    ws = await open_call(http, server)
    await next_event(ws, "media")  # the call is up
    for garbage in ("not json", "[1, 2]", json.dumps({"event": "media", "media": {"payload": "%%%"}}),
                    json.dumps({"event": "media", "media": "x"}), json.dumps({"event": "dtmf", "dtmf": {}}),
                    json.dumps({"event": "unknown"})):
        await ws.send_str(garbage)
    await ws.send_bytes(os.urandom(100))
    await ws.send_str(dtmf_message("7"))
    await wait_until(lambda: call_factory.calls[0].keys == ["7"])
    (stream,) = server.app[MEDIA_ENDPOINT_KEY].active
    assert stream.bad_messages == 6  # all but the unknown event, which is ignored for forward compatibility
    await ws.close()


async def test_a_client_that_just_disconnects_ends_the_call(media_server, http, call_factory, wait_until):
    server = await media_server()
    ws = await open_call(http, server)
    await next_event(ws, "media")
    await ws.close()
    await wait_until(lambda: call_factory.calls[0].stop_causes == ["remote_hangup"])
    await wait_until(lambda: not server.app[MEDIA_ENDPOINT_KEY].active)


async def test_a_call_the_voice_loop_refuses_closes_with_1011(media_server, http, call_factory):
    call_factory.refuse = True
    server = await media_server()
    ws = await open_call(http, server)
    assert await closed_code(ws) == aiohttp.WSCloseCode.INTERNAL_ERROR


async def test_calls_leave_no_tasks_or_file_descriptors_behind(media_server, http, call_factory, wait_until):
    server = await media_server()
    await asyncio.sleep(0.05)
    tasks_before, fds_before = len(asyncio.all_tasks()), len(os.listdir("/proc/self/fd"))
    for i in range(5):
        ws = await open_call(http, server)
        await next_event(ws, "media")
        if i % 2:
            await ws.send_str(dtmf_message("9"))  # bot hangs up
            await closed_code(ws)
        else:
            await ws.send_str(json.dumps({"event": "stop"}))
            await closed_code(ws)
    await wait_until(lambda: all(c.stop_causes for c in call_factory.calls) and
                     not server.app[MEDIA_ENDPOINT_KEY].active)
    await http.connector.close()  # drop the client's keep-alive sockets, which are not the server's
    await asyncio.sleep(0.1)
    assert len(asyncio.all_tasks()) <= tasks_before
    assert len(os.listdir("/proc/self/fd")) <= fds_before


async def test_a_call_that_fails_to_start_closes_with_1011_and_is_stopped(media_server, http, call_factory,
                                                                          wait_until):
    call_factory.fail_start = True
    server = await media_server()
    ws = await open_call(http, server)
    assert await closed_code(ws) == aiohttp.WSCloseCode.INTERNAL_ERROR
    await wait_until(lambda: call_factory.calls[0].stop_causes == ["start_failed"])


async def test_gateway_shutdown_ends_open_streams_and_their_calls(media_server, http, call_factory):
    server = await media_server()
    ws_in_call = await open_call(http, server)
    await next_event(ws_in_call, "media")
    ws_before_start = await http.ws_connect(url(server))
    codes = asyncio.gather(closed_code(ws_in_call), closed_code(ws_before_start))  # the peers answer the close
    await server.app[MEDIA_ENDPOINT_KEY].close_all()
    assert await codes == [aiohttp.WSCloseCode.OK, aiohttp.WSCloseCode.OK]
    assert call_factory.calls[0].stop_causes == ["shutdown"] and len(call_factory.calls) == 1


async def test_a_call_leaves_one_cdr_line_and_its_logs_name_the_call_but_no_key(media_server, http, call_factory,
                                                                                wait_until, tone, tmp_path, caplog):
    server = await media_server()
    with caplog.at_level(logging.DEBUG):
        ws = await open_call(http, server)
        for _ in range(3):
            await next_event(ws, "media")  # the greeting
        for _ in range(2):
            await ws.send_str(media_message(tone(1500)))
        for key in "1234":  # a PIN
            await ws.send_str(dtmf_message(key))
        (call,) = call_factory.calls
        await wait_until(lambda: call.keys == list("1234"))
        await ws.send_str(json.dumps({"event": "stop", "streamSid": STREAM, "stop": {"callSid": "CA42"}}))
        assert await closed_code(ws) == aiohttp.WSCloseCode.OK
        await wait_until(lambda: list((tmp_path / "calls").glob("cdr-*.jsonl")) != [])

    [path] = (tmp_path / "calls").glob("cdr-*.jsonl")
    [cdr] = [json.loads(line) for line in path.read_text().splitlines()]
    call_id = call.info.call_id
    assert (cdr["call_id"], cdr["door"], cdr["codec"], cdr["peer_call_id"]) == (call_id, "media_stream", "PCMU", "CA42")
    assert (cdr["cause"], cdr["outcome"], cdr["caller"]) == ("remote_hangup", "completed", "+86*******0001")
    assert cdr["packets_in"] == 2 and cdr["packets_out"] >= 3 and cdr["answered_at"] is not None

    lines = [r.getMessage() for r in caplog.records if r.name.startswith(("telephony", "bot.call_session")) and call_id in r.getMessage()]
    assert lines and all(line.startswith(f"call={call_id} ") for line in lines)
    dtmf_lines = [line for line in lines if "dtmf" in line.lower()]
    assert len(dtmf_lines) == 4
    assert not any(re.search(r"[0-9]", line.replace(f"call={call_id}", "")) for line in dtmf_lines), dtmf_lines
