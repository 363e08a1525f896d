"""RTP port allocation: one even UDP port per call from a configured range (the odd neighbour is left for
RTCP, RFC 3550 §11), chosen at random (issue 7 §5).

Random, not sequential: a stranger who learns one call's port must not be able to guess the next call's
(RTP bleed / injection sprays the likely ports), and a just-released port is unlikely to be handed out again
at once (stale packets of the last call would land in the next one; latching ignores them anyway).
The default generator is the operating system's (`random.SystemRandom`); tests pass a seeded one.

`PortAllocator.bind()` returns a bound, non-blocking socket; the session that owns it calls
`release(port)` when it closes. Ports taken by other programs are skipped.
"""

from __future__ import annotations

import errno
import random
import socket
from typing import Iterator

from settings import Settings, get_settings

# Random draws tried before falling back to a shuffled scan of every free port (a nearly full range).
RANDOM_PROBES = 16


class NoFreePortError(RuntimeError):
    """Every even port of the RTP range is in use."""


class PortAllocator:
    def __init__(self, port_min: int, port_max: int, *, rng: random.Random | None = None) -> None:
        first = port_min + (port_min % 2)
        if not 0 < first <= port_max <= 65535:
            raise ValueError(f"RTP port range {port_min}..{port_max} holds no even port")
        self._ports = range(first, port_max + 1, 2)
        self._rng = rng or random.SystemRandom()
        self._in_use: set[int] = set()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> "PortAllocator":
        sip = (settings or get_settings()).sip
        return cls(sip.rtp_port_min, sip.rtp_port_max)

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._in_use)

    @property
    def capacity(self) -> int:
        return len(self._ports)

    def bind(self, host: str = "127.0.0.1") -> socket.socket:
        """A UDP socket bound to a random free even port on `host`; raises NoFreePortError."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for port in self._candidates():
            sock = _try_bind(family, host, port)
            if sock is not None:
                self._in_use.add(port)
                return sock
        raise NoFreePortError(f"no free even RTP port in {self._ports.start}..{self._ports.stop - 1}")

    def release(self, port: int) -> None:
        self._in_use.discard(port)

    def _candidates(self) -> Iterator[int]:
        """Random ports not in use: a few cheap draws, then every remaining port in random order."""
        tried: set[int] = set()
        for _ in range(min(RANDOM_PROBES, len(self._ports))):
            port = self._rng.choice(self._ports)
            if port not in self._in_use and port not in tried:
                tried.add(port)
                yield port
        rest = [port for port in self._ports if port not in self._in_use and port not in tried]
        self._rng.shuffle(rest)
        yield from rest


def _try_bind(family: int, host: str, port: int) -> socket.socket | None:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            return None
        raise
    sock.setblocking(False)
    return sock
