"""Receive-side jitter buffer and the RFC 3550 §6.4.1 interarrival jitter estimate.

`JitterBuffer` puts packets back in sequence order (16-bit sequence numbers extended across wrap),
drops duplicates and packets that arrive after their slot was played out, and gives up on a missing
packet once the packet after it has waited `max_delay_s`: the gap is counted as lost and reported as
`None` entries so the caller can conceal it (silence of one frame each) and keep timing intact.
Sans-I/O: the caller passes arrival times and asks for what is ready at `now`.
"""

from __future__ import annotations

from dataclasses import dataclass

from telephony.rtp.packet import RtpPacket

SEQ_MOD = 1 << 16
# A jump larger than this is a restarted stream (new SSRC, re-INVITE), not loss (RFC 3550 A.1 uses 3000).
MAX_SEQUENCE_JUMP = 3000
# Longest gap concealed with silence frames; beyond it the stream just resumes.
MAX_CONCEALED_FRAMES = 10


@dataclass
class JitterBufferStats:
    received: int = 0
    duplicates: int = 0
    late: int = 0
    lost: int = 0
    restarts: int = 0


class JitterBuffer:
    """Reorders RTP packets; `push` them as they arrive, `pop_ready` what may be played now."""

    def __init__(self, max_delay_s: float = 0.06, max_packets: int = 50) -> None:
        self.max_delay_s = max_delay_s
        self.max_packets = max_packets
        self.stats = JitterBufferStats()
        self._held: dict[int, tuple[RtpPacket, float]] = {}
        self._highest: int | None = None  # highest extended sequence number seen
        self._next_out: int = 0
        self._restart_pending = False
        self._carried: list[RtpPacket | None] = []  # what the previous stream still held at a restart

    def push(self, packet: RtpPacket, arrival_s: float) -> None:
        extended = self._extend(packet.sequence)
        if extended < self._next_out:
            self.stats.late += 1
            return
        if extended in self._held:
            self.stats.duplicates += 1
            return
        self.stats.received += 1
        self._held[extended] = (packet, arrival_s)

    def pop_ready(self, now_s: float) -> list[RtpPacket | None]:
        """Packets now due, in order; each `None` stands for one lost packet to conceal."""
        ready, self._carried = self._carried, []
        while self._held:
            if self._next_out in self._held:
                ready.append(self._held.pop(self._next_out)[0])
                self._next_out += 1
                continue
            oldest = min(self._held)
            if self._held[oldest][1] + self.max_delay_s > now_s and len(self._held) <= self.max_packets:
                break
            self._give_up_until(oldest, ready)
        return ready

    def flush(self) -> list[RtpPacket | None]:
        """Everything still held, gaps included (end of call or of the stream)."""
        return self.pop_ready(float("inf"))

    def next_deadline(self) -> float | None:
        """When the oldest held packet stops waiting for the ones before it, if any are held."""
        if not self._held:
            return None
        return min(arrival for _, arrival in self._held.values()) + self.max_delay_s

    def restart(self) -> None:
        """A new stream (SSRC change): start sequencing afresh at its next packet."""
        self._carry_held_packets()
        self._restart_pending = True

    def __len__(self) -> int:
        return len(self._held)

    def _give_up_until(self, sequence: int, ready: list[RtpPacket | None]) -> None:
        missing = sequence - self._next_out
        self.stats.lost += missing
        ready.extend([None] * min(missing, MAX_CONCEALED_FRAMES))
        self._next_out = sequence

    def _carry_held_packets(self) -> None:
        self._carried.extend(packet for _, (packet, _) in sorted(self._held.items()))
        self._held.clear()

    def _extend(self, sequence: int) -> int:
        """Extend a 16-bit sequence number relative to the highest one seen (handles wrap-around)."""
        if self._highest is None or self._restart_pending:
            self._restart_pending = False
            return self._start_at(sequence)
        delta = (sequence - self._highest + SEQ_MOD // 2) % SEQ_MOD - SEQ_MOD // 2
        if abs(delta) > MAX_SEQUENCE_JUMP:
            self.stats.restarts += 1
            self._carry_held_packets()
            return self._start_at(sequence)
        extended = self._highest + delta
        self._highest = max(self._highest, extended)
        return extended

    def _start_at(self, sequence: int) -> int:
        # Keep extended numbers increasing across restarts so "late" stays meaningful.
        base = 0 if self._highest is None else (self._highest // SEQ_MOD + 2) * SEQ_MOD
        self._highest = base + sequence
        self._next_out = self._highest
        return self._highest


class InterarrivalJitter:
    """RFC 3550 §6.4.1: J += (|D(i-1,i)| - J) / 16, with D in timestamp units."""

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self._jitter = 0.0
        self._last_transit: float | None = None

    def update(self, rtp_timestamp: int, arrival_s: float) -> None:
        transit = arrival_s * self.clock_rate - rtp_timestamp
        if self._last_transit is not None:
            # RTP timestamps wrap at 2**32; fold the difference back into a signed 32-bit range.
            difference = abs((transit - self._last_transit + 2**31) % 2**32 - 2**31)
            self._jitter += (difference - self._jitter) / 16
        self._last_transit = transit

    def reset(self) -> None:
        self._last_transit = None

    @property
    def timestamp_units(self) -> float:
        return self._jitter

    @property
    def milliseconds(self) -> float:
        return 1000.0 * self._jitter / self.clock_rate
