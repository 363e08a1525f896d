"""RFC 4733 telephone-events (DTMF over RTP): parse and build the 4-byte payload, report each key
once, and produce the packet train for sending a key.

An event is identified by its RTP timestamp, which stays the same for all its packets. The end
packet is sent three times (§2.5.1.4), so the receiver reports a key on its first end packet and
ignores the repeats; a key whose end packets were all lost is reported when the next event starts.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from call_contract import DTMF_KEYS
from telephony.rtp.packet import RtpPacket

# RFC 4733 §3.2 numbers the keys: event code n is EVENT_KEYS[n]. The order is the RFC's; the keys are the call
# contract's DTMF_KEYS, which tests/test_call_contract.py checks this table covers exactly.
EVENT_KEYS = "0123456789*#ABCD"
DEFAULT_DTMF_PAYLOAD_TYPE = 101
END_PACKET_REPEATS = 3
_EVENT = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    event: int
    end: bool
    volume: int  # attenuation in dBm0, 0..63
    duration: int  # in timestamp units

    @property
    def key(self) -> str | None:
        return key_for_event_code(self.event)

    def serialise(self) -> bytes:
        """The 4-byte RFC 4733 payload."""
        flags = (0x80 if self.end else 0) | (self.volume & 0x3F)
        return _EVENT.pack(self.event, flags, min(self.duration, 0xFFFF))


def parse_event(payload: bytes) -> TelephoneEvent:
    if len(payload) < _EVENT.size:
        raise ValueError(f"telephone-event payload of {len(payload)} bytes, need 4")
    event, flags, duration = _EVENT.unpack_from(payload)
    return TelephoneEvent(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)


def key_to_event_code(key: str) -> int:
    if key.upper() not in DTMF_KEYS:
        raise ValueError(f"{key!r} is not a DTMF key (0-9 * # A-D)")
    return EVENT_KEYS.index(key.upper())


def key_for_event_code(code: int) -> str | None:
    """The key of an event code; None for the codes that are not keys (flash, tones: 16 and up)."""
    return EVENT_KEYS[code] if 0 <= code < len(EVENT_KEYS) else None


class DtmfReceiver:
    """Turns telephone-event packets into keys, each reported exactly once."""

    def __init__(self, remembered_events: int = 32) -> None:
        self._reported: deque[tuple[int, int]] = deque(maxlen=remembered_events)
        self._pending: tuple[tuple[int, int], str] | None = None  # started, no end packet yet

    def feed(self, packet: RtpPacket) -> list[str]:
        """Keys completed by this packet (usually none or one); malformed payloads are ignored."""
        try:
            event = parse_event(packet.payload)
        except ValueError:
            return []
        if event.key is None:
            return []
        identity = (packet.ssrc, packet.timestamp)
        keys = self._report_pending_if_superseded(identity)
        if identity in self._reported:
            return keys
        if event.end:
            self._pending = None
            keys.append(self._report(identity, event.key))
        else:
            self._pending = (identity, event.key)
        return keys

    def _report_pending_if_superseded(self, identity: tuple[int, int]) -> list[str]:
        if self._pending is None or self._pending[0] == identity:
            return []
        (previous, key), self._pending = self._pending, None
        return [self._report(previous, key)]

    def _report(self, identity: tuple[int, int], key: str) -> str:
        self._reported.append(identity)
        return key


def event_payloads(key: str, duration_ms: int = 100, packet_ms: int = 20, clock_rate: int = 8000,
                   volume: int = 10) -> list[bytes]:
    """The payloads of one key press: a start packet, continuations every `packet_ms`, then the
    end packet three times. All of them share one RTP timestamp; the first carries the marker bit."""
    code = key_to_event_code(key)
    step = clock_rate * packet_ms // 1000
    total = max(step, clock_rate * duration_ms // 1000)
    durations = list(range(step, total, step)) + [total]
    payloads = [TelephoneEvent(code, False, volume, d).serialise() for d in durations[:-1]]
    end = TelephoneEvent(code, True, volume, durations[-1]).serialise()
    return payloads + [end] * END_PACKET_REPEATS
