"""Which SSRC is the caller's stream: candidate streams on probation and RFC 3550 §8.2 SSRC changes.

A *candidate stream* is a run of packets of one SSRC whose sequence numbers are distinct and close to
the first one's. It is how both probations in this package decide that packets are a real stream and not
one stray datagram: the NAT latch (`latching.py`, a new port of the signalled IP) and an SSRC change on the
latched address (`StreamSelector` here). Held packets are returned in sequence order once the candidate is
confirmed, so a stream's first packets are never dropped, even when they arrived out of order.

SSRC change (decided for issue 13): the first SSRC heard from the latched address is the stream at once.
Another SSRC becomes the stream only after `MIN_SEQUENTIAL` of its packets (RFC 3550 A.1 uses 2) arrived
as a candidate; meanwhile the current stream keeps playing, and the candidate's packets are held, not
dropped. One RTP-shaped stray datagram with a new SSRC is therefore never heard, and a genuine change costs
one packet time of delay and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from telephony.rtp.packet import RtpPacket

SEQ_MOD = 1 << 16
# RFC 3550 A.1: packets of a new source needed before it is trusted.
MIN_SEQUENTIAL = 2
# How far (in sequence numbers) a candidate's packets may lie from its first one: reordering, a little loss.
CANDIDATE_SEQUENCE_WINDOW = 16

Arrival = tuple[RtpPacket, float]  # a packet and when it arrived (seconds, the caller's clock)


def sequence_delta(sequence: int, reference: int) -> int:
    """Signed distance from `reference` to `sequence` on the 16-bit sequence circle."""
    return (sequence - reference + SEQ_MOD // 2) % SEQ_MOD - SEQ_MOD // 2


class CandidateStream:
    """Packets of one SSRC on probation. `offer` packets; `take` them, in sequence order, once trusted."""

    def __init__(self) -> None:
        self._held: list[Arrival] = []

    def __len__(self) -> int:
        return len(self._held)

    @property
    def ssrc(self) -> int | None:
        return self._held[0][0].ssrc if self._held else None

    def offer(self, packet: RtpPacket, arrival_s: float) -> int:
        """Add `packet`; a packet that does not belong starts a new candidate. Returns how many held packets
        were discarded by that (0 when it extended the candidate or was a duplicate, which is not held)."""
        if self._belongs(packet):
            if not self._is_duplicate(packet):
                self._held.append((packet, arrival_s))
            return 0
        discarded = self.discard()
        self._held.append((packet, arrival_s))
        return discarded

    def take(self) -> list[Arrival]:
        """The held packets in sequence order; the candidate is empty afterwards."""
        first = self._held[0][0].sequence if self._held else 0
        held = sorted(self._held, key=lambda item: sequence_delta(item[0].sequence, first))
        self._held = []
        return held

    def discard(self) -> int:
        discarded, self._held = len(self._held), []
        return discarded

    def _belongs(self, packet: RtpPacket) -> bool:
        if not self._held:
            return False
        first = self._held[0][0]
        return packet.ssrc == first.ssrc and abs(sequence_delta(packet.sequence, first.sequence)) <= (
            CANDIDATE_SEQUENCE_WINDOW)

    def _is_duplicate(self, packet: RtpPacket) -> bool:
        return any(held.sequence == packet.sequence for held, _ in self._held)


@dataclass
class StreamDecision:
    """What `StreamSelector.offer` decided: packets to play now, and whether they start a new stream."""

    packets: list[Arrival] = field(default_factory=list)
    new_stream: bool = False  # the jitter buffer must flush the old stream and restart before these


class StreamSelector:
    """Tracks the caller's current SSRC on the latched address and decides SSRC changes (RFC 3550 §8.2)."""

    def __init__(self, min_sequential: int = MIN_SEQUENTIAL) -> None:
        self.min_sequential = min_sequential
        self.current_ssrc: int | None = None
        self.changes = 0
        self._candidate = CandidateStream()
        self._unconfirmed = 0  # packets of SSRCs that are held on probation or were never confirmed

    @property
    def unconfirmed_packets(self) -> int:
        return self._unconfirmed

    def offer(self, packet: RtpPacket, arrival_s: float) -> StreamDecision:
        if self.current_ssrc is None:
            self.current_ssrc = packet.ssrc
            return StreamDecision([(packet, arrival_s)], new_stream=True)
        if packet.ssrc == self.current_ssrc:
            return StreamDecision([(packet, arrival_s)])
        return self._probation(packet, arrival_s)

    def reset(self) -> None:
        """A new latch (re-INVITE to another address): the next packet's SSRC is the stream at once."""
        self.current_ssrc = None
        self._candidate.discard()

    def _probation(self, packet: RtpPacket, arrival_s: float) -> StreamDecision:
        self._candidate.offer(packet, arrival_s)
        self._unconfirmed += 1  # until the candidate is confirmed, and for good if it never is
        if len(self._candidate) < self.min_sequential:
            return StreamDecision()
        self.current_ssrc = self._candidate.ssrc
        self.changes += 1
        packets = self._candidate.take()
        self._unconfirmed -= len(packets)
        return StreamDecision(packets, new_stream=True)
