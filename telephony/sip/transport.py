"""The only part of the SIP stack that touches sockets: asyncio UDP + TCP around the sans-I/O `UserAgent`.

It feeds received datagrams (and Content-Length-framed TCP messages) to the core with the loop clock,
sends the datagrams the core returns and hands events to the application callback in order. Timers: after
every step it asks the core for `next_deadline()` and sleeps until then with `loop.call_at` (no polling).

Where replies go: responses go back to the packet's source (on TCP, on the connection the request came on);
requests of ours (BYE, REFER) go where the core's dialog says, opening a new TCP connection when none is open.

TCP is bounded (settings.sip.tcp_*), so idle or slow connections cannot lock the door:
- a source outside the allow-list (when no digest password is configured) is closed before it counts;
- each source has its own connection cap; over the total cap the connection idle longest is closed to make room,
  so however many idle connections an attacker holds, a new caller still gets in;
- a connection that sends nothing for `tcp_idle_timeout_s` is closed, and so is one that has not completed the
  message it began within `tcp_message_timeout_s` (a slow-loris trickle keeps it busy, not alive).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
from collections import OrderedDict
from typing import Any, Callable, Coroutine

from settings import SipSettings
from telephony.sip.message import SipSyntaxError, frame_stream
from telephony.sip.sdp import LocalMedia
from telephony.sip.transaction import Address, Datagram
from telephony.sip.uas import Call, Event, Output, UserAgent, advertised_host_for

log = logging.getLogger(__name__)
FREE_PORT_ATTEMPTS = 5  # tries for a port free for both UDP and TCP when any port will do

MIN_WAKE_S = 0.005  # a deadline already past is served at once, but never in a busy loop
TCP_CONNECT_TIMEOUT_S = 5.0
EventHandler = Callable[[Event], Any]


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: "SipServer"):
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.server.receive(data, (addr[0], addr[1]), "udp")

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)  # ICMP unreachable from a vanished peer: nothing to do


class _TcpProtocol(asyncio.Protocol):
    """One TCP connection, accepted (`outbound=False`) or opened by us to send a request."""

    def __init__(self, server: "SipServer", outbound: bool = False):
        self.server = server
        self.outbound = outbound
        self.buffer = b""
        self.peer: Address | None = None
        self.transport: asyncio.Transport | None = None
        self.last_activity = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._message_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = (host, port)
        self.last_activity = self.server.now()
        if not self.server.tcp_admit(self):
            transport.abort()
            return
        self._arm_idle_timer(self.server.settings.tcp_idle_timeout_s)

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None and self.transport is not None
        self.last_activity = self.server.now()
        self.server.tcp_active(self)
        self.buffer += data
        completed = False
        while self.buffer:
            try:
                message, self.buffer = frame_stream(self.buffer, self.server.settings.max_message_bytes)
            except SipSyntaxError as error:
                log.info("closing TCP connection from %s:%s: %s", *self.peer, error.reason)
                self.transport.close()  # a stream we cannot frame cannot be resynchronised
                return
            if message is None:
                break
            completed = True
            self.server.receive(message, self.peer, "tcp")
        self._watch_partial_message(completed)

    def _watch_partial_message(self, completed: bool) -> None:
        """A message begun must be complete within tcp_message_timeout_s, counted from its first byte."""
        if not self.buffer:
            self._cancel_message_timer()
        elif self._message_timer is None or completed:
            self._cancel_message_timer()
            loop = asyncio.get_running_loop()
            self._message_timer = loop.call_later(self.server.settings.tcp_message_timeout_s, self._message_timed_out)

    def _message_timed_out(self) -> None:
        self._message_timer = None
        if self.transport is not None and self.peer is not None:
            log.info("closing TCP connection from %s:%s: message not completed in time", *self.peer)
            self.transport.abort()

    def _arm_idle_timer(self, delay: float) -> None:
        self._idle_timer = asyncio.get_running_loop().call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        """One timer per connection, re-armed for the rest of the timeout instead of reset on every packet."""
        self._idle_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        remaining = self.last_activity + self.server.settings.tcp_idle_timeout_s - self.server.now()
        if remaining > 0:
            self._arm_idle_timer(remaining)
            return
        log.info("closing idle TCP connection from %s:%s", *(self.peer or ("?", 0)))
        self.transport.abort()

    def _cancel_message_timer(self) -> None:
        if self._message_timer is not None:
            self._message_timer.cancel()
            self._message_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_message_timer()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self.server.tcp_forget(self)


class SipServer:
    """A listening SIP UAS. The application gets events through `on_event` and acts with the methods below."""

    def __init__(self, settings: SipSettings, on_event: EventHandler):
        self.settings = settings
        self.on_event = on_event
        self.core: UserAgent | None = None
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp_server: asyncio.AbstractServer | None = None
        self.tcp_connections: dict[Address, asyncio.Transport] = {}  # by peer address: where responses go
        self._tcp_by_activity: OrderedDict[_TcpProtocol, None] = OrderedDict()  # least recently active first
        self._tcp_per_source: dict[str, int] = {}
        self._tcp_connecting: dict[Address, list[bytes]] = {}  # requests waiting for a connection we open
        self.address: Address = (settings.host, settings.port)
        self.advertised_host = ""  # what Via, Contact and SDP name (set by start; see UserAgent)
        self._wakeup: asyncio.TimerHandle | None = None
        self._wakeup_at: float | None = None
        self._closed = False
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, host: str | None = None, port: int | None = None) -> "SipServer":
        """Bind UDP and TCP on the same port (0 = any free one); timers are scheduled as the core needs them.
        Raises AdvertisedAddressError before binding anything when there is no address to advertise (a wildcard
        bind without settings.advertised_host)."""
        self._loop = asyncio.get_running_loop()
        host = host if host is not None else self.settings.host
        port = port if port is not None else self.settings.port
        self.advertised_host = advertised_host_for(host, self.settings.advertised_host)
        # With port 0 the OS picks a port free for UDP, which may be taken for TCP (e.g. by a client connection's
        # local port): then pick again, so both transports share one port as RFC 3261 §18 expects.
        for attempt in range(1, (FREE_PORT_ATTEMPTS if port == 0 else 1) + 1):
            self.udp, _ = await self._loop.create_datagram_endpoint(lambda: _UdpProtocol(self), local_addr=(host, port))
            bound_port = self.udp.get_extra_info("sockname")[1]
            self.address = (host, bound_port)
            # before TCP accepts: admission asks its gate
            self.core = UserAgent(self.settings, self.address, self.advertised_host)
            try:
                self.tcp_server = await self._loop.create_server(lambda: _TcpProtocol(self), host, bound_port,
                                                                 reuse_address=True)
                break
            except OSError as error:
                if port == 0 and attempt < FREE_PORT_ATTEMPTS:
                    self.udp.close()
                    continue
                log.warning("SIP over TCP unavailable on %s:%s: %s", host, bound_port, error)
        log.info("SIP listening on %s:%s (UDP%s), advertised as %s", host, bound_port,
                 "+TCP" if self.tcp_server else "", self.advertised_host)
        return self

    async def close(self) -> None:
        self._closed = True
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for protocol in list(self._tcp_by_activity):
            if protocol.transport is not None:
                protocol.transport.close()
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

    # ------------------------------------------------------------------------------ timers

    def _on_wakeup(self) -> None:
        self._wakeup = self._wakeup_at = None
        try:
            outputs = self._core.tick(self.now())
        except Exception:  # keep the timers running whatever one call did
            log.exception("SIP timer tick failed")
            outputs = []
        self._emit(outputs)

    def _schedule_wakeup(self) -> None:
        """Sleep until the core's next deadline (one loop timer, moved only when the deadline moves)."""
        if self.core is None or self._loop is None or self._closed:
            return
        deadline = self.core.next_deadline()
        if deadline is not None:
            deadline = max(deadline, self.now() + MIN_WAKE_S)
        if deadline == self._wakeup_at:
            return
        if self._wakeup is not None:
            self._wakeup.cancel()
        self._wakeup_at = deadline
        self._wakeup = self._loop.call_at(deadline, self._on_wakeup) if deadline is not None else None

    # ------------------------------------------------------------------------------ sending

    def _emit(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, Datagram):
                self._send(output)
            else:
                self._deliver(output)
        self._schedule_wakeup()

    def _send(self, datagram: Datagram) -> None:
        if datagram.transport == "tcp":
            self._send_tcp(datagram)
        elif self.udp is not None:
            self.udp.sendto(datagram.data, datagram.dest)

    def _send_tcp(self, datagram: Datagram) -> None:
        connection = self.tcp_connections.get(datagram.dest)
        if connection is not None and not connection.is_closing():
            connection.write(datagram.data)
            return
        if not datagram.may_connect:
            log.info("TCP connection to %s:%s is gone; response dropped", *datagram.dest)
            return
        waiting = self._tcp_connecting.get(datagram.dest)
        if waiting is None:
            waiting = self._tcp_connecting[datagram.dest] = []
            self._spawn(self._connect(datagram.dest))
        waiting.append(datagram.data)

    async def _connect(self, dest: Address) -> None:
        """Open a connection for requests of ours (§18.1.1); responses to them come back on it."""
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: _TcpProtocol(self, outbound=True), dest[0], dest[1]),
                TCP_CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError) as error:
            log.info("TCP connection to %s:%s failed: %s; request dropped", dest[0], dest[1], error)
            self._tcp_connecting.pop(dest, None)
            return
        for data in self._tcp_connecting.pop(dest, []):
            transport.write(data)

    # ------------------------------------------------------------------------------ TCP bookkeeping

    def tcp_admit(self, protocol: _TcpProtocol) -> bool:
        """Count a new connection, or refuse it. The allow-list comes first, so strangers never count."""
        assert protocol.peer is not None and protocol.transport is not None
        host = protocol.peer[0]
        if not protocol.outbound:
            gate = self._core.gate
            if not gate.source_allowed(host) and not gate.may_authenticate():
                return False
            if self._tcp_per_source.get(host, 0) >= self.settings.tcp_max_connections_per_source:
                log.info("TCP connection from %s refused: %d already open from there", host,
                         self._tcp_per_source[host])
                return False
        while self._tcp_by_activity and len(self._tcp_by_activity) >= max(self.settings.tcp_max_connections, 1):
            self._evict_least_active()
        self._tcp_by_activity[protocol] = None
        self._tcp_per_source[host] = self._tcp_per_source.get(host, 0) + 1
        self.tcp_connections[protocol.peer] = protocol.transport
        return True

    def _evict_least_active(self) -> None:
        oldest = next(iter(self._tcp_by_activity))
        log.info("TCP connection from %s:%s closed to make room (idle longest)", *(oldest.peer or ("?", 0)))
        if oldest.transport is not None:
            oldest.transport.abort()
        self.tcp_forget(oldest)  # at once: abort() reports connection_lost only on the next loop turn

    def tcp_active(self, protocol: _TcpProtocol) -> None:
        if protocol in self._tcp_by_activity:
            self._tcp_by_activity.move_to_end(protocol)

    def tcp_forget(self, protocol: _TcpProtocol) -> None:
        if protocol not in self._tcp_by_activity:
            return  # refused, or already forgotten
        del self._tcp_by_activity[protocol]
        assert protocol.peer is not None
        host = protocol.peer[0]
        remaining = self._tcp_per_source.get(host, 1) - 1
        if remaining > 0:
            self._tcp_per_source[host] = remaining
        else:
            self._tcp_per_source.pop(host, None)
        if self.tcp_connections.get(protocol.peer) is protocol.transport:
            del self.tcp_connections[protocol.peer]

    @property
    def tcp_connection_count(self) -> int:
        return len(self._tcp_by_activity)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _deliver(self, event: Event) -> None:
        try:
            result = self.on_event(event)
        except Exception:
            log.exception("SIP event handler failed on %s", type(event).__name__)
            return
        if inspect.isawaitable(result):
            self._spawn(result)  # type: ignore[arg-type]

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
