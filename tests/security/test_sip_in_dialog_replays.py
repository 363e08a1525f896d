"""In-dialog requests: a CSeq that does not increase is out of order (RFC 3261 §12.2.2: 500), for BYE, INFO and
NOTIFY as for re-INVITE. Without it a captured BYE, INFO (a keypad key) or NOTIFY (a transfer outcome) could be
replayed into a live call with a fresh branch."""

from __future__ import annotations

import pytest

from settings import SipSettings
from telephony.sip.sdp import LocalMedia
from telephony.sip.uas import CallAnswered, CallEnded, CallState, DtmfInfo, IncomingCall, TransferResult, UserAgent
from tests.telephony.sip.sip_test_support import CALLER, LOCAL, Uac, datagrams, events, statuses

ROUTING = "general=sip:general@127.0.0.1:5070"


@pytest.fixture
def ua() -> UserAgent:
    return UserAgent(SipSettings(routing=ROUTING), LOCAL)


def establish(ua: UserAgent, uac: Uac):
    call = events(ua.feed(uac.invite(), CALLER, 0.0), IncomingCall)[0].call
    uac.learn_tag(datagrams(ua.answer(call, LocalMedia("127.0.0.1", 20000), 0.0))[0])
    assert events(ua.feed(uac.ack(), CALLER, 0.01), CallAnswered)
    return call


def replay(uac: Uac, method: str, cseq: int, body: str = "", content_type: str = "", headers: str = "") -> bytes:
    """The same request again, or an older one, with a fresh branch: not a retransmission, a new request."""
    uac.branch += "r"
    return uac.request(method, body, content_type or "application/sdp", headers=headers, cseq=cseq)


def test_a_bye_with_the_invites_cseq_is_refused_and_the_call_goes_on(ua):
    uac = Uac()
    call = establish(ua, uac)
    out = ua.feed(replay(uac, "BYE", cseq=uac.cseq), CALLER, 1.0)
    assert statuses(out) == [500] and datagrams(out)[0].reason == "CSeq out of order"
    assert events(out, CallEnded) == [] and call.state is CallState.CONFIRMED
    assert statuses(ua.feed(replay(uac, "BYE", cseq=uac.cseq - 1), CALLER, 1.1)) == [500]
    out = ua.feed(uac.in_dialog("BYE"), CALLER, 2.0)  # the real BYE, CSeq above
    assert statuses(out) == [200] and events(out, CallEnded)


def test_a_replayed_info_key_is_refused(ua):
    uac = Uac()
    establish(ua, uac)
    key = uac.in_dialog("INFO", "Signal=5\r\nDuration=160\r\n", "application/dtmf-relay")
    first = ua.feed(key, CALLER, 1.0)
    assert statuses(first) == [200] and [e.digit for e in events(first, DtmfInfo)] == ["5"]
    old_key = replay(uac, "INFO", uac.cseq, "Signal=5\r\nDuration=160\r\n", "application/dtmf-relay")
    again = ua.feed(old_key, CALLER, 1.5)
    assert statuses(again) == [500] and events(again, DtmfInfo) == []
    # A retransmission (same branch) is still absorbed by its transaction: the same 200, no second key.
    retransmitted = ua.feed(key, CALLER, 1.6)
    assert statuses(retransmitted) == [200] and events(retransmitted) == []


def test_an_old_notify_cannot_end_a_transfer(ua):
    uac = Uac()
    call = establish(ua, uac)
    ua.refer_to_queue(call, "general", {}, 1.0)
    sipfrag = ("SIP/2.0 200 OK\r\n", "message/sipfrag")
    headers = "Event: refer\nSubscription-State: terminated"
    out = ua.feed(replay(uac, "NOTIFY", uac.cseq, *sipfrag, headers=headers), CALLER, 2.0)
    assert statuses(out) == [500] and events(out, TransferResult) == [] and call.transfer is not None
    uac.cseq += 1
    out = ua.feed(replay(uac, "NOTIFY", uac.cseq, *sipfrag, headers=headers), CALLER, 2.1)
    assert statuses(out)[0] == 200 and events(out, TransferResult)[0].ok
