"""Asterisk AudioSocket: a TCP client plays Asterisk's part (UUID, audio both ways, DTMF, hangup)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import struct
import uuid

import numpy as np
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from settings import Settings
from bot.cdr import CdrWriter
from telephony.websocket.audiosocket import (KIND_AUDIO, KIND_DTMF, KIND_ERROR, KIND_HANGUP, KIND_UUID,
                                             AudioSocketServer, Message)
from telephony.websocket.routes import AUDIOSOCKET_KEY, add_media_routes

CALL_UUID = uuid.UUID("2f0b9a3c-6a1d-4a7e-9b8e-1c2d3e4f5a6b")


def settings_for_test(**overrides: str) -> Settings:
    return Settings.from_env({"AUDIOSOCKET_HOST": "127.0.0.1", "AUDIOSOCKET_PORT": "0",
                              "MEDIA_IDLE_TIMEOUT_S": "5", **overrides})


@pytest.fixture
def audiosocket(call_factory, close_at_end):
    async def serve(**overrides: str) -> AudioSocketServer:
        server = AudioSocketServer(call_factory, settings_for_test(**overrides).gateway)
        await server.start()
        close_at_end(server)
        return server

    return serve


@pytest.fixture
async def connect():
    writers: list[asyncio.StreamWriter] = []

    async def open_connection(server: AudioSocketServer, first: bytes | None = None):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writers.append(writer)
        writer.write(Message(KIND_UUID, CALL_UUID.bytes).serialise() if first is None else first)
        return reader, writer

    yield open_connection
    for writer in writers:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def read_message(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    kind, length = struct.unpack("!BH", await asyncio.wait_for(reader.readexactly(3), 2))
    return kind, await asyncio.wait_for(reader.readexactly(length), 2)


async def read_until_eof(reader: asyncio.StreamReader) -> list[int]:
    kinds = []
    while True:
        try:
            kind, _ = await read_message(reader)
        except asyncio.IncompleteReadError:
            return kinds
        kinds.append(kind)


async def test_a_call_with_audio_both_ways_dtmf_and_hangup(audiosocket, connect, call_factory, wait_until, tone):
    server = await audiosocket()
    reader, writer = await connect(server)
    greeting = [await read_message(reader) for _ in range(3)]
    assert all(kind == KIND_AUDIO and len(payload) == 320 for kind, payload in greeting)
    assert np.abs(np.frombuffer(greeting[0][1], "<i2")).max() > 1000
    (call,) = call_factory.calls
    assert (call.info.caller_number, call.info.sample_rate) == ("", 8000)
    # our own id, never Asterisk's UUID (kept as the CDR's peer_call_id)
    assert re.fullmatch(r"audiosocket-[0-9a-f]{32}", call.info.call_id) and str(CALL_UUID) not in call.info.call_id

    writer.write(Message(KIND_AUDIO, tone(1500)).serialise())
    assert await read_message(reader) == (KIND_AUDIO, tone(1500))  # signed linear: echoed bit-exact
    writer.write(Message(KIND_DTMF, b"#").serialise())
    await wait_until(lambda: call.keys == ["#"])
    writer.write(Message(KIND_HANGUP).serialise())
    assert await read_until_eof(reader) == []
    await wait_until(lambda: call.stop_causes == ["remote_hangup"])


async def test_the_bot_hanging_up_sends_a_hangup_message_and_closes(audiosocket, connect, call_factory,
                                                                     wait_until):
    server = await audiosocket()
    reader, writer = await connect(server)
    writer.write(Message(KIND_DTMF, b"9").serialise())
    assert (await read_until_eof(reader))[-1] == KIND_HANGUP
    await wait_until(lambda: call_factory.calls[0].stop_causes == ["bot_hangup"])


async def test_a_handoff_is_declined(audiosocket, connect, call_factory, wait_until):
    server = await audiosocket()
    reader, writer = await connect(server)
    writer.write(Message(KIND_DTMF, b"0").serialise())
    await wait_until(lambda: bool(call_factory.calls) and call_factory.calls[0].transfer_results != [])
    assert call_factory.calls[0].transfer_results[0][0] is False


@pytest.mark.parametrize("first", [Message(KIND_AUDIO, bytes(320)).serialise(),
                                   Message(KIND_UUID, b"short").serialise(), b"\x01\xff\xff"])
async def test_a_connection_not_starting_with_a_uuid_is_closed_without_a_call(audiosocket, connect,
                                                                              call_factory, first):
    server = await audiosocket()
    reader, _ = await connect(server, first)
    assert await read_until_eof(reader) == []
    assert call_factory.calls == []


async def test_an_oversized_message_ends_the_call(audiosocket, connect, call_factory, wait_until):
    server = await audiosocket()
    reader, writer = await connect(server)
    writer.write(b"\x10\xff\xff" + bytes(100))
    await read_until_eof(reader)
    await wait_until(lambda: call_factory.calls[0].stop_causes == ["media_error"])


async def test_an_error_message_from_asterisk_ends_the_call(audiosocket, connect, call_factory, wait_until):
    server = await audiosocket()
    reader, writer = await connect(server)
    writer.write(Message(KIND_ERROR, b"\x02").serialise())
    await read_until_eof(reader)
    await wait_until(lambda: call_factory.calls[0].stop_causes == ["remote_error"])


async def test_an_idle_connection_times_out(audiosocket, connect, call_factory, wait_until):
    server = await audiosocket(MEDIA_IDLE_TIMEOUT_S="0.3")
    reader, _ = await connect(server)
    assert (await read_until_eof(reader))[-1] == KIND_HANGUP
    await wait_until(lambda: call_factory.calls[0].stop_causes == ["idle_timeout"])


async def test_odd_length_audio_and_unknown_kinds_do_not_break_the_call(audiosocket, connect, call_factory,
                                                                        wait_until):
    server = await audiosocket()
    reader, writer = await connect(server)
    writer.write(Message(0x42, b"future").serialise() + Message(KIND_AUDIO, bytes(321)).serialise())
    writer.write(Message(KIND_DTMF, b"3").serialise())
    await wait_until(lambda: bool(call_factory.calls) and call_factory.calls[0].keys == ["3"])
    assert len(call_factory.calls[0].audio_in) == 320


async def test_closing_the_server_ends_calls_and_leaks_nothing(call_factory, connect, wait_until):
    await asyncio.sleep(0.05)
    tasks_before, fds_before = len(asyncio.all_tasks()), len(os.listdir("/proc/self/fd"))
    server = AudioSocketServer(call_factory, settings_for_test().gateway)
    await server.start()
    readers = [(await connect(server))[0] for _ in range(5)]
    await wait_until(lambda: len(call_factory.calls) == 5)
    await server.close()
    for reader in readers:
        assert (await read_until_eof(reader))[-1] == KIND_HANGUP
    assert all(call.stop_causes == ["shutdown"] for call in call_factory.calls)
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) == tasks_before
    # the test's own client sockets are still open (closed by the fixture); the server's are all gone
    assert len(os.listdir("/proc/self/fd")) == fds_before + 5


async def test_the_gateway_app_runs_the_audiosocket_server_with_its_lifetime(call_factory, connect, tmp_path):
    app = web.Application()
    add_media_routes(app, call_factory, settings_for_test(CALL_RECORDS_DIR=str(tmp_path)))
    runner = web.AppRunner(app)
    await runner.setup()  # runs the cleanup contexts' start half: the AudioSocket server listens
    try:
        server = app[AUDIOSOCKET_KEY]
        reader, _ = await connect(server)
        kind, _ = await read_message(reader)
        assert kind == KIND_AUDIO
    finally:
        await runner.cleanup()
    assert call_factory.calls[0].stop_causes == ["shutdown"]


async def test_a_call_that_fails_to_start_is_stopped_and_disconnected(audiosocket, connect, call_factory,
                                                                      wait_until):
    call_factory.fail_start = True
    server = await audiosocket()
    reader, _ = await connect(server)
    assert await read_until_eof(reader) == []
    await wait_until(lambda: call_factory.calls[0].stop_causes == ["start_failed"])


async def test_ended_calls_are_counted_in_the_metrics(audiosocket, connect, call_factory, wait_until):
    def ended() -> float:
        return REGISTRY.get_sample_value("ivr_telephony_calls_total",
                                         {"door": "audiosocket", "outcome": "completed"}) or 0.0

    before = ended()
    server = await audiosocket()
    reader, writer = await connect(server)
    await wait_until(lambda: REGISTRY.get_sample_value("ivr_telephony_active_calls", {"door": "audiosocket"}) == 1)
    writer.write(Message(KIND_HANGUP).serialise())
    await read_until_eof(reader)
    await wait_until(lambda: ended() == before + 1)
    assert REGISTRY.get_sample_value("ivr_telephony_active_calls", {"door": "audiosocket"}) == 0


async def test_a_call_leaves_one_cdr_line_and_logs_no_key(call_factory, connect, wait_until, tone, tmp_path, caplog):
    server = AudioSocketServer(call_factory, settings_for_test().gateway, CdrWriter(tmp_path))
    await server.start()
    try:
        with caplog.at_level(logging.DEBUG):
            reader, writer = await connect(server)
            for _ in range(3):
                await read_message(reader)  # the greeting
            writer.write(Message(KIND_AUDIO, tone(1500)).serialise())
            for key in b"2580":
                writer.write(Message(KIND_DTMF, bytes([key])).serialise())
            await wait_until(lambda: bool(call_factory.calls) and call_factory.calls[0].keys == list("2580"))
            writer.write(Message(KIND_HANGUP).serialise())
            await read_until_eof(reader)
            await wait_until(lambda: list(tmp_path.glob("cdr-*.jsonl")) != [])
    finally:
        await server.close()
    [cdr] = [json.loads(line) for line in next(tmp_path.glob("cdr-*.jsonl")).read_text().splitlines()]
    call_id = call_factory.calls[0].info.call_id
    assert (cdr["call_id"], cdr["peer_call_id"], cdr["door"], cdr["codec"]) == (
        call_id, str(CALL_UUID), "audiosocket", "L16")
    assert (cdr["cause"], cdr["outcome"], cdr["caller"]) == ("remote_hangup", "completed", "")
    assert cdr["packets_in"] == 1 and cdr["packets_out"] == 4  # greeting 3 + the echo
    dtmf_lines = [r.getMessage() for r in caplog.records if "dtmf" in r.getMessage().lower()]
    assert len(dtmf_lines) == 4 and all(line.startswith(f"call={call_id} ") for line in dtmf_lines)
    assert not any(re.search(r"[0-9]", line.replace(f"call={call_id}", "")) for line in dtmf_lines), dtmf_lines
