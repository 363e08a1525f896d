"""A stranger spraying the media port of a live call (issue 7 §5): before and after latching, with valid RTP
and with garbage, from another IP or another port, it never receives the call's audio and its packets are never
played as the caller's. The sans-I/O core is driven packet by packet with stepped time; one test does the same
over real UDP sockets on loopback.

The one documented limit (telephony/rtp/latching.py): a stranger on the caller's own public IP that sends
NAT_LATCH_PACKETS valid packets before the caller's first packet holds the latch until that first packet.
"""

import asyncio
import random
import socket
import struct
import zlib

import pytest

from telephony.rtp import g711
from telephony.rtp.core import AudioReceived, RtpCore
from telephony.rtp.dtmf import event_payloads
from telephony.rtp.latching import NAT_LATCH_PACKETS
from telephony.rtp.packet import RtpPacket
from telephony.rtp.ports import PortAllocator
from telephony.rtp.session import RtpSession

CALLER = ("192.0.2.10", 40000)
STRANGERS = {
    "other_ip_signalled_port": ("198.51.100.7", CALLER[1]),
    "other_ip_other_port": ("198.51.100.7", 6000),
    "same_ip_other_port": (CALLER[0], CALLER[1] + 2),
}
CALLER_SSRC, STRANGER_SSRC = 0x0CA11E4, 0x0BAD0001
CALLER_BYTE, STRANGER_BYTE = 0x70, 0x00  # μ-law: a quiet caller, a loud stranger
FRAME = 320


def caller_packet(sequence: int) -> bytes:
    return RtpPacket(0, sequence, sequence * 160, CALLER_SSRC, bytes([CALLER_BYTE]) * 160).serialise()


def stranger_datagrams(kind: str, rng: random.Random) -> list[bytes]:
    """One burst of what a stranger sprays; every kind also carries its own sequence numbers."""
    sequence = rng.randrange(1 << 16)
    loud = bytes([STRANGER_BYTE]) * 160
    if kind == "valid_audio":
        return [RtpPacket(0, (sequence + i) & 0xFFFF, i * 160, STRANGER_SSRC, loud).serialise() for i in range(3)]
    if kind == "valid_dtmf":
        return [RtpPacket(101, (sequence + i) & 0xFFFF, 8000, STRANGER_SSRC, p).serialise()
                for i, p in enumerate(event_payloads("9"))]
    if kind == "caller_ssrc":  # a forgery of the caller's SSRC and next sequence numbers
        first = sequence % 50
        return [RtpPacket(0, i, i * 160, CALLER_SSRC, loud).serialise() for i in range(first, first + 3)]
    if kind == "garbage":
        return [b"", b"\x80" * 5, b"\x8f" + b"\x00" * 15, struct.pack("!BBHII", 0x90, 0, 1, 1, 1) + b"\xbe\xde\x00\xff",
                rng.randbytes(200), RtpPacket(18, sequence, 0, STRANGER_SSRC, loud).serialise()]
    raise ValueError(kind)


def heard_from_stranger(events) -> int:
    stranger_pcm = g711.ulaw_to_pcm16(bytes([STRANGER_BYTE]) * 160)
    return sum(1 for e in events if isinstance(e, AudioReceived) and e.pcm16 == stranger_pcm)


def live_call(core: RtpCore, stranger: tuple[str, int], kind: str, *, head_start: int, seconds: float = 1.0):
    """The stranger first sends `head_start` datagrams (the greeting is already going out), then the call runs:
    each 20 ms the caller sends a packet, the bot a frame, and the stranger a burst.
    Returns (every destination we sent to, every event, caller packets sent)."""
    rng = random.Random(zlib.crc32(repr((kind, stranger, head_start)).encode()))  # stable across runs
    destinations, events, now = [], [], 0.0
    sprayed = 0
    while sprayed < head_start:
        for datagram in stranger_datagrams(kind, rng)[:head_start - sprayed]:
            events += core.receive_datagram(datagram, stranger, now)
            sprayed += 1
        destinations += [to for _, to in core.audio_datagrams(bytes(FRAME), now)]
        now += 0.02
    ticks = int(seconds / 0.02)
    for tick in range(1, ticks + 1):
        events += core.receive_datagram(caller_packet(tick), CALLER, now)
        for datagram in stranger_datagrams(kind, rng):
            events += core.receive_datagram(datagram, stranger, now)
        destinations += [to for _, to in core.audio_datagrams(bytes(FRAME), now)]
        deadline = core.next_deadline()
        if deadline is not None and deadline <= now:
            events += core.handle_timer(now)
        now += 0.02
    return destinations, events, ticks


def new_core(remote=CALLER) -> RtpCore:
    return RtpCore(remote, now=0.0, rng=random.Random(1), media_timeout_s=30.0)


@pytest.mark.parametrize("kind", ["valid_audio", "valid_dtmf", "caller_ssrc", "garbage"])
@pytest.mark.parametrize("stranger_name", sorted(STRANGERS))
@pytest.mark.parametrize("phase", ["before_latching", "after_latching"])
def test_a_stranger_spraying_a_live_call_gets_no_audio_and_is_never_heard(phase, stranger_name, kind):
    stranger = STRANGERS[stranger_name]
    # Before latching: from another IP, any head start; from the caller's IP, up to one packet short of a NAT latch.
    head_start = 0 if phase == "after_latching" else (200 if stranger[0] != CALLER[0] else NAT_LATCH_PACKETS - 1)
    core = new_core()
    destinations, events, caller_packets = live_call(core, stranger, kind, head_start=head_start)
    assert set(destinations) == {CALLER}
    assert heard_from_stranger(events) == 0
    assert sum(isinstance(e, AudioReceived) for e in events) == caller_packets  # the caller lost nothing
    stats = core.stats()
    assert core.latched_address == CALLER and stats.packets_in == caller_packets and stats.dtmf_in == 0
    assert stats.packets_ignored > 0


@pytest.mark.parametrize("stranger_name", sorted(STRANGERS))
def test_before_the_acks_sdp_nothing_latches_and_nothing_is_sent(stranger_name):
    """INVITE without SDP: remote unknown. Whoever sprays the port, even from the address the ACK will later
    signal, latches nothing and receives nothing; after set_remote the caller latches as usual."""
    core = new_core(remote=None)
    rng = random.Random(3)
    for step in range(40):
        for source in (STRANGERS[stranger_name], CALLER):
            for datagram in stranger_datagrams("valid_audio", rng):
                assert core.receive_datagram(datagram, source, step * 0.02) == []
        assert core.audio_datagrams(bytes(FRAME), step * 0.02) == []
    assert core.latched_address is None and core.remote_address is None and core.stats().packets_in == 0
    core.set_remote(CALLER)
    destinations, events, caller_packets = live_call(core, STRANGERS[stranger_name], "valid_audio", head_start=0)
    assert set(destinations) == {CALLER} and heard_from_stranger(events) == 0


def test_another_ip_never_latches_however_long_it_sprays_even_on_the_signalled_port():
    core = new_core()
    stranger = STRANGERS["other_ip_signalled_port"]
    for sequence in range(1000):
        packet = RtpPacket(0, sequence, sequence * 160, STRANGER_SSRC, b"\x00" * 160).serialise()
        assert core.receive_datagram(packet, stranger, sequence * 0.02) == []
    assert core.latched_address is None and core.remote_address == CALLER
    assert core.stats().packets_ignored == 1000


def test_a_private_sdp_address_widens_the_latch_to_the_sip_host_only():
    """A phone behind NAT writes c=192.168.1.10; the SIP layer passes the INVITE's source IP. Strangers on any
    other IP still never latch, and one on the SIP host needs the full consecutive run."""
    private, sip_host = ("192.168.1.10", 5004), "203.0.113.5"
    core = RtpCore(private, now=0.0, rng=random.Random(1), signalling_host=sip_host)
    for stranger in (("198.51.100.7", 5004), ("10.0.0.1", 5004), ("203.0.113.6", 5004)):
        for sequence in range(200):
            packet = RtpPacket(0, sequence, sequence * 160, STRANGER_SSRC, b"\x00" * 160).serialise()
            assert core.receive_datagram(packet, stranger, sequence * 0.02) == []
    assert core.latched_address is None and core.stats().packets_ignored == 600


def test_the_documented_race_a_same_ip_stranger_first_loses_the_latch_at_the_callers_first_packet():
    core = new_core()
    stranger = STRANGERS["same_ip_other_port"]
    for sequence in range(NAT_LATCH_PACKETS):  # the stranger wins the NAT latch before the caller speaks
        core.receive_datagram(RtpPacket(0, sequence, 0, STRANGER_SSRC, b"\x00" * 160).serialise(), stranger, 0.0)
    assert core.latched_address == stranger
    destinations, events, caller_packets = live_call(core, stranger, "valid_audio", head_start=0)
    assert core.latched_address == CALLER and set(destinations) == {CALLER}
    assert heard_from_stranger(events) == 0


def test_a_stranger_cannot_break_a_nat_latch_of_the_caller_once_made():
    """The caller is behind NAT (its media comes from another port than signalled) and latches; a stranger on
    the same IP then sprays from yet another port, and one from another IP forges the signalled port."""
    nat_port = (CALLER[0], 45678)
    core = new_core()
    for sequence in range(1, NAT_LATCH_PACKETS + 1):
        core.receive_datagram(caller_packet(sequence), nat_port, sequence * 0.02)
    assert core.latched_address == nat_port
    rng = random.Random(5)
    for step in range(100):
        for stranger in (STRANGERS["same_ip_other_port"], STRANGERS["other_ip_signalled_port"]):
            for datagram in stranger_datagrams("valid_audio", rng):
                assert heard_from_stranger(core.receive_datagram(datagram, stranger, 0.2 + step * 0.02)) == 0
    assert core.latched_address == nat_port and {to for _, to in core.audio_datagrams(bytes(FRAME), 3.0)} == {nat_port}


# ---- the same over real UDP -------------------------------------------------------------------------------

def udp_socket(host: str, port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


async def until(condition, timeout_s: float = 10.0) -> None:
    """Wait for a condition the session reaches by itself; the generous timeout only bounds a broken run."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def nothing_received(sock: socket.socket) -> bool:
    try:
        sock.recv(2048)
    except BlockingIOError:
        return True
    return False


async def test_strangers_spraying_a_real_sessions_port_receive_nothing_over_udp():
    caller = udp_socket("127.0.0.1")
    other_ip = udp_socket("127.0.0.9", caller.getsockname()[1])  # another IP, the signalled port
    same_ip = udp_socket("127.0.0.1")  # the caller's IP, another port
    sockets = (caller, other_ip, same_ip)
    low = 20000 + (caller.getsockname()[1] % 20000) // 2 * 2
    session = await RtpSession.open(PortAllocator(low, low + 199), caller.getsockname(), media_timeout_s=30)
    heard: list[bytes] = []
    session.on_audio = heard.append
    target = ("127.0.0.1", session.local_port)
    rng = random.Random(11)
    loop = asyncio.get_running_loop()
    try:
        for kind in ("valid_audio", "valid_dtmf", "garbage"):  # before latching
            for datagram in stranger_datagrams(kind, rng):
                other_ip.sendto(datagram, target)
        for datagram in stranger_datagrams("valid_audio", rng)[:NAT_LATCH_PACKETS - 1]:  # under the NAT count
            same_ip.sendto(datagram, target)
        session.send_audio(bytes(FRAME))  # to the signalled address: the caller
        for sequence in range(1, 11):
            caller.sendto(caller_packet(sequence), target)
            for kind in ("valid_audio", "valid_dtmf", "garbage"):
                for datagram in stranger_datagrams(kind, rng):
                    other_ip.sendto(datagram, target)
                    same_ip.sendto(datagram, target)
            session.send_audio(bytes(FRAME))
            await until(lambda: session.stats().packets_in >= sequence)  # keep the socket buffer from overflowing
        for _ in range(11):
            await asyncio.wait_for(loop.sock_recv(caller, 2048), 10)  # every frame reached the caller
        await until(lambda: len(heard) >= 10)
        caller_pcm = g711.ulaw_to_pcm16(bytes([CALLER_BYTE]) * 160)
        assert heard == [caller_pcm] * 10
        assert nothing_received(other_ip) and nothing_received(same_ip)
        assert session.stats().latched_address == caller.getsockname() and session.stats().packets_ignored > 0
    finally:
        session.close()
        for sock in sockets:
            sock.close()
