"""Shared helpers for the RTP tests: a tiny pcap reader (Ethernet/IPv4/UDP only) and UDP peers."""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Callable, Iterator

import pytest

SIPP_PCAPS = Path("/usr/share/sip-tester")
_PCAP_MAGIC_LE = 0xA1B2C3D4
_LINKTYPE_ETHERNET = 1


def udp_payloads(path: Path) -> list[bytes]:
    """UDP payloads of every IPv4/UDP packet in a classic little- or big-endian pcap file."""
    data = path.read_bytes()
    (magic,) = struct.unpack_from("<I", data)
    endian = "<" if magic == _PCAP_MAGIC_LE else ">"
    _, _, _, _, _, linktype = struct.unpack_from(endian + "HHiIII", data, 4)
    assert linktype == _LINKTYPE_ETHERNET, f"{path.name}: unsupported link type {linktype}"
    payloads, offset = [], 24
    while offset + 16 <= len(data):
        _, _, captured, _ = struct.unpack_from(endian + "IIII", data, offset)
        frame = data[offset + 16: offset + 16 + captured]
        offset += 16 + captured
        payload = _udp_payload_of_ethernet_frame(frame)
        if payload is not None:
            payloads.append(payload)
    return payloads


def _udp_payload_of_ethernet_frame(frame: bytes) -> bytes | None:
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    ip_start = 14
    if ethertype == 0x8100:  # 802.1Q tag
        (ethertype,) = struct.unpack_from("!H", frame, 16)
        ip_start = 18
    if ethertype != 0x0800 or frame[ip_start + 9] != 17:
        return None
    udp_start = ip_start + (frame[ip_start] & 0x0F) * 4
    (udp_length,) = struct.unpack_from("!H", frame, udp_start + 4)
    return frame[udp_start + 8: udp_start + udp_length]


@pytest.fixture
def pcap_payloads() -> Callable[[str], list[bytes]]:
    def read(name: str) -> list[bytes]:
        path = SIPP_PCAPS / name
        if not path.exists():
            pytest.skip(f"{path} missing (apt-get install sip-tester)")
        return udp_payloads(path)
    return read


@pytest.fixture
def udp_peer() -> Iterator[Callable[..., socket.socket]]:
    """Factory for plain UDP sockets on loopback (any 127.x address), closed after the test."""
    sockets: list[socket.socket] = []

    def make(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, port))
        sock.settimeout(2.0)
        sockets.append(sock)
        return sock

    yield make
    for sock in sockets:
        sock.close()
