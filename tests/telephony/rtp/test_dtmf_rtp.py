"""RFC 4733 telephone-events: sipp's DTMF captures decode to their keys, each once; sending round-trips."""

import pytest

from telephony.rtp.dtmf import (DtmfReceiver, TelephoneEvent, event_payloads, key_to_event_code,
                                parse_event)
from telephony.rtp.jitter import JitterBuffer
from telephony.rtp.packet import RtpPacket, parse_packet

CAPTURES = {f"dtmf_2833_{k}.pcap": k for k in "0123456789"} | {"dtmf_2833_pound.pcap": "#",
                                                                  "dtmf_2833_star.pcap": "*"}


@pytest.mark.parametrize("capture, key", sorted(CAPTURES.items()))
def test_each_capture_yields_its_key_exactly_once(pcap_payloads, capture, key):
    receiver = DtmfReceiver()
    packets = [parse_packet(d) for d in pcap_payloads(capture)]
    assert sum(parse_event(p.payload).end for p in packets) == 3  # the repeated end packets are there
    assert [k for p in packets for k in receiver.feed(p)] == [key]


def test_capture_through_the_jitter_buffer_still_yields_one_key(pcap_payloads):
    receiver, buffer = DtmfReceiver(), JitterBuffer()
    for i, datagram in enumerate(pcap_payloads("dtmf_2833_7.pcap")):
        buffer.push(parse_packet(datagram), 0.02 * i)
    assert [k for p in buffer.flush() if p is not None for k in receiver.feed(p)] == ["7"]


def rtp(payload: bytes, timestamp: int, sequence: int = 0, ssrc: int = 5) -> RtpPacket:
    return RtpPacket(101, sequence, timestamp, ssrc, payload)


def test_sent_payloads_have_start_continuation_and_three_end_packets():
    events = [parse_event(p) for p in event_payloads("9", duration_ms=100)]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert {e.key for e in events} == {"9"}


@pytest.mark.parametrize("key", list("0123456789*#ABCD"))
def test_every_key_round_trips_through_the_receiver(key):
    receiver = DtmfReceiver()
    keys = [k for i, p in enumerate(event_payloads(key)) for k in receiver.feed(rtp(p, 8000, i))]
    assert keys == [key]


def test_the_same_key_pressed_twice_is_reported_twice():
    receiver = DtmfReceiver()
    presses = [rtp(p, ts, i) for ts in (1000, 3000) for i, p in enumerate(event_payloads("1"))]
    assert [k for p in presses for k in receiver.feed(p)] == ["1", "1"]


def test_a_key_whose_end_packets_were_lost_is_reported_when_the_next_starts():
    receiver = DtmfReceiver()
    first = [p for p in event_payloads("4") if not parse_event(p).end]
    keys = [k for p in first for k in receiver.feed(rtp(p, 1000))]
    keys += [k for p in event_payloads("5") for k in receiver.feed(rtp(p, 5000))]
    assert keys == ["4", "5"]


def test_malformed_and_non_dtmf_events_are_ignored():
    receiver = DtmfReceiver()
    assert receiver.feed(rtp(b"\x01", 1)) == []
    assert receiver.feed(rtp(TelephoneEvent(16, True, 10, 800).serialise(), 2)) == []  # hook flash


def test_unknown_keys_are_rejected_when_sending():
    with pytest.raises(ValueError):
        key_to_event_code("x")
    with pytest.raises(ValueError):
        event_payloads("12")
