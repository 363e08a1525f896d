"""RtpSession, the asyncio adapter over RtpCore, over real UDP sockets on loopback: audio and DTMF both ways,
latching, garbage (issue 13, class by class), the jitter and media-timeout timers, and no leaked ports or file
descriptors. The receive logic itself is tested with stepped time in test_rtp_core.py; strangers in
tests/security/test_rtp_latching.py. Waits are for conditions the session reaches by itself, never fixed sleeps
that assume an idle machine."""

import asyncio
import contextlib
import os
import struct
from typing import AsyncIterator

import numpy as np
import pytest

from telephony.rtp import g711
from telephony.rtp.dtmf import DtmfReceiver
from telephony.rtp.latching import NAT_LATCH_PACKETS
from telephony.rtp.packet import RtpPacket, parse_packet
from telephony.rtp.ports import PortAllocator
from telephony.rtp.session import RtpSession

FRAME = 320  # bytes of 20 ms 16-bit PCM at 8 kHz


@pytest.fixture
def allocator(udp_peer) -> PortAllocator:
    probe = udp_peer()
    low = probe.getsockname()[1] & ~1
    probe.close()
    low = min(low, 65000)
    return PortAllocator(low, low + 99)


async def open_session(allocator, remote, **kwargs) -> RtpSession:
    return await RtpSession.open(allocator, remote, media_timeout_s=kwargs.pop("media_timeout_s", 30.0), **kwargs)


@contextlib.asynccontextmanager
async def rtp_session(allocator, remote, **kwargs) -> AsyncIterator[RtpSession]:
    """An open session, closed when the block ends however it ends (no port or socket outlives a test)."""
    session = await open_session(allocator, remote, **kwargs)
    try:
        yield session
    finally:
        session.close()


def tone(n_frames: int, amplitude: int = 8000) -> bytes:
    t = np.arange(n_frames * FRAME // 2)
    return (amplitude * np.sin(2 * np.pi * 440 * t / 8000)).astype("<i2").tobytes()


def rtp_datagram(sequence: int, payload: bytes = b"\xff" * 160, payload_type: int = 0, ssrc: int = 7) -> bytes:
    return RtpPacket(payload_type, sequence, sequence * 160, ssrc, payload).serialise()


async def receive(sock, count: int) -> list[RtpPacket]:
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    return [parse_packet(await asyncio.wait_for(loop.sock_recv(sock, 2048), 10)) for _ in range(count)]


async def until(condition, timeout: float = 10.0) -> None:
    """Poll for a condition; the timeout only bounds a broken run (it is generous for a loaded machine)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_two_sessions_exchange_audio_and_dtmf(allocator):
    a = await open_session(allocator, None, payload_type=g711.PCMA_PAYLOAD_TYPE)
    b = await open_session(allocator, ("127.0.0.1", a.local_port), payload_type=g711.PCMA_PAYLOAD_TYPE)
    a.set_remote(("127.0.0.1", b.local_port))
    heard, keys = bytearray(), []
    a.on_audio = heard.extend
    a.on_dtmf = keys.append
    try:
        sent = tone(5)
        for i in range(5):
            b.send_audio(sent[i * FRAME:(i + 1) * FRAME])
            await asyncio.sleep(0.02)
        await b.send_dtmf("5")
        await until(lambda: keys == ["5"] and len(heard) == len(sent))
        assert bytes(heard) == g711.alaw_to_pcm16(g711.pcm16_to_alaw(sent))
        assert a.stats().packets_in == 5 + 7 and b.stats().packets_out == 12 and b.stats().dtmf_out == 1
        assert a.stats().dtmf_in == 1 and a.stats().packets_lost == 0
    finally:
        a.close()
        b.close()


async def test_outgoing_packets_are_20ms_frames_with_a_marked_first_packet(allocator, udp_peer):
    peer = udp_peer()
    async with rtp_session(allocator, peer.getsockname()) as session:
        session.send_audio(tone(3)[:FRAME * 2 + 100])  # the partial third frame waits for more audio
        first, second = await receive(peer, 2)
        assert (first.marker, second.marker) == (True, False)
        assert len(first.payload) == 160 and second.timestamp == (first.timestamp + 160) & 0xFFFFFFFF
        assert second.sequence == (first.sequence + 1) & 0xFFFF and first.ssrc == second.ssrc
        session.clear_audio()  # barge-in drops the partial frame
        session.send_audio(bytes(FRAME - 100))  # sending is synchronous: nothing more went out
        assert session.stats().packets_out == 2


async def test_sent_dtmf_is_read_back_as_one_key_by_an_independent_receiver(allocator, udp_peer):
    peer = udp_peer()
    async with rtp_session(allocator, peer.getsockname()) as session:
        await session.send_dtmf("#", duration_ms=60)
        packets = await receive(peer, 5)  # start, continuation, end x3
        assert packets[0].marker and {p.timestamp for p in packets} == {packets[0].timestamp}
        assert {p.payload_type for p in packets} == {101}
        receiver = DtmfReceiver()
        assert [k for p in packets for k in receiver.feed(p)] == ["#"]


async def test_latches_on_a_nat_rewritten_port_after_consecutive_packets_and_replies_there(allocator, udp_peer):
    signalled = udp_peer()
    behind_nat = udp_peer()  # same IP, different port: a NAT rewrote the source port
    async with rtp_session(allocator, signalled.getsockname()) as session:
        heard = []
        session.on_audio = heard.append
        for sequence in range(1, NAT_LATCH_PACKETS + 1):
            behind_nat.sendto(rtp_datagram(sequence), ("127.0.0.1", session.local_port))
        await until(lambda: len(heard) == NAT_LATCH_PACKETS)  # the probation packets were held, not dropped
        assert session.remote_address == behind_nat.getsockname()
        session.send_audio(bytes(FRAME))
        (packet,) = await receive(behind_nat, 1)
        assert packet.payload == b"\xff" * 160


async def test_without_a_signalled_remote_nothing_latches_until_set_remote(allocator, udp_peer):
    """INVITE without SDP: the session accepts and sends nothing until the ACK's SDP gives the address."""
    phone = udp_peer()
    async with rtp_session(allocator, None) as session:
        heard = []
        session.on_audio = heard.append
        for sequence in range(1, 2 * NAT_LATCH_PACKETS):
            phone.sendto(rtp_datagram(sequence), ("127.0.0.1", session.local_port))
        await until(lambda: session.stats().packets_ignored == 2 * NAT_LATCH_PACKETS - 1)
        session.send_audio(bytes(FRAME))
        assert heard == [] and session.remote_address is None and session.stats().packets_out == 0
        session.set_remote(phone.getsockname())
        phone.sendto(rtp_datagram(20), ("127.0.0.1", session.local_port))
        await until(lambda: len(heard) == 1)
        session.send_audio(bytes(FRAME))
        (packet,) = await receive(phone, 1)
        assert session.stats().latched_address == phone.getsockname() and len(packet.payload) == 160


async def test_packets_from_other_sources_are_ignored(allocator, udp_peer):
    caller = udp_peer()
    stranger_before = udp_peer("127.0.0.9")  # matches neither the signalled address nor port
    stranger_after = udp_peer()  # matches the signalled IP, but arrives after latching
    async with rtp_session(allocator, caller.getsockname()) as session:
        heard = []
        session.on_audio = heard.append
        stranger_before.sendto(rtp_datagram(1, b"\x00" * 160), ("127.0.0.1", session.local_port))
        caller.sendto(rtp_datagram(2), ("127.0.0.1", session.local_port))
        await until(lambda: session.stats().packets_in == 1)
        stranger_after.sendto(rtp_datagram(3, b"\x00" * 160), ("127.0.0.1", session.local_port))
        await until(lambda: session.stats().packets_ignored == 2)
        assert session.remote_address == caller.getsockname()
        assert heard == [bytes(FRAME)]  # only the caller's silence, never the strangers' loud audio


def _header(first_byte: int, payload_type: int = 0, sequence: int = 50, ssrc: int = 7) -> bytes:
    return struct.pack("!BBHII", first_byte, payload_type, sequence, sequence * 160, ssrc)


# Issue 13: each garbage class from the caller's own, latched address, with the counter it must land in.
GARBAGE = {
    "empty": (b"", "packets_malformed"),
    "too_short": (_header(0x80)[:11], "packets_malformed"),
    "wrong_version": (_header(0x40) + b"\x00" * 160, "packets_malformed"),
    "csrc_count_overrun": (_header(0x8F) + b"\x00" * 8, "packets_malformed"),
    "extension_overrun": (_header(0x90) + struct.pack("!HH", 0xBEDE, 200) + b"\x00" * 16, "packets_malformed"),
    "unnegotiated_payload_type": (rtp_datagram(2, b"\x00" * 160, payload_type=18), "packets_wrong_payload_type"),
    "negotiated_type_new_ssrc": (rtp_datagram(2, b"\x00" * 160, ssrc=0xBAD), "packets_unconfirmed_ssrc"),
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
async def test_each_garbage_class_is_counted_and_never_heard(allocator, udp_peer, name):
    datagram, counter = GARBAGE[name]
    caller = udp_peer()
    async with rtp_session(allocator, caller.getsockname()) as session:
        heard = []
        session.on_audio = heard.append
        for sequence_or_garbage in (rtp_datagram(1), datagram, rtp_datagram(2)):
            caller.sendto(sequence_or_garbage, ("127.0.0.1", session.local_port))
        await until(lambda: len(heard) >= 2)  # loopback keeps one socket's datagrams in order
        assert heard == [bytes(FRAME)] * 2  # the caller's two silent frames; the loud garbage never
        stats = session.stats()
        assert getattr(stats, counter) == 1 and stats.packets_in == 2 and stats.packets_lost == 0


async def test_reordered_and_lost_packets_are_resequenced_and_concealed(allocator, udp_peer):
    caller = udp_peer()
    async with rtp_session(allocator, caller.getsockname()) as session:
        heard = []
        session.on_audio = heard.append
        payloads = {s: g711.pcm16_to_ulaw(np.full(160, s * 100, dtype="<i2").tobytes()) for s in range(1, 6)}
        for sequence in (1, 3, 2, 5):  # 4 never arrives
            caller.sendto(rtp_datagram(sequence, payloads[sequence]), ("127.0.0.1", session.local_port))
        await until(lambda: len(heard) == 5)
        levels = [int(np.frombuffer(pcm, "<i2")[0]) for pcm in heard]
        assert levels[3] == 0 and [round(level, -2) for level in levels[:3]] == [100, 200, 300]
        assert session.stats().packets_lost == 1


async def test_no_media_fires_the_timeout_callback_once(allocator, udp_peer):
    """The adapter's timer (loop.call_at at the core's deadline) reaches on_timeout; the deadline arithmetic
    itself is tested with stepped time in test_rtp_core.py."""
    caller = udp_peer()
    # before the session opens: its media timer starts there (a shuffled run under load once saw the timeout
    # 0.0993 s after a start taken after the open)
    started = asyncio.get_running_loop().time()
    session = await open_session(allocator, caller.getsockname(), media_timeout_s=0.1)
    timeouts = []

    async def on_timeout():
        timeouts.append(asyncio.get_running_loop().time())

    session.on_timeout = on_timeout
    try:
        await until(lambda: timeouts)
        await asyncio.sleep(0.25)  # can only hide a second call, never invent one
        assert len(timeouts) == 1 and timeouts[0] - started >= 0.1
    finally:
        session.close()


async def test_close_releases_the_port_and_the_socket(allocator):
    fds_before = len(os.listdir("/proc/self/fd"))
    tasks_before = len(asyncio.all_tasks())
    sessions = [await open_session(allocator, ("127.0.0.1", 9)) for _ in range(20)]
    assert len(allocator.in_use) == 20
    for session in sessions:
        session.close()
        session.close()  # idempotent
    await asyncio.sleep(0.01)
    assert allocator.in_use == frozenset()
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert len(asyncio.all_tasks()) == tasks_before


async def test_a_failing_consumer_does_not_stop_the_media_leg(allocator, udp_peer):
    caller = udp_peer()
    async with rtp_session(allocator, caller.getsockname()) as session:
        calls = []

        def broken(pcm16):
            calls.append(pcm16)
            raise RuntimeError("consumer bug")

        session.on_audio = broken
        for sequence in (1, 2):
            caller.sendto(rtp_datagram(sequence), ("127.0.0.1", session.local_port))
        await until(lambda: len(calls) == 2)


async def test_replaying_sipps_alaw_capture_delivers_all_of_its_audio(allocator, udp_peer, pcap_payloads):
    caller = udp_peer()
    async with rtp_session(allocator, caller.getsockname(), payload_type=g711.PCMA_PAYLOAD_TYPE) as session:
        heard = bytearray()
        session.on_audio = heard.extend
        datagrams = pcap_payloads("g711a.pcap")
        for i, datagram in enumerate(datagrams):
            caller.sendto(datagram, ("127.0.0.1", session.local_port))
            if i % 20 == 0:
                await asyncio.sleep(0.005)
        await until(lambda: len(heard) == 236 * 240 * 2)
        stats = session.stats()
        assert stats.packets_in == 236 and stats.packets_lost == 0
        assert np.abs(np.frombuffer(bytes(heard), "<i2")).max() > 1000


async def test_on_hold_nothing_is_sent_and_silence_does_not_time_out(allocator, udp_peer):
    phone = udp_peer()
    async with rtp_session(allocator, phone.getsockname(), media_timeout_s=0.15) as session:
        timeouts = []
        session.on_timeout = lambda: timeouts.append(1)
        session.set_direction("inactive")  # the caller put us on hold (re-INVITE a=inactive)
        session.send_audio(bytes(FRAME))
        await asyncio.sleep(0.4)
        assert timeouts == [] and session.stats().packets_out == 0
        session.set_direction("sendrecv")  # unhold: the silence clock starts again
        session.send_audio(bytes(FRAME))
        await receive(phone, 1)
        await until(lambda: timeouts == [1])
    with pytest.raises(ValueError):
        session.set_direction("sideways")


async def test_without_a_negotiated_telephone_event_dtmf_cannot_be_sent(allocator):
    async with rtp_session(allocator, ("127.0.0.1", 9), dtmf_payload_type=None) as session:
        with pytest.raises(RuntimeError, match="telephone-event"):
            await session.send_dtmf("1")


async def test_a_non_g711_codec_is_refused_without_leaking_the_port(allocator):
    with pytest.raises(ValueError, match="not G.711"):
        await open_session(allocator, ("127.0.0.1", 9), payload_type=18)
    assert allocator.in_use == frozenset()
