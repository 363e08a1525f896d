"""G.711 μ-law and A-law ↔ 16-bit little-endian PCM, vectorised with numpy lookup tables.

The tables are computed once at import with the segment arithmetic of ITU-T G.711 (as in the
reference Sun g711.c), so encoding and decoding a 20 ms frame is one numpy indexing operation.
Payload types per RFC 3551: PCMU = 0, PCMA = 8.
"""

from __future__ import annotations

import numpy as np

PCMU_PAYLOAD_TYPE = 0
PCMA_PAYLOAD_TYPE = 8
CODEC_PAYLOAD_TYPES = {"PCMU": PCMU_PAYLOAD_TYPE, "PCMA": PCMA_PAYLOAD_TYPE}

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # in 14-bit units, after the >>2


def _segment(magnitude: np.ndarray, segment_ends: list[int]) -> np.ndarray:
    """Index of the first segment whose upper bound is >= magnitude (8 = beyond the last)."""
    return np.searchsorted(np.array(segment_ends), magnitude, side="left")


def _build_ulaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = _segment(magnitude, [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    mantissa = (magnitude >> (segment + 1)) & 0x0F
    code = np.where(segment >= 8, 0x7F, (segment << 4) | mantissa) ^ mask
    return _indexed_by_uint16(code.astype(np.uint8))


def _build_ulaw_decode_table() -> np.ndarray:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return np.where(code & 0x80, _ULAW_BIAS - magnitude, magnitude - _ULAW_BIAS).astype("<i2")


def _build_alaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    segment = _segment(magnitude, [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    shift = np.where(segment < 2, 1, segment)
    mantissa = (magnitude >> shift) & 0x0F
    code = np.where(segment >= 8, 0x7F, (segment << 4) | mantissa) ^ mask
    return _indexed_by_uint16(code.astype(np.uint8))


def _build_alaw_decode_table() -> np.ndarray:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (code & 0x70) >> 4
    magnitude = ((code & 0x0F) << 4) + np.where(segment == 0, 8, 0x108)
    magnitude = np.where(segment > 1, magnitude << np.maximum(segment - 1, 0), magnitude)
    return np.where(code & 0x80, magnitude, -magnitude).astype("<i2")


def _indexed_by_uint16(table_from_minus_32768: np.ndarray) -> np.ndarray:
    """Reorder a table built for -32768..32767 so that it is indexed by the uint16 view of the sample."""
    return np.roll(table_from_minus_32768, -32768)


_ULAW_ENCODE = _build_ulaw_encode_table()
_ULAW_DECODE = _build_ulaw_decode_table()
_ALAW_ENCODE = _build_alaw_encode_table()
_ALAW_DECODE = _build_alaw_decode_table()


def _as_uint16_samples(pcm16: bytes) -> np.ndarray:
    if len(pcm16) % 2:
        raise ValueError(f"16-bit PCM must have an even number of bytes, got {len(pcm16)}")
    return np.frombuffer(pcm16, dtype="<u2")


def pcm16_to_ulaw(pcm16: bytes) -> bytes:
    return _ULAW_ENCODE[_as_uint16_samples(pcm16)].tobytes()


def ulaw_to_pcm16(ulaw: bytes) -> bytes:
    return _ULAW_DECODE[np.frombuffer(ulaw, dtype=np.uint8)].tobytes()


def pcm16_to_alaw(pcm16: bytes) -> bytes:
    return _ALAW_ENCODE[_as_uint16_samples(pcm16)].tobytes()


def alaw_to_pcm16(alaw: bytes) -> bytes:
    return _ALAW_DECODE[np.frombuffer(alaw, dtype=np.uint8)].tobytes()


_ENCODERS = {PCMU_PAYLOAD_TYPE: pcm16_to_ulaw, PCMA_PAYLOAD_TYPE: pcm16_to_alaw}
_DECODERS = {PCMU_PAYLOAD_TYPE: ulaw_to_pcm16, PCMA_PAYLOAD_TYPE: alaw_to_pcm16}


def encoder_for(payload_type: int):
    """The PCM16 → G.711 function for a static payload type (0 PCMU, 8 PCMA); ValueError for others."""
    if payload_type not in _ENCODERS:
        raise ValueError(f"payload type {payload_type} is not G.711 (0 PCMU or 8 PCMA)")
    return _ENCODERS[payload_type]


def decoder_for(payload_type: int):
    """The G.711 → PCM16 function for a static payload type, or None if it is not G.711."""
    return _DECODERS.get(payload_type)
