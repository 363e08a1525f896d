"""The only part of the SIP stack that touches sockets: asyncio UDP + TCP around the sans-I/O `UserAgent`.

It feeds received datagrams (and Content-Length-framed TCP messages) to the core with the loop clock,
runs the core's timers every `TICK_S`, sends the datagrams the core returns (to the address the core
names — always a packet source) and hands events to the application callback in order.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
from typing import Any, Callable

from settings import SipSettings
from telephony.sip.message import SipSyntaxError, frame_stream
from telephony.sip.sdp import LocalMedia
from telephony.sip.transaction import Address, Datagram
from telephony.sip.uas import Call, Event, Output, UserAgent

log = logging.getLogger(__name__)

TICK_S = 0.02
MAX_TCP_CONNECTIONS = 512
TCP_IDLE_TIMEOUT_S = 300.0
EventHandler = Callable[[Event], Any]


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: "SipServer"):
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.server.receive(data, (addr[0], addr[1]), "udp")

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)  # ICMP unreachable from a vanished peer: nothing to do


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, server: "SipServer"):
        self.server = server
        self.buffer = b""
        self.peer: Address | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = (host, port)
        if len(self.server.tcp_connections) >= MAX_TCP_CONNECTIONS:
            transport.close()
            return
        self.server.tcp_connections[self.peer] = transport

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None and self.transport is not None
        self.buffer += data
        while self.buffer:
            try:
                message, self.buffer = frame_stream(self.buffer, self.server.settings.max_message_bytes)
            except SipSyntaxError as error:
                log.info("closing TCP connection from %s:%s: %s", *self.peer, error.reason)
                self.transport.close()  # a stream we cannot frame cannot be resynchronised
                return
            if message is None:
                return
            self.server.receive(message, self.peer, "tcp")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.server.tcp_connections.get(self.peer) is self.transport:
            del self.server.tcp_connections[self.peer]


class SipServer:
    """A listening SIP UAS. The application gets events through `on_event` and acts with the methods below."""

    def __init__(self, settings: SipSettings, on_event: EventHandler):
        self.settings = settings
        self.on_event = on_event
        self.core: UserAgent | None = None
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp_server: asyncio.AbstractServer | None = None
        self.tcp_connections: dict[Address, asyncio.Transport] = {}
        self.address: Address = (settings.host, settings.port)
        self._ticker: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, host: str | None = None, port: int | None = None) -> "SipServer":
        """Bind UDP and TCP on the same port (0 = any free one), then start the timer loop."""
        self._loop = asyncio.get_running_loop()
        host = host if host is not None else self.settings.host
        port = port if port is not None else self.settings.port
        self.udp, _ = await self._loop.create_datagram_endpoint(lambda: _UdpProtocol(self), local_addr=(host, port))
        bound_port = self.udp.get_extra_info("sockname")[1]
        self.address = (host, bound_port)
        try:
            self.tcp_server = await self._loop.create_server(lambda: _TcpProtocol(self), host, bound_port, reuse_address=True)
        except OSError as error:
            log.warning("SIP over TCP unavailable on %s:%s: %s", host, bound_port, error)
        self.core = UserAgent(self.settings, self.address)
        self._ticker = self._loop.create_task(self._tick_forever())
        log.info("SIP listening on %s:%s (UDP%s)", host, bound_port, "+TCP" if self.tcp_server else "")
        return self

    async def close(self) -> None:
        if self._ticker:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for transport in list(self.tcp_connections.values()):
            transport.close()
        if self.tcp_server:
            self.tcp_server.close()
            await self.tcp_server.wait_closed()
        if self.udp:
            self.udp.close()

    # ------------------------------------------------------------------------------ what the app calls

    def now(self) -> float:
        return (self._loop or asyncio.get_running_loop()).time()

    def ringing(self, call: Call) -> None:
        self._emit(self._core.ringing(call, self.now()))

    def answer(self, call: Call, local_media: LocalMedia) -> None:
        self._emit(self._core.answer(call, local_media, self.now()))

    def reject(self, call: Call, status: int) -> None:
        self._emit(self._core.reject(call, status, self.now()))

    def hangup(self, call: Call, cause: str = "local_hangup") -> None:
        self._emit(self._core.hangup(call, self.now(), cause))

    def refer(self, call: Call, target_uri: str, headers: list[tuple[str, str]]) -> None:
        self._emit(self._core.refer(call, target_uri, headers, self.now()))

    def refer_to_queue(self, call: Call, queue: str, context: dict) -> None:
        self._emit(self._core.refer_to_queue(call, queue, context, self.now()))

    @property
    def active_calls(self) -> list[Call]:
        return self._core.active_calls

    # ------------------------------------------------------------------------------ plumbing

    @property
    def _core(self) -> UserAgent:
        if self.core is None:
            raise RuntimeError("SipServer.start() has not run")
        return self.core

    def receive(self, data: bytes, source: Address, transport: str) -> None:
        self._emit(self._core.feed(data, source, self.now(), transport))

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self._emit(self._core.tick(self.now()))
            except Exception:  # keep the timers running whatever one call did
                log.exception("SIP timer tick failed")

    def _emit(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, Datagram):
                self._send(output)
            else:
                self._deliver(output)

    def _send(self, datagram: Datagram) -> None:
        if datagram.transport == "tcp":
            connection = self.tcp_connections.get(datagram.dest)
            if connection is None or connection.is_closing():
                log.info("TCP connection to %s:%s is gone; message dropped", *datagram.dest)
                return
            connection.write(datagram.data)
        elif self.udp is not None:
            self.udp.sendto(datagram.data, datagram.dest)

    def _deliver(self, event: Event) -> None:
        try:
            result = self.on_event(event)
        except Exception:
            log.exception("SIP event handler failed on %s", type(event).__name__)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("SIP event handler failed: %r", task.exception())


def free_port() -> int:
    """A port that is free for UDP and TCP on 127.0.0.1 right now (for tests and tools)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port found")
