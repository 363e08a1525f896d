"""`RtpSession`: the media leg of one call, one UDP port, G.711 audio and RFC 4733 DTMF.

A thin asyncio adapter over the sans-I/O `RtpCore` (`telephony/rtp/core.py`, where latching, SSRC changes,
the jitter buffer, the media timeout and the counters live and are documented): it owns the UDP socket, feeds
the core each datagram with `loop.time()`, keeps one timer at `core.next_deadline()` (`loop.call_at`), sends
what the core returns and turns its events into the `on_audio` / `on_dtmf` / `on_timeout` callbacks.

Latching in short: nothing is accepted before a remote is signalled (`remote=None`: call `set_remote` with
the ACK's SDP); then the exact signalled address latches on its first valid RTP packet, a new port of the
signalled IP only after several consecutive valid packets of one SSRC (NAT), and every other source is
ignored. `send_audio` sends each 20 ms frame at once, so the caller paces it (the voice loop delivers bot
audio in real time); `send_dtmf` paces its RFC 4733 packet train itself.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from typing import Any, Awaitable, Callable

from settings import Settings, get_settings
from telephony.rtp import g711
from telephony.rtp.core import (AudioReceived, Datagram, DtmfReceived, MediaTimedOut, RtpCore, RtpEvent,
                                RtpStats)
from telephony.rtp.dtmf import DEFAULT_DTMF_PAYLOAD_TYPE
from telephony.rtp.latching import NAT_LATCH_PACKETS, Address
from telephony.rtp.ports import PortAllocator

__all__ = ["RtpSession", "RtpStats", "Address"]


AudioCallback = Callable[[bytes], None]
DtmfCallback = Callable[[str], None]
TimeoutCallback = Callable[[], Awaitable[None] | None]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, session: "RtpSession") -> None:
        self._session = session

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._session._on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the peer is not listening yet: not fatal for a media leg.
        self._session.log.debug("RTP socket error on port %s: %s", self._session.local_port, exc)


class RtpSession:
    """One call's RTP leg. Create with `await RtpSession.open(...)`, end with `close()`.

    Callbacks (plain attributes, set them before media flows):
      on_audio(pcm16: bytes)  caller audio, 16-bit mono little-endian PCM at 8 kHz, one packet's worth
      on_dtmf(key: str)       one RFC 4733 key press, "0"-"9", "*", "#", "A"-"D", reported once
      on_timeout()            no media for media_timeout_s; may be async; called at most once
    """

    def __init__(self, sock: socket.socket, allocator: PortAllocator | None, remote: Address | None, *,
                 payload_type: int = g711.PCMU_PAYLOAD_TYPE,
                 dtmf_payload_type: int | None = DEFAULT_DTMF_PAYLOAD_TYPE,
                 ptime_ms: int = 20, media_timeout_s: float = 30.0, jitter_delay_s: float = 0.06,
                 call_id: str = "-", nat_latch_packets: int = NAT_LATCH_PACKETS,
                 signalling_host: str | None = None) -> None:
        self.on_audio: AudioCallback | None = None
        self.on_dtmf: DtmfCallback | None = None
        self.on_timeout: TimeoutCallback | None = None
        self.call_id = call_id
        self.ptime_ms = ptime_ms
        self._loop = asyncio.get_running_loop()
        self._core = RtpCore(remote, now=self._loop.time(), payload_type=payload_type,
                             dtmf_payload_type=dtmf_payload_type, ptime_ms=ptime_ms,
                             media_timeout_s=media_timeout_s, jitter_delay_s=jitter_delay_s, call_id=call_id,
                             nat_latch_packets=nat_latch_packets, signalling_host=signalling_host)
        self.log = self._core.log
        self._sock = sock
        self._allocator = allocator
        self._local_port: int = sock.getsockname()[1]
        self._transport: asyncio.DatagramTransport | None = None
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._callback_tasks: set[asyncio.Task] = set()

    @classmethod
    async def open(cls, allocator: PortAllocator, remote: Address | None, *, local_host: str = "127.0.0.1",
                   payload_type: int = g711.PCMU_PAYLOAD_TYPE,
                   dtmf_payload_type: int | None = DEFAULT_DTMF_PAYLOAD_TYPE, ptime_ms: int = 20,
                   call_id: str = "-", settings: Settings | None = None,
                   media_timeout_s: float | None = None, nat_latch_packets: int = NAT_LATCH_PACKETS,
                   signalling_host: str | None = None) -> "RtpSession":
        """Bind a port from `allocator` and start receiving.

        remote: the address from the SDP offer (c= and m=audio port); None (an INVITE without SDP) accepts
        nothing until `set_remote` gives the ACK's address. payload_type: 0 PCMU or 8 PCMA, as negotiated;
        dtmf_payload_type: the offer's telephone-event type, None if it had none. media_timeout_s defaults to
        settings.sip. signalling_host: the IP the call's SIP requests came from; its ports may latch like the
        signalled IP's (NAT: a phone that puts its private address in SDP). Pass it for every SIP call.
        """
        sip = (settings or get_settings()).sip
        sock = allocator.bind(local_host)
        port = sock.getsockname()[1]
        try:
            timeout_s = sip.media_timeout_s if media_timeout_s is None else media_timeout_s
            session = cls(sock, allocator, remote, payload_type=payload_type, dtmf_payload_type=dtmf_payload_type,
                          ptime_ms=ptime_ms, media_timeout_s=timeout_s, call_id=call_id,
                          nat_latch_packets=nat_latch_packets, signalling_host=signalling_host)
            session._transport, _ = await session._loop.create_datagram_endpoint(lambda: _Protocol(session), sock=sock)
        except BaseException:
            sock.close()
            allocator.release(port)
            raise
        session._schedule_timer()
        return session

    # ---- public API -------------------------------------------------------------------------

    @property
    def local_port(self) -> int:
        return self._local_port

    @property
    def remote_address(self) -> Address | None:
        """Where we send: the latched source once media arrived, else the signalled address."""
        return self._core.remote_address

    @property
    def payload_type(self) -> int:
        return self._core.payload_type

    @property
    def dtmf_payload_type(self) -> int | None:
        return self._core.dtmf_payload_type

    @property
    def media_timeout_s(self) -> float:
        return self._core.media_timeout_s

    @property
    def closed(self) -> bool:
        return self._closed

    def set_remote(self, remote: Address | None) -> None:
        """New signalled address (the ACK's SDP, a re-INVITE): a changed one latches again on its next packets;
        the same one keeps the latch."""
        self._core.set_remote(remote)

    def set_direction(self, direction: str) -> None:
        """Our SDP direction after a (re-)INVITE: sendrecv, sendonly, recvonly or inactive (hold).

        We only send when it includes "send", and only expect media (media timeout) when it includes "recv",
        so a caller holding the call with `inactive` is not hung up for silence.
        """
        self._core.set_direction(direction, self._loop.time())
        self._schedule_timer()

    def send_audio(self, pcm16: bytes) -> None:
        """Queue 16-bit 8 kHz PCM; every full 20 ms frame is encoded and sent immediately."""
        if not self._closed:
            self._transmit(self._core.audio_datagrams(pcm16, self._loop.time()))

    def clear_audio(self) -> None:
        """Barge-in: drop a partial frame not yet sent."""
        self._core.clear_audio()

    async def send_dtmf(self, key: str, duration_ms: int = 100) -> None:
        """Send one key as RFC 4733 events, one packet per ptime; raises ValueError for a non-key,
        RuntimeError when the peer did not offer telephone-event."""
        outgoing = self._core.start_key(key, duration_ms)
        for index in range(len(outgoing.payloads)):
            if self._closed:
                return
            datagram = self._core.key_datagram(outgoing, index)
            self._transmit([datagram] if datagram is not None else [])
            await asyncio.sleep(self.ptime_ms / 1000)

    def stats(self) -> RtpStats:
        return self._core.stats()

    def close(self) -> None:
        """Stop the timer, close the socket, give the port back. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
        else:
            self._sock.close()
        if self._allocator is not None:
            self._allocator.release(self._local_port)

    # ---- I/O glue -----------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, source: Address) -> None:
        if self._closed:
            return
        self._dispatch(self._core.receive_datagram(data, source, self._loop.time()))
        self._schedule_timer()

    def _on_timer(self) -> None:
        when = self._timer.when() if self._timer is not None else self._loop.time()
        self._timer = None
        if self._closed:
            return
        # The loop may run a timer a clock-resolution early; it fired for its deadline.
        self._dispatch(self._core.handle_timer(max(self._loop.time(), when)))
        self._schedule_timer()

    def _schedule_timer(self) -> None:
        """One timer at the core's next deadline. Each packet pushes the media-timeout deadline back; a timer that
        is due no later than the new deadline is kept (it wakes early, finds nothing due, and re-arms), so the
        common case costs no cancel-and-reschedule per packet."""
        deadline = None if self._closed else self._core.next_deadline()
        if self._timer is not None:
            if deadline is not None and self._timer.when() <= deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _transmit(self, datagrams: list[Datagram]) -> None:
        if self._transport is None or self._closed:
            return
        for payload, destination in datagrams:
            self._transport.sendto(payload, destination)

    def _dispatch(self, events: list[RtpEvent]) -> None:
        for event in events:
            if isinstance(event, AudioReceived):
                self._call_back(self.on_audio, event.pcm16)
            elif isinstance(event, DtmfReceived):
                self._call_back(self.on_dtmf, event.key)
            elif isinstance(event, MediaTimedOut):
                self._timed_out()

    def _call_back(self, callback: Callable[[Any], None] | None, value: Any) -> None:
        if callback is None:
            return
        try:
            callback(value)
        except Exception:  # a broken consumer must not kill the media leg
            self.log.exception("RTP callback failed")

    def _timed_out(self) -> None:
        if self.on_timeout is None:
            return
        result = self.on_timeout()
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._callback_tasks.add(task)
            task.add_done_callback(self._callback_tasks.discard)
