"""`RtpSession`: the media leg of one call, one UDP port, G.711 audio and RFC 4733 DTMF.

Receive path: datagram → source check (symmetric RTP latching, bleed rejection) → parse →
jitter buffer → decode → `on_audio(pcm16)` / `on_dtmf(key)`.
Send path: `send_audio(pcm16)` cuts 20 ms frames and sends each at once, so the caller paces it
(the voice loop delivers bot audio in real time); `send_dtmf(key)` sends an RFC 4733 packet train.

Symmetric RTP (RFC 4961) for callers behind NAT: until the first packet arrives we send to the
address signalled in SDP; the first packet whose source matches the signalled IP *or* port is
latched, and from then on we send there and ignore every other source (RTP bleed).
No accepted packet for `media_timeout_s` → `on_timeout()` once (the SIP layer sends BYE).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import socket
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from settings import Settings, get_settings
from telephony.call_log import call_logger
from telephony.rtp import g711
from telephony.rtp.dtmf import DEFAULT_DTMF_PAYLOAD_TYPE, DtmfReceiver, event_payloads
from telephony.rtp.jitter import InterarrivalJitter, JitterBuffer
from telephony.rtp.packet import RtpPacket, RtpParseError, build_packet, parse_packet
from telephony.rtp.ports import PortAllocator

log = logging.getLogger(__name__)

CLOCK_RATE = 8000
SAMPLE_BYTES = 2
# A pause in outgoing audio longer than this starts a new talkspurt (marker bit, timestamp jump).
TALKSPURT_GAP_FRAMES = 3

Address = tuple[str, int]
AudioCallback = Callable[[bytes], None]
DtmfCallback = Callable[[str], None]
TimeoutCallback = Callable[[], Awaitable[None] | None]


@dataclass(frozen=True)
class RtpStats:
    """Counters for the CDR."""

    packets_in: int
    packets_out: int
    packets_lost: int
    packets_late: int
    packets_duplicate: int
    packets_ignored: int  # from a source other than the latched one (bleed)
    packets_malformed: int
    jitter_ms: float
    dtmf_in: int
    dtmf_out: int
    latched_address: Address | None


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
                 call_id: str = "-") -> None:
        self.on_audio: AudioCallback | None = None
        self.on_dtmf: DtmfCallback | None = None
        self.on_timeout: TimeoutCallback | None = None
        self.call_id = call_id
        self.log = call_logger(log, call_id)
        self.payload_type = payload_type
        self._encode = g711.encoder_for(payload_type)  # ValueError early for a non-G.711 payload type
        self.dtmf_payload_type = dtmf_payload_type
        self.ptime_ms = ptime_ms
        self.media_timeout_s = media_timeout_s
        self._sock = sock
        self._allocator = allocator
        self._local_port: int = sock.getsockname()[1]
        self._remote = remote
        self._latched: Address | None = None
        self._remote_ssrc: int | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._sending = True
        self._expect_media = True
        # receive state
        self._jitter_buffer = JitterBuffer(max_delay_s=jitter_delay_s)
        self._jitter = InterarrivalJitter(CLOCK_RATE)
        self._dtmf = DtmfReceiver()
        self._last_frame_bytes = CLOCK_RATE * ptime_ms // 1000 * SAMPLE_BYTES
        self._flush_timer: asyncio.TimerHandle | None = None
        self._timeout_timer: asyncio.TimerHandle | None = None
        self._last_media_at = self._loop.time()
        self._callback_tasks: set[asyncio.Task] = set()
        # send state; random initial values as RFC 3550 §5.1 asks
        self._ssrc = random.getrandbits(32)
        self._sequence = random.getrandbits(16)
        self._timestamp = random.getrandbits(32)
        self._last_sent_at: float | None = None
        self._pending_pcm = bytearray()
        # counters
        self._packets_in = self._packets_out = self._ignored = self._malformed = 0
        self._dtmf_in = self._dtmf_out = 0

    @classmethod
    async def open(cls, allocator: PortAllocator, remote: Address | None, *, local_host: str = "127.0.0.1",
                   payload_type: int = g711.PCMU_PAYLOAD_TYPE,
                   dtmf_payload_type: int | None = DEFAULT_DTMF_PAYLOAD_TYPE, ptime_ms: int = 20,
                   call_id: str = "-", settings: Settings | None = None,
                   media_timeout_s: float | None = None) -> "RtpSession":
        """Bind a port from `allocator` and start receiving.

        remote: the address from the SDP offer (c= and m=audio port); None latches on the first
        packet from anywhere. payload_type: 0 PCMU or 8 PCMA, as negotiated; dtmf_payload_type: the
        offer's telephone-event type, None if it had none. media_timeout_s defaults to settings.sip.
        """
        sip = (settings or get_settings()).sip
        sock = allocator.bind(local_host)
        port = sock.getsockname()[1]
        try:
            session = cls(sock, allocator, remote, payload_type=payload_type, dtmf_payload_type=dtmf_payload_type,
                          ptime_ms=ptime_ms, media_timeout_s=sip.media_timeout_s if media_timeout_s is None else media_timeout_s,
                          call_id=call_id)
            session._transport, _ = await session._loop.create_datagram_endpoint(lambda: _Protocol(session), sock=sock)
        except BaseException:
            sock.close()
            allocator.release(port)
            raise
        session._arm_media_timeout(session.media_timeout_s)
        return session

    # ---- public API -------------------------------------------------------------------------

    @property
    def local_port(self) -> int:
        return self._local_port

    @property
    def remote_address(self) -> Address | None:
        """Where we send: the latched source once media arrived, else the signalled address."""
        return self._latched or self._remote

    @property
    def closed(self) -> bool:
        return self._closed

    def set_remote(self, remote: Address | None) -> None:
        """New signalled address (re-INVITE): latch again on the next packet from it."""
        self._remote = remote
        self._latched = None

    def set_direction(self, direction: str) -> None:
        """Our SDP direction after a (re-)INVITE: sendrecv, sendonly, recvonly or inactive (hold).

        We only send when it includes "send", and only expect media (media timeout) when it includes "recv",
        so a caller holding the call with `inactive` is not hung up for silence.
        """
        if direction not in ("sendrecv", "sendonly", "recvonly", "inactive"):
            raise ValueError(f"unknown SDP direction {direction!r}")
        self._sending = direction in ("sendrecv", "sendonly")
        self._expect_media = direction in ("sendrecv", "recvonly")
        self._last_media_at = self._loop.time()  # a new media phase starts the silence clock again

    def send_audio(self, pcm16: bytes) -> None:
        """Queue 16-bit 8 kHz PCM; every full 20 ms frame is encoded and sent immediately."""
        if self._closed or not self._sending:
            return
        self._pending_pcm += pcm16
        frame_bytes = CLOCK_RATE * self.ptime_ms // 1000 * SAMPLE_BYTES
        while len(self._pending_pcm) >= frame_bytes:
            frame = bytes(self._pending_pcm[:frame_bytes])
            del self._pending_pcm[:frame_bytes]
            self._send_frame(self._encode(frame), frame_bytes // SAMPLE_BYTES)

    def clear_audio(self) -> None:
        """Barge-in: drop a partial frame not yet sent."""
        self._pending_pcm.clear()

    async def send_dtmf(self, key: str, duration_ms: int = 100) -> None:
        """Send one key as RFC 4733 events, one packet per ptime; raises ValueError for a non-key,
        RuntimeError when the peer did not offer telephone-event."""
        if self.dtmf_payload_type is None:
            raise RuntimeError("the peer did not negotiate telephone-event; cannot send DTMF")
        payloads = event_payloads(key, duration_ms=duration_ms, packet_ms=self.ptime_ms, clock_rate=CLOCK_RATE)
        event_timestamp = self._timestamp
        for index, payload in enumerate(payloads):
            if self._closed:
                return
            self._send(RtpPacket(self.dtmf_payload_type, self._next_sequence(), event_timestamp, self._ssrc,
                                 payload, marker=index == 0))
            await asyncio.sleep(self.ptime_ms / 1000)
        self._timestamp = (event_timestamp + CLOCK_RATE * duration_ms // 1000) & 0xFFFFFFFF
        self._dtmf_out += 1

    def stats(self) -> RtpStats:
        buffer = self._jitter_buffer.stats
        return RtpStats(
            packets_in=self._packets_in, packets_out=self._packets_out, packets_lost=buffer.lost,
            packets_late=buffer.late, packets_duplicate=buffer.duplicates, packets_ignored=self._ignored,
            packets_malformed=self._malformed, jitter_ms=round(self._jitter.milliseconds, 3),
            dtmf_in=self._dtmf_in, dtmf_out=self._dtmf_out, latched_address=self._latched,
        )

    def close(self) -> None:
        """Stop timers, close the socket, give the port back. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for timer in (self._flush_timer, self._timeout_timer):
            if timer is not None:
                timer.cancel()
        if self._transport is not None:
            self._transport.close()
        else:
            self._sock.close()
        if self._allocator is not None:
            self._allocator.release(self._local_port)

    # ---- receive path -----------------------------------------------------------------------

    def _on_datagram(self, data: bytes, source: Address) -> None:
        if self._closed:
            return
        if not self._accept_source(source):
            self._ignored += 1
            return
        try:
            packet = parse_packet(data)
        except RtpParseError:
            self._malformed += 1
            return
        now = self._loop.time()
        self._packets_in += 1
        self._last_media_at = now
        if packet.ssrc != self._remote_ssrc:
            self._start_new_stream(packet.ssrc)
        if packet.payload_type != self.dtmf_payload_type:
            self._jitter.update(packet.timestamp, now)
        self._jitter_buffer.push(packet, now)
        self._deliver_ready(now)

    def _accept_source(self, source: Address) -> bool:
        if self._latched is not None:
            return source == self._latched
        if self._remote is not None and source[0] != self._remote[0] and source[1] != self._remote[1]:
            return False
        self._latched = source
        self.log.info("RTP latched on %s:%s (signalled %s)", source[0], source[1], self._remote)
        return True

    def _start_new_stream(self, ssrc: int) -> None:
        if self._remote_ssrc is not None:
            self._deliver(self._jitter_buffer.flush())
            self._jitter_buffer.restart()
            self._jitter.reset()
        self._remote_ssrc = ssrc

    def _deliver_ready(self, now: float) -> None:
        self._deliver(self._jitter_buffer.pop_ready(now))
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        deadline = self._jitter_buffer.next_deadline()
        if deadline is not None:
            self._flush_timer = self._loop.call_at(deadline, self._on_flush_timer)

    def _on_flush_timer(self) -> None:
        self._flush_timer = None
        if not self._closed:
            self._deliver_ready(self._loop.time())

    def _deliver(self, packets: list[RtpPacket | None]) -> None:
        for packet in packets:
            if packet is None:
                self._emit_audio(bytes(self._last_frame_bytes))  # conceal a lost packet with silence
            elif packet.payload_type == self.dtmf_payload_type:
                for key in self._dtmf.feed(packet):
                    self._dtmf_in += 1
                    self._emit(self.on_dtmf, key)
            else:
                decode = g711.decoder_for(packet.payload_type)
                if decode is not None and packet.payload:  # other payload types (comfort noise) are skipped
                    pcm16 = decode(packet.payload)
                    self._last_frame_bytes = len(pcm16)
                    self._emit_audio(pcm16)

    def _emit_audio(self, pcm16: bytes) -> None:
        self._emit(self.on_audio, pcm16)

    def _emit(self, callback: Callable[[Any], None] | None, value: Any) -> None:
        if callback is None:
            return
        try:
            callback(value)
        except Exception:  # a broken consumer must not kill the media leg
            self.log.exception("RTP callback failed")

    # ---- media timeout ------------------------------------------------------------------------

    def _arm_media_timeout(self, delay_s: float) -> None:
        self._timeout_timer = self._loop.call_later(delay_s, self._check_media_timeout)

    def _check_media_timeout(self) -> None:
        self._timeout_timer = None
        if self._closed:
            return
        if not self._expect_media:  # on hold: silence is expected, look again later
            self._arm_media_timeout(self.media_timeout_s)
            return
        idle = self._loop.time() - self._last_media_at
        if idle < self.media_timeout_s:
            self._arm_media_timeout(self.media_timeout_s - idle)
            return
        self.log.info("no RTP for %.1f s", idle)
        if self.on_timeout is not None:
            result = self.on_timeout()
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._callback_tasks.add(task)
                task.add_done_callback(self._callback_tasks.discard)

    # ---- send path ----------------------------------------------------------------------------

    def _send_frame(self, payload: bytes, samples: int) -> None:
        now = self._loop.time()
        talkspurt_start = self._last_sent_at is None or now - self._last_sent_at > (
            TALKSPURT_GAP_FRAMES * self.ptime_ms / 1000)
        if talkspurt_start and self._last_sent_at is not None:
            # Timestamps follow the sampling clock, so a pause advances them (RFC 3550 §5.1).
            self._timestamp += max(0, int((now - self._last_sent_at) * CLOCK_RATE) - samples)
        self._last_sent_at = now
        packet = RtpPacket(self.payload_type, self._next_sequence(), self._timestamp & 0xFFFFFFFF, self._ssrc,
                           payload, marker=talkspurt_start)
        self._timestamp = (self._timestamp + samples) & 0xFFFFFFFF
        self._send(packet)

    def _send(self, packet: RtpPacket) -> None:
        destination = self.remote_address
        if destination is None or self._transport is None or self._closed or not self._sending:
            return
        self._transport.sendto(build_packet(packet), destination)
        self._packets_out += 1

    def _next_sequence(self) -> int:
        self._sequence = (self._sequence + 1) & 0xFFFF
        return self._sequence

