"""Send side of an RTP leg, sans-I/O: PCM in, RTP datagrams out (G.711 frames and RFC 4733 key trains).

The caller paces audio (the voice loop delivers bot audio in real time) and passes `now`, from which a pause
longer than `TALKSPURT_GAP_FRAMES` frames starts a new talkspurt: marker bit, timestamp advanced by the
pause (RFC 3550 §5.1). SSRC, first sequence number and first timestamp are random (RFC 3550 §5.1).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from telephony.rtp import g711
from telephony.rtp.dtmf import event_payloads
from telephony.rtp.packet import RtpPacket

CLOCK_RATE = 8000
SAMPLE_BYTES = 2
# A pause in outgoing audio longer than this starts a new talkspurt (marker bit, timestamp jump).
TALKSPURT_GAP_FRAMES = 3


@dataclass(frozen=True)
class OutgoingKey:
    """One key press being sent: its RFC 4733 payloads share `timestamp`; the first carries the marker."""

    payloads: tuple[bytes, ...]
    timestamp: int


class RtpSender:
    def __init__(self, payload_type: int, dtmf_payload_type: int | None, ptime_ms: int,
                 rng: random.Random) -> None:
        self.payload_type = payload_type
        self._encode = g711.encoder_for(payload_type)  # ValueError early for a non-G.711 payload type
        self.dtmf_payload_type = dtmf_payload_type
        self.ptime_ms = ptime_ms
        self.frame_bytes = CLOCK_RATE * ptime_ms // 1000 * SAMPLE_BYTES
        self.ssrc = rng.getrandbits(32)
        self._sequence = rng.getrandbits(16)
        self._timestamp = rng.getrandbits(32)
        self._last_sent_at: float | None = None
        self._pending_pcm = bytearray()

    def audio_packets(self, pcm16: bytes, now: float) -> list[bytes]:
        """Queue 16-bit 8 kHz PCM; every full frame comes back as one datagram, a partial frame waits."""
        self._pending_pcm += pcm16
        datagrams = []
        while len(self._pending_pcm) >= self.frame_bytes:
            frame = bytes(self._pending_pcm[:self.frame_bytes])
            del self._pending_pcm[:self.frame_bytes]
            datagrams.append(self._audio_packet(self._encode(frame), self.frame_bytes // SAMPLE_BYTES, now))
        return datagrams

    def clear(self) -> None:
        """Barge-in: drop a partial frame not yet sent."""
        self._pending_pcm.clear()

    def start_key(self, key: str, duration_ms: int) -> OutgoingKey:
        """Reserve the RTP timestamp span of one key press; RuntimeError without telephone-event,
        ValueError for a non-key."""
        if self.dtmf_payload_type is None:
            raise RuntimeError("the peer did not negotiate telephone-event; cannot send DTMF")
        payloads = event_payloads(key, duration_ms=duration_ms, packet_ms=self.ptime_ms, clock_rate=CLOCK_RATE)
        event = OutgoingKey(tuple(payloads), self._timestamp & 0xFFFFFFFF)
        self._timestamp = (self._timestamp + CLOCK_RATE * duration_ms // 1000) & 0xFFFFFFFF
        return event

    def key_packet(self, key: OutgoingKey, index: int) -> bytes:
        assert self.dtmf_payload_type is not None  # start_key checked it
        return RtpPacket(self.dtmf_payload_type, self._next_sequence(), key.timestamp, self.ssrc,
                         key.payloads[index], marker=index == 0).serialise()

    def _audio_packet(self, payload: bytes, samples: int, now: float) -> bytes:
        talkspurt_start = self._last_sent_at is None or now - self._last_sent_at > (
            TALKSPURT_GAP_FRAMES * self.ptime_ms / 1000)
        if talkspurt_start and self._last_sent_at is not None:
            # Timestamps follow the sampling clock, so a pause advances them (RFC 3550 §5.1).
            self._timestamp += max(0, int((now - self._last_sent_at) * CLOCK_RATE) - samples)
        self._last_sent_at = now
        packet = RtpPacket(self.payload_type, self._next_sequence(), self._timestamp & 0xFFFFFFFF, self.ssrc,
                           payload, marker=talkspurt_start)
        self._timestamp = (self._timestamp + samples) & 0xFFFFFFFF
        return packet.serialise()

    def _next_sequence(self) -> int:
        self._sequence = (self._sequence + 1) & 0xFFFF
        return self._sequence
