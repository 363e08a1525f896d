"""SIP over TCP under abuse, with real sockets on 127.0.0.x (Linux routes all of 127/8 to loopback, so tests can
play many sources). Every wait is bounded by a generous timeout on an event, never a fixed sleep.

Before: the idle timeout was a constant nobody used, there was no per-source cap, strangers' connections counted,
a half-sent message held its connection forever, and 512 idle connections locked everyone else out."""

from __future__ import annotations

import asyncio
import dataclasses
import resource

import pytest

from settings import SipSettings
from telephony.sip.message import parse_message
from telephony.sip.transport import SipServer
from tests.telephony.sip.sip_test_support import Uac

WAIT_S = 10.0  # an upper bound for things that happen in milliseconds; only a failing test waits this long


def options_over_tcp() -> bytes:
    return Uac().request("OPTIONS").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")


@pytest.fixture
async def serve():
    servers: list[SipServer] = []

    async def start(**changes) -> SipServer:
        settings = dataclasses.replace(SipSettings(), **changes)
        server = await SipServer(settings, lambda event: None).start("127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


async def connect(server: SipServer, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*server.address, local_addr=(source, 0))


async def ask_options(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    writer.write(options_over_tcp())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    return parse_message(head).status


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True when the server closes (EOF or reset) within WAIT_S."""
    try:
        return await asyncio.wait_for(reader.read(1024), WAIT_S) == b""
    except ConnectionResetError:
        return True


async def wait_for(condition, timeout: float = WAIT_S) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_an_idle_connection_is_closed_after_the_idle_timeout(serve):
    server = await serve(tcp_idle_timeout_s=0.3)
    reader, writer = await connect(server)
    assert await ask_options(reader, writer) == 200  # activity first: the timeout counts from the last byte
    assert await closed_by_server(reader)
    await wait_for(lambda: server.tcp_connection_count == 0)
    writer.close()


async def test_a_half_sent_message_times_out_even_while_it_trickles(serve):
    server = await serve(tcp_message_timeout_s=0.5, tcp_idle_timeout_s=60.0)
    reader, writer = await connect(server)
    message = options_over_tcp()
    started = asyncio.get_running_loop().time()

    async def trickle() -> None:  # slow-loris: one byte every 50 ms keeps it from ever being idle
        for byte in message[:-1]:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)

    trickling = asyncio.ensure_future(trickle())
    try:
        assert await closed_by_server(reader)
    finally:
        trickling.cancel()
        await asyncio.gather(trickling, return_exceptions=True)
        writer.close()
    assert asyncio.get_running_loop().time() - started < len(message) * 0.05  # long before the trickle would end


async def test_each_source_has_its_own_connection_cap(serve):
    server = await serve(tcp_max_connections_per_source=3)
    kept = [await connect(server, "127.0.0.3") for _ in range(3)]
    refused = [await connect(server, "127.0.0.3") for _ in range(2)]
    for reader, _ in refused:
        assert await closed_by_server(reader)
    for reader, writer in kept:
        assert await ask_options(reader, writer) == 200
    other = await connect(server, "127.0.0.4")  # another source is not affected
    assert await ask_options(*other) == 200
    for _, writer in kept + refused + [other]:
        writer.close()


async def test_strangers_are_closed_before_they_count(serve):
    server = await serve(allow_cidrs="127.0.0.1/32", tcp_max_connections=4)
    insiders = [await connect(server, "127.0.0.1") for _ in range(2)]
    strangers = [await connect(server, "127.0.0.5") for _ in range(10)]
    for reader, _ in strangers:
        assert await closed_by_server(reader)
    assert server.tcp_connection_count == 2
    for reader, writer in insiders:  # nothing was evicted to make room for strangers
        assert await ask_options(reader, writer) == 200
    for _, writer in insiders + strangers:
        writer.close()


@pytest.fixture
def enough_file_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 1400  # 600 connections, both ends in this process, plus the rest
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_600_idle_connections_do_not_stop_a_new_options_being_answered(serve, enough_file_descriptors):
    server = await serve()  # the shipped limits
    loop = asyncio.get_running_loop()
    idle = []
    for n in range(600):  # 30 sources x 20 connections: under the per-source cap, over the total one
        transport, _ = await loop.create_connection(asyncio.Protocol, *server.address,
                                                    local_addr=(f"127.0.1.{n % 30 + 1}", 0))
        idle.append(transport)
    try:
        await wait_for(lambda: server.tcp_connection_count >= server.settings.tcp_max_connections)
        assert server.tcp_connection_count <= server.settings.tcp_max_connections
        reader, writer = await connect(server, "127.0.0.1")
        assert await ask_options(reader, writer) == 200
        writer.close()
    finally:
        for transport in idle:
            transport.abort()
