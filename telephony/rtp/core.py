"""`RtpCore`: one call's RTP leg without I/O. The caller feeds it `(datagram, source, now)` and the times
its timer fires, and gets back events (caller audio, keys, media timeout) and datagrams to send.
`telephony/rtp/session.py` is the thin asyncio adapter (UDP socket, `loop.call_at(next_deadline())`).

Receive path, per datagram:
1. Source screening (`latching.py`): before a remote is signalled nothing is accepted; before latching only
   the signalled IP; after latching only the latched address. Everything else: `packets_ignored`.
2. Parse (`packet.py`): not RTP version 2, too short, a CSRC list or header extension that runs past the
   end, bad padding: `packets_malformed`. A payload type that was not negotiated (neither the audio type
   nor telephone-event): `packets_wrong_payload_type`. Neither is ever played, and both break a NAT run.
3. Latching (`latching.py`): a valid packet from the signalled address latches at once; a new port of the
   signalled IP (or of the SIP signalling host) after `NAT_LATCH_PACKETS` consecutive valid packets of one SSRC.
4. Stream selection (`streams.py`, RFC 3550 §8.2): a packet with a new SSRC from the latched address is held
   on probation. After `MIN_SEQUENTIAL` packets of that SSRC it becomes the stream: what the jitter buffer
   still holds of the old stream is played out, the jitter buffer and the interarrival-jitter estimate
   restart, and the new stream's held packets are played first, in sequence order, so none of its first
   packets is dropped (`ssrc_changes`). A lone stray packet with a new SSRC is never played
   (`packets_unconfirmed_ssrc`) and does not disturb the current stream.
5. Jitter buffer (`jitter.py`) → G.711 decode / RFC 4733 keys → `AudioReceived` / `DtmfReceived`.

Media timeout: no packet admitted from the caller for `media_timeout_s` while we expect media (our
direction includes "recv") → one `MediaTimedOut`. Strangers' packets never keep a call alive.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from bot.call_log import call_logger
from telephony.rtp import g711
from telephony.rtp.dtmf import DEFAULT_DTMF_PAYLOAD_TYPE, DtmfReceiver
from telephony.rtp.jitter import InterarrivalJitter, JitterBuffer
from telephony.rtp.latching import NAT_LATCH_PACKETS, Address, Latch
from telephony.rtp.packet import RtpPacket, RtpParseError, parse_packet
from telephony.rtp.sender import CLOCK_RATE, OutgoingKey, RtpSender
from telephony.rtp.streams import StreamSelector

log = logging.getLogger("telephony.rtp.session")  # one logger name for the RTP leg, adapter and core alike

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
Datagram = tuple[bytes, Address]  # bytes to send and where to


@dataclass(frozen=True)
class AudioReceived:
    pcm16: bytes  # caller audio, 16-bit mono little-endian PCM at 8 kHz, one packet's worth


@dataclass(frozen=True)
class DtmfReceived:
    key: str  # one RFC 4733 key press, reported once


@dataclass(frozen=True)
class MediaTimedOut:
    idle_s: float


RtpEvent = AudioReceived | DtmfReceived | MediaTimedOut


@dataclass(frozen=True)
class RtpStats:
    """Counters for the CDR."""

    packets_in: int
    packets_out: int
    packets_lost: int
    packets_late: int
    packets_duplicate: int
    packets_ignored: int  # from a source that is not the caller (bleed, strangers, no remote yet)
    packets_malformed: int
    jitter_ms: float
    dtmf_in: int
    dtmf_out: int
    latched_address: Address | None
    packets_wrong_payload_type: int = 0  # valid RTP, but neither the negotiated audio nor telephone-event type
    packets_unconfirmed_ssrc: int = 0  # of an SSRC that is on probation or never became the stream
    ssrc_changes: int = 0


class RtpCore:
    """Sans-I/O RTP leg. Times are seconds on the caller's monotonic clock (the adapter's `loop.time()`)."""

    def __init__(self, remote: Address | None, *, now: float, payload_type: int = g711.PCMU_PAYLOAD_TYPE,
                 dtmf_payload_type: int | None = DEFAULT_DTMF_PAYLOAD_TYPE, ptime_ms: int = 20,
                 media_timeout_s: float = 30.0, jitter_delay_s: float = 0.06, call_id: str = "-",
                 nat_latch_packets: int = NAT_LATCH_PACKETS, signalling_host: str | None = None,
                 rng: random.Random | None = None) -> None:
        self.log = call_logger(log, call_id)
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self.media_timeout_s = media_timeout_s
        self._sender = RtpSender(payload_type, dtmf_payload_type, ptime_ms, rng or random.SystemRandom())
        self._latch = Latch(remote, self.log, nat_latch_packets=nat_latch_packets, signalling_host=signalling_host)
        self._streams = StreamSelector()
        self._jitter_buffer = JitterBuffer(max_delay_s=jitter_delay_s)
        self._jitter = InterarrivalJitter(CLOCK_RATE)
        self._dtmf = DtmfReceiver()
        self._sending = True
        self._expect_media = True
        self._last_media_at = now
        self._timed_out = False
        self._last_frame_bytes = self._sender.frame_bytes
        self._packets_in = self._packets_out = self._malformed = self._wrong_payload_type = 0
        self._dtmf_in = self._dtmf_out = 0

    # ---- signalling -------------------------------------------------------------------------------

    @property
    def remote_address(self) -> Address | None:
        """Where we send: the latched source once media arrived, else the signalled address."""
        return self._latch.destination

    @property
    def latched_address(self) -> Address | None:
        return self._latch.latched

    def set_remote(self, remote: Address | None) -> None:
        """New signalled address (ACK with the offer, re-INVITE); a changed one latches afresh."""
        if self._latch.set_signalled(remote):
            self._streams.reset()

    def set_direction(self, direction: str, now: float) -> None:
        """Our SDP direction: send only when it includes "send", expect media only when it includes "recv"."""
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown SDP direction {direction!r}")
        self._sending = direction in ("sendrecv", "sendonly")
        self._expect_media = direction in ("sendrecv", "recvonly")
        self._last_media_at = now  # a new media phase starts the silence clock again

    # ---- receive ------------------------------------------------------------------------------------

    def receive_datagram(self, datagram: bytes, source: Address, now: float) -> list[RtpEvent]:
        if not self._latch.screen(source):
            return []
        packet = self._parse_media(datagram)
        if packet is None:
            self._latch.break_run()
            return []
        admitted = self._latch.offer(source, packet, now)
        if admitted:
            self._last_media_at = now
        events: list[RtpEvent] = []
        for item in admitted:
            events += self._admit(*item)
        return events + self._deliver(self._jitter_buffer.pop_ready(now))

    def handle_timer(self, now: float) -> list[RtpEvent]:
        """Call at (or after) `next_deadline()`: plays what the jitter buffer gave up waiting for, and
        reports a media timeout once."""
        events = self._deliver(self._jitter_buffer.pop_ready(now))
        deadline = self._media_deadline()
        if deadline is not None and now >= deadline:
            self._timed_out = True
            idle = now - self._last_media_at
            self.log.info("no RTP for %.1f s", idle)
            events.append(MediaTimedOut(idle))
        return events

    def next_deadline(self) -> float | None:
        """The earliest time `handle_timer` has work to do, or None."""
        deadlines = [d for d in (self._jitter_buffer.next_deadline(), self._media_deadline()) if d is not None]
        return min(deadlines, default=None)

    def _media_deadline(self) -> float | None:
        if self._timed_out or not self._expect_media:
            return None
        return self._last_media_at + self.media_timeout_s

    def _parse_media(self, datagram: bytes) -> RtpPacket | None:
        try:
            packet = parse_packet(datagram)
        except RtpParseError:
            self._malformed += 1
            return None
        if packet.payload_type not in (self.payload_type, self.dtmf_payload_type):
            self._wrong_payload_type += 1
            return None
        return packet

    def _admit(self, packet: RtpPacket, arrival_s: float) -> list[RtpEvent]:
        decision = self._streams.offer(packet, arrival_s)
        events = self._restart_for_new_stream() if decision.new_stream else []
        for held in decision.packets:
            self._push(*held)
        return events

    def _restart_for_new_stream(self) -> list[RtpEvent]:
        """RFC 3550 §8.2 SSRC change: play out the old stream, then sequence the new one afresh."""
        events = self._deliver(self._jitter_buffer.flush())
        self._jitter_buffer.restart()
        self._jitter.reset()
        return events

    def _push(self, packet: RtpPacket, arrival_s: float) -> None:
        self._packets_in += 1
        if packet.payload_type != self.dtmf_payload_type:  # RFC 4733 timestamps mark events, not sampling
            self._jitter.update(packet.timestamp, arrival_s)
        self._jitter_buffer.push(packet, arrival_s)

    def _deliver(self, packets: list[RtpPacket | None]) -> list[RtpEvent]:
        events: list[RtpEvent] = []
        for packet in packets:
            if packet is None:
                events.append(AudioReceived(bytes(self._last_frame_bytes)))  # conceal a lost packet with silence
            elif packet.payload_type == self.dtmf_payload_type:
                events += self._keys(packet)
            elif packet.payload:
                pcm16 = g711.decoder_for(packet.payload_type)(packet.payload)
                self._last_frame_bytes = len(pcm16)
                events.append(AudioReceived(pcm16))
        return events

    def _keys(self, packet: RtpPacket) -> list[RtpEvent]:
        keys = self._dtmf.feed(packet)
        self._dtmf_in += len(keys)
        return [DtmfReceived(key) for key in keys]

    # ---- send ---------------------------------------------------------------------------------------

    @property
    def sending(self) -> bool:
        return self._sending

    def audio_datagrams(self, pcm16: bytes, now: float) -> list[Datagram]:
        """Bot audio in; one datagram per full 20 ms frame out (nothing while on hold)."""
        if not self._sending:
            return []
        return self._addressed(self._sender.audio_packets(pcm16, now))

    def clear_audio(self) -> None:
        self._sender.clear()

    def start_key(self, key: str, duration_ms: int) -> OutgoingKey:
        """Begin sending one key (RFC 4733); then `key_datagram(key, i)` for each i, one per ptime."""
        return self._sender.start_key(key, duration_ms)

    def key_datagram(self, key: OutgoingKey, index: int) -> Datagram | None:
        if not self._sending:
            return None
        if index == len(key.payloads) - 1:
            self._dtmf_out += 1
        addressed = self._addressed([self._sender.key_packet(key, index)])
        return addressed[0] if addressed else None

    def _addressed(self, datagrams: list[bytes]) -> list[Datagram]:
        destination = self.remote_address
        if destination is None:
            return []
        self._packets_out += len(datagrams)
        return [(datagram, destination) for datagram in datagrams]

    # ---- counters -----------------------------------------------------------------------------------

    def stats(self) -> RtpStats:
        buffer = self._jitter_buffer.stats
        return RtpStats(
            packets_in=self._packets_in, packets_out=self._packets_out, packets_lost=buffer.lost,
            packets_late=buffer.late, packets_duplicate=buffer.duplicates, packets_ignored=self._latch.ignored,
            packets_malformed=self._malformed, jitter_ms=round(self._jitter.milliseconds, 3),
            dtmf_in=self._dtmf_in, dtmf_out=self._dtmf_out, latched_address=self._latch.latched,
            packets_wrong_payload_type=self._wrong_payload_type,
            packets_unconfirmed_ssrc=self._streams.unconfirmed_packets, ssrc_changes=self._streams.changes,
        )
