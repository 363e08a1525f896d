"""G.711 against the ITU reference values and, bit for bit, against Python's stdlib audioop."""

import warnings

import numpy as np
import pytest

from telephony.rtp import g711
from telephony.rtp.packet import parse_packet

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # deprecated, still in 3.11: an independent reference implementation

ALL_SAMPLES = np.arange(-32768, 32768, dtype="<i2")
ALL_CODES = bytes(range(256))


def samples(pcm16: bytes) -> np.ndarray:
    return np.frombuffer(pcm16, dtype="<i2").astype(np.int64)


@pytest.mark.parametrize("code, value", [(0xFF, 0), (0x7F, 0), (0x80, 32124), (0x00, -32124), (0xF0, 120)])
def test_ulaw_reference_values(code, value):
    assert samples(g711.ulaw_to_pcm16(bytes([code])))[0] == value


@pytest.mark.parametrize("code, value", [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256)])
def test_alaw_reference_values(code, value):
    assert samples(g711.alaw_to_pcm16(bytes([code])))[0] == value


def test_silence_encodes_to_the_idle_codes():
    assert g711.pcm16_to_ulaw(bytes(4)) == b"\xff\xff"
    assert g711.pcm16_to_alaw(bytes(4)) == b"\xd5\xd5"


def test_encoders_match_audioop_for_every_16_bit_sample():
    pcm = ALL_SAMPLES.tobytes()
    assert g711.pcm16_to_ulaw(pcm) == audioop.lin2ulaw(pcm, 2)
    assert g711.pcm16_to_alaw(pcm) == audioop.lin2alaw(pcm, 2)


def test_decoders_match_audioop_for_every_code():
    assert g711.ulaw_to_pcm16(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert g711.alaw_to_pcm16(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)


@pytest.mark.parametrize("encode, decode, relative, absolute", [
    (g711.pcm16_to_ulaw, g711.ulaw_to_pcm16, 1 / 16, 8),
    (g711.pcm16_to_alaw, g711.alaw_to_pcm16, 1 / 32, 8),
])
def test_round_trip_error_stays_within_half_a_quantisation_step(encode, decode, relative, absolute):
    in_range = ALL_SAMPLES[np.abs(ALL_SAMPLES.astype(np.int64)) <= 32000]
    error = np.abs(samples(decode(encode(in_range.tobytes()))) - in_range.astype(np.int64))
    assert np.all(error <= np.abs(in_range.astype(np.int64)) * relative + absolute)


def test_decoding_every_code_then_encoding_gives_the_code_back():
    assert g711.pcm16_to_alaw(g711.alaw_to_pcm16(ALL_CODES)) == ALL_CODES
    # μ-law has two zeros (0x7F and 0xFF); both decode to 0, which encodes to 0xFF
    assert g711.pcm16_to_ulaw(g711.ulaw_to_pcm16(ALL_CODES)) == ALL_CODES.replace(b"\x7f", b"\xff")


def test_odd_byte_count_is_rejected():
    with pytest.raises(ValueError, match="even"):
        g711.pcm16_to_ulaw(b"\x00\x01\x02")


def test_real_alaw_capture_decodes_to_speech_level_audio(pcap_payloads):
    payload = b"".join(parse_packet(d).payload for d in pcap_payloads("g711a.pcap"))
    pcm = samples(g711.alaw_to_pcm16(payload))
    assert len(pcm) == len(payload)
    assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 300  # far above the idle codes' ±8


def test_codec_lookup_by_payload_type():
    assert g711.encoder_for(0) is g711.pcm16_to_ulaw and g711.decoder_for(8) is g711.alaw_to_pcm16
    assert g711.decoder_for(13) is None  # comfort noise is not G.711
    with pytest.raises(ValueError, match="not G.711"):
        g711.encoder_for(18)
