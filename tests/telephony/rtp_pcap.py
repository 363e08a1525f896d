"""Writes a libpcap file of one G.711 RTP stream (Ethernet/IPv4/UDP/RTP), for sipp's play_pcap_audio.

sipp ships only an A-law capture; the PCMU tests generate their own from a tone, encoded by telephony.rtp.g711.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from telephony.rtp.g711 import pcm16_to_ulaw

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
FRAME_SAMPLES = 160  # 20 ms at 8 kHz


def tone_pcm16(seconds: float, frequency: float = 440.0, amplitude: int = 8000) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype("<i2").tobytes()


def write_pcmu_pcap(path: Path, pcm16: bytes, src_port: int = 5000, dst_port: int = 6000) -> int:
    """One 20 ms PCMU packet per frame of `pcm16`; returns the packet count."""
    payload = pcm16_to_ulaw(pcm16)
    frames = [payload[i:i + FRAME_SAMPLES] for i in range(0, len(payload) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
        for index, frame in enumerate(frames):
            rtp = struct.pack("!BBHII", 0x80, 0x80 if index == 0 else 0x00, index, index * FRAME_SAMPLES, 0x1234) + frame
            udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(rtp), 0) + rtp
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), index, 0, 64, 17, 0,
                             bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
            packet = b"\x00" * 12 + b"\x08\x00" + ip
            microseconds = index * 20_000
            out.write(struct.pack("<IIII", microseconds // 1_000_000, microseconds % 1_000_000, len(packet), len(packet)))
            out.write(packet)
    return len(frames)
