"""Jitter buffer: reordering, duplicates, late packets, loss and wrap-around; RFC 3550 jitter."""

import pytest

from telephony.rtp.jitter import MAX_CONCEALED_FRAMES, InterarrivalJitter, JitterBuffer
from telephony.rtp.packet import RtpPacket

DELAY = 0.06


def packet(sequence: int, timestamp: int | None = None) -> RtpPacket:
    return RtpPacket(0, sequence & 0xFFFF, (sequence * 160 if timestamp is None else timestamp) & 0xFFFFFFFF,
                     1, bytes([sequence & 0xFF]))


def sequences(ready: list[RtpPacket | None]) -> list[int | None]:
    return [None if p is None else p.sequence for p in ready]


def test_in_order_packets_come_out_at_once():
    buffer = JitterBuffer(DELAY)
    out = []
    for i in range(5):
        buffer.push(packet(100 + i), 0.02 * i)
        out += buffer.pop_ready(0.02 * i)
    assert sequences(out) == [100, 101, 102, 103, 104]
    assert len(buffer) == 0 and buffer.next_deadline() is None


def test_a_reordered_packet_is_put_back_in_place():
    buffer = JitterBuffer(DELAY)
    buffer.push(packet(1), 0.0)
    assert sequences(buffer.pop_ready(0.0)) == [1]
    buffer.push(packet(3), 0.02)
    assert buffer.pop_ready(0.02) == []  # 2 may still come
    buffer.push(packet(2), 0.03)
    assert sequences(buffer.pop_ready(0.03)) == [2, 3]
    assert buffer.stats.lost == 0


def test_duplicates_are_dropped_whether_held_or_already_played():
    buffer = JitterBuffer(DELAY)
    buffer.push(packet(1), 0.0)
    buffer.pop_ready(0.0)
    buffer.push(packet(3), 0.01)
    buffer.push(packet(3), 0.011)
    buffer.push(packet(1), 0.012)
    assert buffer.stats.duplicates == 1 and buffer.stats.late == 1


def test_a_missing_packet_is_given_up_after_the_delay_and_concealed():
    buffer = JitterBuffer(DELAY)
    buffer.push(packet(10), 0.0)
    buffer.pop_ready(0.0)
    buffer.push(packet(12), 0.04)
    assert buffer.pop_ready(0.099) == []
    assert buffer.next_deadline() == pytest.approx(0.1)
    assert sequences(buffer.pop_ready(0.1)) == [None, 12]
    assert buffer.stats.lost == 1


def test_a_packet_arriving_after_its_slot_was_given_up_counts_as_late():
    buffer = JitterBuffer(DELAY)
    buffer.push(packet(10), 0.0)
    buffer.push(packet(12), 0.0)
    buffer.pop_ready(1.0)
    buffer.push(packet(11), 1.01)
    assert buffer.pop_ready(1.01) == []
    assert (buffer.stats.lost, buffer.stats.late) == (1, 1)


def test_long_gaps_are_concealed_only_up_to_a_cap():
    buffer = JitterBuffer(DELAY)
    buffer.push(packet(0), 0.0)
    buffer.push(packet(500), 0.0)
    out = buffer.flush()
    assert out.count(None) == MAX_CONCEALED_FRAMES and buffer.stats.lost == 499


def test_a_full_buffer_stops_waiting_even_before_the_deadline():
    buffer = JitterBuffer(max_delay_s=10.0, max_packets=4)
    buffer.push(packet(0), 0.0)
    buffer.pop_ready(0.0)
    for sequence in range(2, 8):
        buffer.push(packet(sequence), 0.0)
    assert sequences(buffer.pop_ready(0.0)) == [None, 2, 3, 4, 5, 6, 7]


def test_sequence_numbers_wrap_around():
    buffer = JitterBuffer(DELAY)
    out = []
    for i, sequence in enumerate([65534, 0, 65535, 1]):
        buffer.push(packet(sequence), 0.01 * i)
        out += buffer.pop_ready(0.01 * i)
    assert sequences(out) == [65534, 65535, 0, 1]
    assert buffer.stats.lost == 0 and buffer.stats.late == 0


def test_a_large_jump_restarts_the_stream_instead_of_counting_loss():
    buffer = JitterBuffer(DELAY)
    buffer.push(packet(10), 0.0)
    buffer.push(packet(30000), 0.02)
    assert sequences(buffer.pop_ready(0.02)) == [10, 30000]
    assert buffer.stats.lost == 0 and buffer.stats.restarts == 1


def test_restart_accepts_a_new_stream_with_lower_sequence_numbers():
    buffer = JitterBuffer(DELAY)
    buffer.push(packet(1000), 0.0)
    buffer.pop_ready(0.0)
    buffer.restart()
    buffer.push(packet(5), 0.02)
    assert sequences(buffer.pop_ready(0.02)) == [5]


def test_interarrival_jitter_is_zero_for_perfect_pacing():
    jitter = InterarrivalJitter(8000)
    for i in range(50):
        jitter.update(i * 160, 0.02 * i)
    assert jitter.timestamp_units == pytest.approx(0.0, abs=1e-6)


def test_interarrival_jitter_converges_to_the_mean_deviation():
    jitter = InterarrivalJitter(8000)
    # every other packet 10 ms late: |D| alternates 80 samples each step
    for i in range(400):
        jitter.update(i * 160, 0.02 * i + (0.01 if i % 2 else 0.0))
    assert jitter.timestamp_units == pytest.approx(80, rel=0.01)
    assert jitter.milliseconds == pytest.approx(10, rel=0.01)


def test_interarrival_jitter_ignores_timestamp_wrap_around():
    jitter = InterarrivalJitter(8000)
    for i in range(20):
        jitter.update((0xFFFFFF00 + i * 160) & 0xFFFFFFFF, 0.02 * i)
    assert jitter.timestamp_units == pytest.approx(0.0, abs=1e-6)
