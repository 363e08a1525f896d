"""RTP fixed header (RFC 3550 §5.1): parse a datagram into an `RtpPacket`, build one back.

Only what a G.711 voice call needs: version 2, CSRC list and header extension skipped over,
padding removed. Anything malformed raises `RtpParseError` so the socket layer can drop it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
HEADER_SIZE = 12
_HEADER = struct.Struct("!BBHII")


class RtpParseError(ValueError):
    """The datagram is not a well-formed RTP version 2 packet."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()

    def serialise(self) -> bytes:
        """The datagram (no padding, no extension)."""
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type {self.payload_type} out of range 0..127")
        if len(self.csrcs) > 15:
            raise ValueError("at most 15 CSRCs fit in an RTP header")
        first = (RTP_VERSION << 6) | len(self.csrcs)
        second = (0x80 if self.marker else 0) | self.payload_type
        header = _HEADER.pack(first, second, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc)
        return header + struct.pack(f"!{len(self.csrcs)}I", *self.csrcs) + self.payload


def parse_packet(data: bytes) -> RtpPacket:
    """Parse one RTP datagram; raises RtpParseError on anything that is not valid RTP v2."""
    if len(data) < HEADER_SIZE:
        raise RtpParseError(f"datagram of {len(data)} bytes is shorter than the RTP header")
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise RtpParseError(f"RTP version {first >> 6}, expected 2")
    has_padding, has_extension, csrc_count = bool(first & 0x20), bool(first & 0x10), first & 0x0F
    offset = HEADER_SIZE + 4 * csrc_count
    if len(data) < offset:
        raise RtpParseError("CSRC list runs past the end of the datagram")
    csrcs = struct.unpack_from(f"!{csrc_count}I", data, HEADER_SIZE)
    if has_extension:
        offset = _skip_extension(data, offset)
    end = len(data) - _padding_length(data, offset) if has_padding else len(data)
    return RtpPacket(
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=bytes(data[offset:end]),
        marker=bool(second & 0x80),
        csrcs=csrcs,
    )


def _skip_extension(data: bytes, offset: int) -> int:
    if len(data) < offset + 4:
        raise RtpParseError("header extension runs past the end of the datagram")
    (words,) = struct.unpack_from("!H", data, offset + 2)
    offset += 4 + 4 * words
    if len(data) < offset:
        raise RtpParseError("header extension runs past the end of the datagram")
    return offset


def _padding_length(data: bytes, payload_offset: int) -> int:
    padding = data[-1]
    if padding == 0 or payload_offset + padding > len(data):
        raise RtpParseError(f"invalid padding length {padding}")
    return padding
