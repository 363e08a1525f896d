"""RFC 3550 header parsing and building, on hand-made packets and on a real capture."""

import struct

import pytest

from telephony.rtp.packet import RtpPacket, RtpParseError, parse_packet


def test_build_then_parse_round_trips_every_field():
    packet = RtpPacket(payload_type=8, sequence=65535, timestamp=0xFFFFFFFF, ssrc=0x12345678,
                       payload=b"\xd5" * 160, marker=True, csrcs=(1, 2))
    assert parse_packet(packet.serialise()) == packet


def test_parses_the_first_packet_of_sipps_g711a_capture(pcap_payloads):
    first = parse_packet(pcap_payloads("g711a.pcap")[0])
    assert (first.payload_type, first.sequence, first.timestamp, first.ssrc, first.marker) == (
        8, 59133, 240, 0xDEE0EE8F, True)
    assert len(first.payload) == 240  # 30 ms of A-law at 8 kHz


def test_every_packet_of_the_capture_parses_in_sequence(pcap_payloads):
    packets = [parse_packet(datagram) for datagram in pcap_payloads("g711a.pcap")]
    assert len(packets) == 236
    assert all(b.sequence == (a.sequence + 1) & 0xFFFF for a, b in zip(packets, packets[1:]))


def test_padding_and_header_extension_are_stripped_from_the_payload():
    header = bytes([0x80 | 0x20 | 0x10, 0]) + struct.pack("!HII", 7, 160, 99)
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\x00" * 4
    datagram = header + extension + b"abc" + b"\x00\x00\x03"
    assert parse_packet(datagram).payload == b"abc"


@pytest.mark.parametrize("datagram, reason", [
    (b"", "shorter"),
    (b"\x80" * 11, "shorter"),
    (bytes([0x40, 0]) + bytes(10), "version"),
    (bytes([0x8F, 0]) + bytes(10), "CSRC"),
    (bytes([0x90, 0]) + bytes(10) + b"\x00\x00\x00\x09", "extension"),
    (bytes([0xA0, 0]) + bytes(10) + b"\x00", "padding"),
    (bytes([0xA0, 0]) + bytes(10) + b"\x40", "padding"),
])
def test_malformed_datagrams_raise_a_parse_error(datagram, reason):
    with pytest.raises(RtpParseError, match=reason):
        parse_packet(datagram)


def test_build_rejects_an_out_of_range_payload_type():
    with pytest.raises(ValueError):
        RtpPacket(payload_type=128, sequence=0, timestamp=0, ssrc=0, payload=b"").serialise()
