"""RtpCore, the sans-I/O RTP leg: time is stepped, nothing sleeps, no socket is opened.

Covers the receive path's garbage classes (issue 13, each with its stated outcome), SSRC changes on the latched
address (RFC 3550 §8.2), the jitter-buffer timer, the media timeout, hold, the send side, and a seeded fuzz run.
Latching against strangers is in tests/security/test_rtp_latching.py.
"""

import random
import struct

import numpy as np
import pytest

from telephony.rtp import g711
from telephony.rtp.core import AudioReceived, DtmfReceived, MediaTimedOut, RtpCore
from telephony.rtp.dtmf import event_payloads
from telephony.rtp.latching import NAT_LATCH_PACKETS
from telephony.rtp.packet import RtpPacket, parse_packet

CALLER = ("192.0.2.10", 40000)
OTHER = ("198.51.100.7", 5004)
PT_PCMU, PT_DTMF = 0, 101
SSRC = 0x5EED0001
FRAME = 320  # bytes of 20 ms 16-bit PCM at 8 kHz


TAGS = 120  # each packet's payload is one μ-law byte derived from its sequence number, so we can tell them apart


def tag_payload(sequence: int) -> bytes:
    return bytes([sequence % TAGS + 1]) * 160  # μ-law bytes 1..120: distinct, loud, never silence


_SEQUENCE_OF_LEVEL = {int(np.frombuffer(g711.ulaw_to_pcm16(tag_payload(s)), "<i2")[0]): s for s in range(TAGS)}


def rtp(sequence: int, *, ssrc: int = SSRC, payload_type: int = PT_PCMU, payload: bytes | None = None,
        timestamp: int | None = None) -> bytes:
    body = tag_payload(sequence) if payload is None else payload
    stamp = sequence * 160 if timestamp is None else timestamp
    return RtpPacket(payload_type, sequence & 0xFFFF, stamp & 0xFFFFFFFF, ssrc, body).serialise()


def levels(events) -> list[int | None]:
    """Which packet each played audio frame came from (its sequence number mod TAGS); None: concealed loss."""
    played = []
    for event in events:
        if isinstance(event, AudioReceived):
            level = int(np.frombuffer(event.pcm16, "<i2")[0])
            played.append(None if level == 0 else _SEQUENCE_OF_LEVEL[level])
    return played


def new_core(remote=CALLER, **kwargs) -> RtpCore:
    return RtpCore(remote, now=0.0, rng=random.Random(7), media_timeout_s=kwargs.pop("media_timeout_s", 30.0),
                   **kwargs)


def latched_core(**kwargs) -> tuple[RtpCore, list]:
    """A core latched on CALLER by packet 1 (heard at t=0)."""
    core = new_core(**kwargs)
    events = core.receive_datagram(rtp(1), CALLER, 0.0)
    assert levels(events) == [1] and core.latched_address == CALLER
    return core, events


# ---- issue 13: garbage from the caller's own address, class by class ------------------------------------

def header(first_byte: int, payload_type: int = PT_PCMU, sequence: int = 50, ssrc: int = SSRC) -> bytes:
    return struct.pack("!BBHII", first_byte, payload_type, sequence, sequence * 160, ssrc)


GARBAGE_CLASSES = {
    "empty": (b"", "packets_malformed"),
    "too_short": (header(0x80)[:11], "packets_malformed"),
    "wrong_version_1": (header(0x40) + b"\xff" * 160, "packets_malformed"),
    "wrong_version_0": (b"\x00" * 172, "packets_malformed"),
    "csrc_count_overrun": (header(0x8F) + b"\x00" * 8, "packets_malformed"),  # 15 CSRCs announced, 2 present
    "extension_overrun": (header(0x90) + struct.pack("!HH", 0xBEDE, 200) + b"\x00" * 16, "packets_malformed"),
    "extension_header_cut": (header(0x90) + b"\xbe", "packets_malformed"),
    "padding_overrun": (header(0xA0) + b"\xff" * 10 + bytes([200]), "packets_malformed"),
    "unnegotiated_payload_type": (rtp(2, payload_type=18), "packets_wrong_payload_type"),  # G.729
    "comfort_noise_not_negotiated": (rtp(2, payload_type=13, payload=b"\x40"), "packets_wrong_payload_type"),
    "negotiated_type_new_ssrc": (rtp(2, ssrc=0xBAD55C), "packets_unconfirmed_ssrc"),
}


@pytest.mark.parametrize("name", sorted(GARBAGE_CLASSES))
def test_each_garbage_class_is_counted_never_played_and_leaves_the_stream_intact(name):
    datagram, counter = GARBAGE_CLASSES[name]
    core, _ = latched_core()
    assert core.receive_datagram(datagram, CALLER, 0.01) == []
    events = core.receive_datagram(rtp(2), CALLER, 0.02)
    assert levels(events) == [2], "the caller's next packet plays at once, nothing else was heard"
    stats = core.stats()
    assert getattr(stats, counter) == 1
    counters = ("packets_malformed", "packets_wrong_payload_type", "packets_unconfirmed_ssrc", "packets_ignored")
    assert all(getattr(stats, other) == 0 for other in counters if other != counter)
    assert (stats.packets_in, stats.packets_lost, stats.ssrc_changes) == (2, 0, 0)
    assert core.latched_address == CALLER and core.next_deadline() == pytest.approx(0.02 + 30.0)


def test_garbage_does_not_keep_a_dead_call_alive():
    core, _ = latched_core(media_timeout_s=5.0)
    for step in range(1, 10):
        core.receive_datagram(GARBAGE_CLASSES["csrc_count_overrun"][0], CALLER, step * 0.5)
        core.receive_datagram(GARBAGE_CLASSES["unnegotiated_payload_type"][0], CALLER, step * 0.5)
    assert core.next_deadline() == 5.0
    assert core.handle_timer(5.0) == [MediaTimedOut(5.0)]


def test_a_lone_new_ssrc_packet_is_forgotten_when_another_stray_ssrc_comes():
    core, _ = latched_core()
    for sequence, stray in ((2, 0xAAAA), (3, 0xBBBB), (4, 0xCCCC)):
        core.receive_datagram(rtp(sequence + 1000, ssrc=stray), CALLER, 0.001 * sequence)
    events = [e for s in (2, 3, 4) for e in core.receive_datagram(rtp(s), CALLER, 0.02 * s)]
    assert levels(events) == [2, 3, 4]
    assert core.stats().packets_unconfirmed_ssrc == 3 and core.stats().ssrc_changes == 0


# ---- RFC 3550 §8.2: a new SSRC from the latched address ---------------------------------------------------

def test_a_new_ssrc_becomes_the_stream_after_two_packets_and_none_of_its_packets_is_lost():
    core, _ = latched_core()
    heard = core.receive_datagram(rtp(2), CALLER, 0.02)
    first = core.receive_datagram(rtp(40, ssrc=0xD1FF), CALLER, 0.04)  # a new stream, far away in sequence
    assert first == []  # on probation: held, not dropped
    heard += first + core.receive_datagram(rtp(41, ssrc=0xD1FF), CALLER, 0.06)
    heard += core.receive_datagram(rtp(42, ssrc=0xD1FF), CALLER, 0.08)
    assert levels(heard) == [2, 40, 41, 42]
    stats = core.stats()
    assert (stats.ssrc_changes, stats.packets_lost, stats.packets_late, stats.packets_unconfirmed_ssrc) == (1, 0, 0, 0)
    assert stats.packets_in == 5


def test_a_new_stream_whose_first_packets_arrive_out_of_order_still_plays_all_of_them_in_order():
    core, _ = latched_core()
    heard = []
    for sequence in (61, 60, 62, 63):  # 61 overtook 60 on the way
        heard += core.receive_datagram(rtp(sequence, ssrc=0xD1FF), CALLER, 0.02 + 0.001 * sequence)
    assert levels(heard) == [60, 61, 62, 63]
    assert core.stats().packets_late == 0 and core.stats().packets_lost == 0


def test_the_old_streams_held_packets_play_out_before_the_new_stream():
    core, _ = latched_core()
    assert core.receive_datagram(rtp(3), CALLER, 0.02) == []  # 2 is missing: 3 waits for it
    heard = core.receive_datagram(rtp(7, ssrc=0xD1FF), CALLER, 0.03)
    heard += core.receive_datagram(rtp(8, ssrc=0xD1FF), CALLER, 0.04)
    assert levels(heard) == [None, 3, 7, 8]  # 2 concealed with silence, 3, then the new stream
    assert core.next_deadline() == pytest.approx(0.04 + 30.0)  # nothing left waiting in the jitter buffer


def test_a_new_stream_with_lower_sequence_numbers_is_not_mistaken_for_late_packets():
    core = new_core()
    heard = [e for s in (30000, 30001) for e in core.receive_datagram(rtp(s), CALLER, 0.0)]
    heard += [e for s in (5, 6, 7) for e in core.receive_datagram(rtp(s, ssrc=0xD1FF), CALLER, 0.1)]
    assert levels(heard) == [30000 % TAGS, 30001 % TAGS, 5, 6, 7] and core.stats().packets_late == 0


def test_the_jitter_estimate_restarts_with_the_new_stream():
    core = new_core()
    for sequence in range(1, 30):  # perfectly paced
        core.receive_datagram(rtp(sequence), CALLER, 0.02 * sequence)
    for sequence in range(30, 60):  # new SSRC, unrelated timestamp base, still perfectly paced
        core.receive_datagram(rtp(sequence, ssrc=0xD1FF, timestamp=0x7000_0000 + sequence * 160), CALLER,
                              0.02 * sequence)
    assert core.stats().ssrc_changes == 1 and core.stats().jitter_ms == 0.0


def test_keys_of_the_new_stream_are_heard():
    core, _ = latched_core(dtmf_payload_type=PT_DTMF)
    events = []
    for index, payload in enumerate(event_payloads("7")):
        datagram = rtp(900 + index, ssrc=0xD1FF, payload_type=PT_DTMF, payload=payload, timestamp=4000)
        events += core.receive_datagram(datagram, CALLER, 0.02 * (index + 1))
    assert [e for e in events if isinstance(e, DtmfReceived)] == [DtmfReceived("7")]
    assert core.stats().dtmf_in == 1


# ---- latching of the caller (strangers: tests/security/test_rtp_latching.py) ---------------------------------

NAT_PORT = (CALLER[0], 61000)


def test_a_new_port_of_the_signalled_ip_latches_after_consecutive_packets_none_of_which_is_lost():
    core = new_core()
    heard = []
    order = [2, 1] + list(range(3, NAT_LATCH_PACKETS + 1))  # the first two swapped on the way
    for index, sequence in enumerate(order):
        assert core.latched_address is None
        heard += core.receive_datagram(rtp(sequence), NAT_PORT, 0.02 * index)
    assert core.latched_address == NAT_PORT and core.remote_address == NAT_PORT
    assert levels(heard) == list(range(1, NAT_LATCH_PACKETS + 1))
    assert core.stats().packets_in == NAT_LATCH_PACKETS and core.stats().packets_ignored == 0


@pytest.mark.parametrize("interruption", ["garbage", "unnegotiated_type", "other_port", "other_ssrc"])
def test_a_nat_run_must_be_consecutive(interruption):
    core = new_core()
    for sequence in range(1, NAT_LATCH_PACKETS):
        core.receive_datagram(rtp(sequence), NAT_PORT, 0.0)
    datagram, source = {
        "garbage": (b"\x80\x00", NAT_PORT),
        "unnegotiated_type": (rtp(99, payload_type=18), NAT_PORT),
        "other_port": (rtp(99), (CALLER[0], 61002)),
        "other_ssrc": (rtp(99, ssrc=0xD1FF), NAT_PORT),
    }[interruption]
    core.receive_datagram(datagram, source, 0.0)
    assert core.receive_datagram(rtp(NAT_LATCH_PACKETS), NAT_PORT, 0.0) == [] and core.latched_address is None
    heard = [e for s in range(NAT_LATCH_PACKETS + 1, 2 * NAT_LATCH_PACKETS) for e in
             core.receive_datagram(rtp(s), NAT_PORT, 0.1)]
    assert core.latched_address == NAT_PORT and len(levels(heard)) == NAT_LATCH_PACKETS


def test_the_sip_signalling_host_may_latch_like_the_signalled_ip_when_sdp_names_a_private_address():
    private, public = ("192.168.1.10", 5004), ("203.0.113.5", 5004)
    behind_nat = new_core(remote=private, signalling_host=public[0])
    for sequence in range(1, NAT_LATCH_PACKETS + 1):
        behind_nat.receive_datagram(rtp(sequence), public, 0.0)
    assert behind_nat.latched_address == public
    without_host = new_core(remote=private)
    for sequence in range(1, 50):
        without_host.receive_datagram(rtp(sequence), public, 0.0)
    assert without_host.latched_address is None and without_host.stats().packets_ignored == 49


def test_the_signalled_address_takes_the_latch_back_from_a_nat_port():
    core = new_core()
    for sequence in range(1, NAT_LATCH_PACKETS + 1):
        core.receive_datagram(rtp(sequence), NAT_PORT, 0.0)
    core.receive_datagram(rtp(100, ssrc=0xD1FF), CALLER, 0.1)
    assert core.latched_address == CALLER
    assert core.receive_datagram(rtp(6), NAT_PORT, 0.2) == [] and core.stats().packets_ignored == 1


def test_a_session_refresh_to_the_same_address_keeps_the_latch_and_a_new_address_latches_afresh():
    core = new_core()
    for sequence in range(1, NAT_LATCH_PACKETS + 1):
        core.receive_datagram(rtp(sequence), NAT_PORT, 0.0)
    core.set_remote(CALLER)  # re-INVITE refreshing the session, same SDP address
    assert core.remote_address == NAT_PORT
    moved = ("192.0.2.99", 7000)
    core.set_remote(moved)
    assert core.latched_address is None and core.remote_address == moved
    assert levels(core.receive_datagram(rtp(50, ssrc=0xD1FF), moved, 1.0)) == [50]  # a new latch: heard at once


def test_ipv6_addresses_compare_in_their_canonical_form():
    core = new_core(remote=("2001:db8:0:0:0:0:0:1", 5004))
    assert levels(core.receive_datagram(rtp(1), ("2001:db8::1", 5004), 0.0)) == [1]


# ---- the jitter buffer's timer and the media timeout, by stepped time ---------------------------------------

def test_a_lost_packet_is_concealed_when_the_jitter_buffer_deadline_comes():
    core, _ = latched_core(jitter_delay_s=0.06)
    assert core.receive_datagram(rtp(3), CALLER, 0.04) == []
    assert core.next_deadline() == pytest.approx(0.10)
    assert core.handle_timer(0.099) == []
    assert levels(core.handle_timer(0.10)) == [None, 3]
    assert core.stats().packets_lost == 1 and core.next_deadline() == pytest.approx(30.04)


def test_media_timeout_fires_once_at_its_deadline_and_media_pushes_it_back():
    core = new_core(media_timeout_s=2.0)
    assert core.next_deadline() == 2.0
    for step in range(1, 6):
        core.receive_datagram(rtp(step), CALLER, step * 0.5)
    assert core.next_deadline() == 4.5
    assert core.handle_timer(4.49) == []
    assert core.handle_timer(4.5) == [MediaTimedOut(2.0)]
    assert core.next_deadline() is None and core.handle_timer(100.0) == []


def test_on_hold_silence_never_times_out_and_unhold_restarts_the_clock():
    core, _ = latched_core(media_timeout_s=1.0)
    core.set_direction("inactive", 0.5)
    assert core.next_deadline() is None and core.handle_timer(3600.0) == []
    assert core.audio_datagrams(bytes(FRAME), 3600.0) == []  # nothing is sent while held
    core.set_direction("sendrecv", 3600.0)
    assert core.next_deadline() == 3601.0
    assert core.handle_timer(3601.0) == [MediaTimedOut(1.0)]
    with pytest.raises(ValueError):
        core.set_direction("sideways", 0.0)


def test_recvonly_still_expects_media_and_sendonly_does_not():
    core = new_core(media_timeout_s=1.0)
    core.set_direction("recvonly", 0.0)
    assert core.next_deadline() == 1.0 and core.audio_datagrams(bytes(FRAME), 0.0) == []
    core.set_direction("sendonly", 0.0)
    assert core.next_deadline() is None and len(core.audio_datagrams(bytes(FRAME), 0.0)) == 1


# ---- send side ----------------------------------------------------------------------------------------

def test_audio_goes_to_the_signalled_address_then_to_the_latch_with_talkspurt_markers():
    core = new_core()
    [(first, to_first)] = core.audio_datagrams(bytes(FRAME + 100), 0.0)  # the partial frame waits
    [(second, _)] = core.audio_datagrams(bytes(FRAME - 100), 0.02)
    [(after_pause, _)] = core.audio_datagrams(bytes(FRAME), 1.0)
    a, b, c = (parse_packet(d) for d in (first, second, after_pause))
    assert to_first == CALLER and (a.marker, b.marker, c.marker) == (True, False, True)
    assert b.sequence == (a.sequence + 1) & 0xFFFF and b.timestamp == (a.timestamp + 160) & 0xFFFFFFFF
    assert (c.timestamp - b.timestamp) & 0xFFFFFFFF == 8000 * 0.98  # the pause advanced the clock
    core.clear_audio()
    assert core.stats().packets_out == 3


def test_a_key_is_sent_as_one_rfc4733_train_sharing_a_timestamp():
    core = new_core()
    key = core.start_key("#", duration_ms=60)
    packets = [parse_packet(core.key_datagram(key, i)[0]) for i in range(len(key.payloads))]
    assert [p.marker for p in packets] == [True] + [False] * (len(packets) - 1)
    assert {p.timestamp for p in packets} == {key.timestamp} and {p.payload_type for p in packets} == {101}
    assert core.stats().dtmf_out == 1 and core.stats().packets_out == len(packets)


def test_without_telephone_event_a_key_cannot_be_sent():
    with pytest.raises(RuntimeError, match="telephone-event"):
        new_core(dtmf_payload_type=None).start_key("1", 100)
    with pytest.raises(ValueError):
        new_core().start_key("x", 100)


def test_a_non_g711_codec_is_refused():
    with pytest.raises(ValueError, match="not G.711"):
        new_core(payload_type=18)


# ---- seeded fuzzing: never fatal, every datagram accounted for ------------------------------------------------

FUZZ_SEED = 20261129
FUZZ_DATAGRAMS = 3000


def fuzz_datagram(rng: random.Random) -> bytes:
    """Random bytes, or a valid packet with a few random bits flipped (which reaches deeper code paths)."""
    if rng.random() < 0.5:
        return rng.randbytes(rng.randrange(0, 300))
    data = bytearray(rtp(rng.randrange(1 << 16), payload_type=rng.choice((PT_PCMU, PT_DTMF))))
    for _ in range(rng.randrange(1, 4)):
        data[rng.randrange(min(len(data), 24))] ^= 1 << rng.randrange(8)
    return bytes(data[:rng.randrange(0, len(data) + 1)] if rng.random() < 0.2 else data)


def test_fuzzed_datagrams_are_never_fatal():
    rng = random.Random(FUZZ_SEED)
    core, _ = latched_core(dtmf_payload_type=PT_DTMF)
    sources = (CALLER, OTHER, (CALLER[0], CALLER[1] + 2))
    now = 0.0
    for index in range(FUZZ_DATAGRAMS):
        datagram, source = fuzz_datagram(rng), rng.choice(sources)
        now += rng.random() * 0.03
        try:
            core.receive_datagram(datagram, source, now)
            deadline = core.next_deadline()
            if deadline is not None and deadline <= now:
                core.handle_timer(now)
        except Exception as error:  # pragma: no cover - the failure report
            pytest.fail(f"fuzz seed {FUZZ_SEED}, datagram {index} from {source}: {datagram.hex()}: {error!r}")
    stats = core.stats()
    accounted = (stats.packets_in + stats.packets_ignored + stats.packets_malformed
                 + stats.packets_wrong_payload_type + stats.packets_unconfirmed_ssrc)
    assert accounted == FUZZ_DATAGRAMS + 1, f"fuzz seed {FUZZ_SEED}: {stats}"
