"""SipServer over real TCP sockets: a request of ours opens a new connection when the caller's has closed, and
timers are scheduled from the core's next deadline instead of a polling loop."""

from __future__ import annotations

import asyncio
import re

from settings import SipSettings
from sip_test_support import Uac
from telephony.sip.message import parse_message
from telephony.sip.sdp import LocalMedia
from telephony.sip.transport import SipServer
from telephony.sip.uas import CallAnswered, IncomingCall

WAIT_S = 10.0


async def read_message(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    length = re.search(rb"(?im)^content-length: *([0-9]+)", head)
    return head + await asyncio.wait_for(reader.readexactly(int(length.group(1)) if length else 0), WAIT_S)


async def test_bye_opens_a_new_tcp_connection_to_the_contact_after_the_callers_closed():
    byes: asyncio.Queue[bytes] = asyncio.Queue()

    async def callers_listener(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await byes.put(await read_message(reader))
        writer.close()

    listener = await asyncio.start_server(callers_listener, "127.0.0.1", 0)
    contact_port = listener.sockets[0].getsockname()[1]
    calls: asyncio.Queue = asyncio.Queue()
    server = await SipServer(SipSettings(), calls.put_nowait).start("127.0.0.1", 0)
    try:
        uac = Uac()
        reader, writer = await asyncio.open_connection(*server.address)
        invite = uac.invite().replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP").replace(
            b"Contact: <sip:13800000001@127.0.0.1:40000>",
            f"Contact: <sip:13800000001@127.0.0.1:{contact_port};transport=tcp>".encode())
        writer.write(invite)
        assert parse_message(await read_message(reader)).status == 100
        incoming = await asyncio.wait_for(calls.get(), WAIT_S)
        assert isinstance(incoming, IncomingCall)
        server.answer(incoming.call, LocalMedia("127.0.0.1", 20000))
        ok = parse_message(await read_message(reader))
        assert ok.status == 200
        uac.learn_tag(ok)
        writer.write(uac.ack().replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
        assert isinstance(await asyncio.wait_for(calls.get(), WAIT_S), CallAnswered)
        writer.close()  # the caller's connection is gone
        await asyncio.wait_for(reader.read(), WAIT_S)

        server.hangup(incoming.call)
        bye = parse_message(await asyncio.wait_for(byes.get(), WAIT_S))
        assert bye.method == "BYE" and bye.uri == f"sip:13800000001@127.0.0.1:{contact_port};transport=tcp"
        assert "SIP/2.0/TCP" in bye.get("via")
    finally:
        await server.close()
        listener.close()


async def test_timers_are_scheduled_at_the_cores_next_deadline():
    server = await SipServer(SipSettings(), lambda event: None).start("127.0.0.1", 0)
    try:
        assert server._wakeup is None  # nothing pending: no timer at all, no polling
        server.receive(Uac().request("OPTIONS"), ("127.0.0.1", 40000), "udp")  # Timer J: 64*T1 from now
        assert server._wakeup_at == server.core.next_deadline() > server.now() + 30
        server.receive(Uac().request("OPTIONS"), ("127.0.0.1", 40000), "tcp")  # Timer J: 0 over TCP
        assert server._wakeup_at <= server.now() + 0.01
        await asyncio.wait_for(_until(lambda: len(server.core.server_transactions) == 1), WAIT_S)
        assert server._wakeup_at == server.core.next_deadline()  # back to the UDP transaction's Timer J
    finally:
        await server.close()


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.05)


async def test_any_free_port_means_one_free_for_tcp_too(monkeypatch):
    """The OS picks a port free for UDP; if that number is taken for TCP (a CI run saw 'address already in use'
    from a client connection's local port), the server picks again instead of answering UDP only."""
    loop = asyncio.get_running_loop()
    create_server, refused = loop.create_server, []

    async def first_port_taken(*args, **kwargs):
        if not refused:
            refused.append(args[2])
            raise OSError(98, "address already in use")
        return await create_server(*args, **kwargs)

    monkeypatch.setattr(loop, "create_server", first_port_taken)
    server = await SipServer(SipSettings(), lambda event: None).start("127.0.0.1", 0)
    try:
        assert server.tcp_server is not None, "TCP must be bound"
        assert server.tcp_server.sockets[0].getsockname()[1] == server.address[1] == \
            server.udp.get_extra_info("sockname")[1]
        assert server.address[1] != refused[0]
    finally:
        await server.close()
