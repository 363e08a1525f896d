"""SDP parsing and the G.711 offer/answer (RFC 4566, RFC 3264)."""

from __future__ import annotations

import pytest

from sip_test_support import OFFER
from telephony.sip.sdp import LocalMedia, NoCommonCodec, SdpError, build_answer, negotiate, parse_sdp


def test_offerer_preference_and_telephone_event():
    plan = negotiate(parse_sdp(OFFER.encode()))
    assert (plan.codec, plan.payload_type, plan.telephone_event_pt) == ("PCMA", 8, 101)
    assert (plan.remote_host, plan.remote_port, plan.ptime_ms, plan.direction) == ("127.0.0.1", 30000, 20, "sendrecv")


def test_static_payload_type_without_rtpmap_and_no_dtmf():
    sdp = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\n"
    plan = negotiate(parse_sdp(sdp))
    assert (plan.codec, plan.remote_host, plan.telephone_event_pt) == ("PCMU", "10.0.0.2", None)


def test_skips_video_and_unsupported_audio_then_488():
    only_video_and_g729 = (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
                           b"m=video 5000 RTP/AVP 31\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n")
    with pytest.raises(NoCommonCodec):
        negotiate(parse_sdp(only_video_and_g729))
    wideband_pcmu = only_video_and_g729.replace(b"18 G729/8000", b"96 PCMU/16000").replace(b"AVP 18", b"AVP 96")
    with pytest.raises(NoCommonCodec):
        negotiate(parse_sdp(wideband_pcmu))


@pytest.mark.parametrize("attribute,expected", [("sendonly", "recvonly"), ("inactive", "inactive"),
                                                ("recvonly", "sendonly"), ("sendrecv", "sendrecv")])
def test_direction_is_mirrored(attribute, expected):
    plan = negotiate(parse_sdp((OFFER + f"a={attribute}\r\n").encode()))
    assert plan.direction == expected and plan.on_hold == (expected != "sendrecv")


def test_answer_lists_one_codec_and_bumps_version():
    plan = negotiate(parse_sdp(OFFER.encode()))
    local = LocalMedia("127.0.0.1", 20002)
    first, second = build_answer(plan, local).serialise(), build_answer(plan, local).serialise()
    assert b"m=audio 20002 RTP/AVP 8 101\r\n" in first and b"a=rtpmap:8 PCMA/8000" in first
    assert b"a=ptime:20" in first and b"a=sendrecv" in first
    version = lambda sdp: int(parse_sdp(sdp).origin.split()[2])  # noqa: E731
    assert version(second) == version(first) + 1


@pytest.mark.parametrize("body", [b"garbage", b"m=audio notaport RTP/AVP 0\r\n", b"c=IN IP4\r\n", b"\xff\xfe"])
def test_bad_sdp(body):
    with pytest.raises(SdpError):
        parse_sdp(body)
