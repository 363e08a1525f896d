"""SIP and SDP numbers are ASCII digits only, and every INVITE gets a final response, whatever it carries.

Reproduction from issue 7: an INVITE whose SDP says `m=audio ²000 RTP/AVP 0` got no answer at all ('²'.isdigit()
is True, int('²') raises) and its transaction was held forever. Other Unicode digits ('٣', '３') were read as
numbers by int(). Each case here also checks that a retransmission gets the same final response, and that no
transaction outlives its timers.
"""

from __future__ import annotations

import dataclasses

import pytest

from settings import SipSettings
from telephony.sip.digits import ascii_int, is_ascii_digits
from telephony.sip.message import SipSyntaxError, parse_cseq, parse_message, parse_uri
from telephony.sip.sdp import SdpError, parse_sdp
from telephony.sip.transaction import INVITE_PROCEEDING_GUARD_S, T1
from telephony.sip.uas import CallEnded, CallRefused, IncomingCall, UserAgent, parse_dtmf_info
from tests.telephony.sip.sip_test_support import CALLER, LOCAL, OFFER, Uac, datagrams, events, statuses

# superscript, Arabic-Indic, Persian, fullwidth, N'Ko, mathematical bold
UNICODE_DIGITS = ["²", "٣", "۳", "３", "߃", "𝟑"]


@pytest.fixture
def ua() -> UserAgent:
    return UserAgent(dataclasses.replace(SipSettings(), max_calls=5), LOCAL)


def offer_with_port(port_text: str) -> str:
    return OFFER.replace("m=audio 30000 ", f"m=audio {port_text} ")


def test_only_ascii_digits_are_digits():
    assert is_ascii_digits("0123456789") and ascii_int("0042") == 42
    for digit in UNICODE_DIGITS:
        assert not is_ascii_digits(digit) and ascii_int(f"1{digit}") is None
    assert ascii_int("") is None and ascii_int("-1") is None and ascii_int("1_000") is None and ascii_int(" 1") is None
    assert ascii_int("9" * 5000) is None  # int() would raise ValueError past 4300 digits


@pytest.mark.parametrize("digit", UNICODE_DIGITS)
def test_unicode_digit_in_sdp_port_gets_400_and_the_same_400_again(ua, digit):
    uac = Uac()
    invite = uac.invite(offer_with_port(f"{digit}000"))
    first = ua.feed(invite, CALLER, 0.0)
    assert statuses(first) == [400] and [e.status for e in events(first, CallRefused)] == [400]
    assert "Bad SDP" in datagrams(first)[0].reason
    again = ua.feed(invite, CALLER, 0.3)
    assert statuses(again) == [400] and events(again) == []  # the transaction repeats itself, nothing new
    assert ua.internal_errors == 0


def test_superscript_port_exact_reproduction(ua):
    """`m=audio ²000 RTP/AVP 0` verbatim, as reported."""
    sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio ²000 RTP/AVP 0\r\n"
    uac = Uac()
    assert statuses(ua.feed(uac.invite(sdp), CALLER, 0.0)) == [400]
    assert statuses(ua.feed(uac.invite(sdp), CALLER, 1.0)) == [400]
    ua.tick(1.0 + 64 * T1)  # Timer H: no ACK came
    assert ua.server_transactions == {}


@pytest.mark.parametrize("digit", UNICODE_DIGITS)
def test_unicode_digits_in_sdp_payload_types_are_not_codecs(digit):
    with pytest.raises(SdpError):
        parse_sdp(offer_with_port(f"3{digit}").encode())
    offer = OFFER.replace("RTP/AVP 8 0 101", f"RTP/AVP {digit}").replace("a=rtpmap:8 ", f"a=rtpmap:{digit} ")
    sdp = parse_sdp(offer.encode())
    assert sdp.media[0].rtpmap().get(8) is None and all(pt in (0, 101) for pt in sdp.media[0].rtpmap())


def test_invite_with_unicode_payload_types_only_gets_488(ua):
    offer = OFFER.replace("RTP/AVP 8 0 101", "RTP/AVP ٨ ٠")
    out = ua.feed(Uac().invite(offer), CALLER, 0.0)
    assert statuses(out) == [488]


@pytest.mark.parametrize("digit", UNICODE_DIGITS)
def test_unicode_digits_in_sip_numbers_are_400_not_a_crash(ua, digit):
    with pytest.raises(SipSyntaxError):
        parse_cseq(f"{digit} INVITE")
    with pytest.raises(SipSyntaxError):
        parse_uri(f"sip:ivr@127.0.0.1:5{digit}60")
    with pytest.raises(SipSyntaxError):
        parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: " + digit.encode() + b"\r\n\r\n")
    cases = [
        Uac().request("OPTIONS", cseq=None).replace(b"CSeq: 1 ", f"CSeq: 1{digit} ".encode()),
        Uac().request("OPTIONS").replace(b"Max-Forwards: 70", f"Max-Forwards: 7{digit}".encode()),
        Uac().request("OPTIONS").replace(b"Content-Length: 0", f"Content-Length: {digit}".encode()),
    ]
    for message in cases:
        assert statuses(ua.feed(message, CALLER, 0.0)) == [400], message
    assert ua.internal_errors == 0


def test_a_cseq_of_thousands_of_digits_is_400_not_an_internal_error(ua):
    huge = Uac().request("OPTIONS").replace(b"CSeq: 1 ", b"CSeq: " + b"1" * 5000 + b" ")
    out = ua.feed(huge, CALLER, 0.0)
    assert ua.internal_errors == 0
    assert statuses(out) in ([400], [513])  # too large for the default limit, or malformed: answered either way


@pytest.mark.parametrize("digit", ["٣", "３"])
def test_unicode_digits_in_dtmf_info_are_not_keys(digit):
    assert parse_dtmf_info(f"Signal={digit}\r\nDuration=160".encode(), "application/dtmf-relay") == (None, 0)
    assert parse_dtmf_info(f"Signal=5\r\nDuration=1{digit}0".encode(), "application/dtmf-relay") == ("5", 0)
    assert parse_dtmf_info(digit.encode(), "application/dtmf") == (None, 0)


def test_an_invite_the_application_never_answers_is_ended_by_the_proceeding_guard(ua):
    """Even with the ring timeout out of the way (the app lost the call), the transaction answers and ends."""
    uac = Uac()
    out = ua.feed(uac.invite(), CALLER, 0.0)
    call = events(out, IncomingCall)[0].call
    ua.calls.clear()  # the call-level ring timeout is gone: only the transaction's guard is left
    assert ua.tick(INVITE_PROCEEDING_GUARD_S - 0.01) == []
    guard = ua.tick(INVITE_PROCEEDING_GUARD_S)
    assert statuses(guard) == [408]
    assert statuses(ua.feed(uac.invite(), CALLER, INVITE_PROCEEDING_GUARD_S + 0.1)) == [408]  # retransmission
    ua.tick(INVITE_PROCEEDING_GUARD_S + 64 * T1)
    assert ua.server_transactions == {}


def test_the_proceeding_guard_also_ends_a_ringing_call_it_answered_for(ua):
    uac = Uac()
    call = events(ua.feed(uac.invite(), CALLER, 0.0), IncomingCall)[0].call
    call.created_at = 10_000.0  # a ring timeout far away: the guard fires first
    out = ua.tick(INVITE_PROCEEDING_GUARD_S)
    assert statuses(out) == [408] and events(out, CallEnded)[0].call is call
    assert ua.active_calls == []


def test_a_request_whose_handling_fails_still_gets_a_final_response(ua, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(UserAgent, "_on_invite", broken)
    uac = Uac()
    assert statuses(ua.feed(uac.invite(), CALLER, 0.0)) == [500]
    assert statuses(ua.feed(uac.invite(), CALLER, 0.5)) == [500]
    assert ua.internal_errors == 1
