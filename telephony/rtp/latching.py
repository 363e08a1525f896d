"""Symmetric RTP latching (RFC 4961, RFC 7362): which source address is the caller, and where we send.

Rules (issue 7 §5), applied only to packets that are already known to be valid RTP with a negotiated
payload type (the caller of `offer` checks that; anything else goes to `break_run`):

- No signalled address yet (an INVITE without SDP): nothing latches and every packet is ignored, until
  `set_signalled` gives the address from the ACK's SDP.
- A packet from exactly the signalled address (IP and port) latches at once.
- Behind NAT the port may be rewritten: a new port of the signalled IP latches only after
  `NAT_LATCH_PACKETS` consecutive valid packets of one SSRC from it (a candidate stream, `streams.py`).
  Any other packet from a NAT-eligible IP in between (another port, another SSRC, garbage) starts the
  count again. The run's packets are held and played once it latches, so the caller loses no audio.
- The signalling host (the IP the call's SIP requests came from, if the SIP layer passes it) is NAT-eligible
  the same way. It covers the commonest NAT case: a phone that writes its private address in SDP
  (c=192.168.1.10) while its media arrives from its public one, the same address as its INVITE.
- Any other IP never latches: strangers elsewhere on the Internet cannot take the call's media.
- Once latched, packets from every other source are ignored (counted), with one exception: when the latch
  went to a NAT port, a valid packet from the exact signalled address moves the latch there. The signalled
  address is what the caller's own signalling said; it wins over a port guessed from traffic.

Limit: a stranger sharing the caller's public IP (the same NAT) who sends `NAT_LATCH_PACKETS` valid packets
to the media port before the caller's first packet takes the latch until the caller's first packet from the
signalled address arrives. Random port allocation (`ports.py`) makes that port hard to hit.
"""

from __future__ import annotations

import ipaddress
import logging

from telephony.rtp.packet import RtpPacket
from telephony.rtp.streams import Arrival, CandidateStream

# Consecutive valid packets of one SSRC from a new port of the signalled IP before we latch there.
NAT_LATCH_PACKETS = 5

Address = tuple[str, int]


def normalised_address(address: Address) -> Address:
    """The host in the textual form sockets report (IPv6 compressed), so SDP and socket addresses compare."""
    host, port = address
    try:
        host = ipaddress.ip_address(host).compressed
    except ValueError:
        pass  # a name: compared as written; it will simply never match a socket address
    return (host, port)


class Latch:
    """Decides which datagram sources are the caller. Sans-I/O; counts what it ignores."""

    def __init__(self, signalled: Address | None, log: logging.LoggerAdapter | logging.Logger, *,
                 nat_latch_packets: int = NAT_LATCH_PACKETS, signalling_host: str | None = None) -> None:
        self.log = log
        self.nat_latch_packets = nat_latch_packets
        self._signalling_host = normalised_address((signalling_host, 0))[0] if signalling_host else None
        self.ignored = 0  # from a source that is not (yet) the caller
        self._signalled = normalised_address(signalled) if signalled is not None else None
        self._latched: Address | None = None
        self._latched_via_nat = False
        self._run = CandidateStream()
        self._run_source: Address | None = None

    @property
    def signalled(self) -> Address | None:
        return self._signalled

    @property
    def latched(self) -> Address | None:
        return self._latched

    @property
    def destination(self) -> Address | None:
        """Where media goes: the latched source, else the signalled address, else nowhere."""
        return self._latched or self._signalled

    def set_signalled(self, remote: Address | None) -> bool:
        """A new SDP address (ACK with the offer, re-INVITE). The same address keeps the latch (a session
        refresh must not drop a NAT latch); another one latches afresh. Returns True if the latch was reset."""
        remote = normalised_address(remote) if remote is not None else None
        if remote == self._signalled:
            return False
        self._signalled = remote
        self._latched = None
        self._latched_via_nat = False
        self._drop_run()
        return True

    def screen(self, source: Address) -> bool:
        """Cheap check before parsing: may this source be the caller? Counts the ones that may not."""
        if self._may_be_caller(source):
            return True
        if self.ignored == 0:  # once per call: a stranger's flood must not flood the log too
            self.log.info("RTP from %s:%s ignored (signalled %s, latched %s)", source[0], source[1],
                          self._signalled, self._latched)
        self.ignored += 1
        return False

    def offer(self, source: Address, packet: RtpPacket, arrival_s: float) -> list[Arrival]:
        """A valid packet from a screened source; returns the packets now admitted as the caller's (the
        packet itself, a whole NAT run on latching, or nothing while a NAT run is on probation)."""
        if source == self._latched:
            return [(packet, arrival_s)]
        if source == self._signalled:
            self._latch(source, via_nat=False)
            return [(packet, arrival_s)]
        return self._extend_run(source, packet, arrival_s)

    def break_run(self) -> None:
        """An invalid packet (garbage, unnegotiated payload type) from a screened source: a NAT run must be
        consecutive valid packets, so it starts again."""
        self._drop_run()

    def _may_be_caller(self, source: Address) -> bool:
        if self._latched is not None:
            return source == self._latched or (self._latched_via_nat and source == self._signalled)
        return self._signalled is not None and source[0] in (self._signalled[0], self._signalling_host)

    def _extend_run(self, source: Address, packet: RtpPacket, arrival_s: float) -> list[Arrival]:
        if source != self._run_source:
            self._drop_run()
            self._run_source = source
        self._run.offer(packet, arrival_s)  # another SSRC or a far sequence number starts the run again
        self.ignored += 1  # held packets count as ignored unless the run latches
        if len(self._run) < self.nat_latch_packets:
            return []
        admitted = self._run.take()
        self.ignored -= len(admitted)
        self._latch(source, via_nat=True)
        return admitted

    def _drop_run(self) -> None:
        self._run.discard()
        self._run_source = None

    def _latch(self, source: Address, *, via_nat: bool) -> None:
        self._latched, self._latched_via_nat = source, via_nat
        self._drop_run()
        self.log.info("RTP latched on %s:%s (signalled %s:%s%s)", source[0], source[1], *self._signalled,
                      ", NAT port" if via_nat else "")
