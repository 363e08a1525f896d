"""The sans-I/O UAS core: call flows, transactions and timers driven with a fake clock."""

from __future__ import annotations

import dataclasses
from urllib.parse import unquote

import pytest

from sip_test_support import CALLER, LOCAL, OFFER, Uac, datagrams, events, statuses
from telephony.sip import uui
from telephony.sip.message import parse_uri
from telephony.sip.refer import TransferNotAllowed
from telephony.sip.sdp import LocalMedia, parse_sdp
from telephony.sip.transaction import T1, T2
from telephony.sip.uas import (
    CallAnswered,
    CallEnded,
    CallError,
    CallRefused,
    CallState,
    DtmfInfo,
    IncomingCall,
    ReInvite,
    TransferResult,
    UserAgent,
)

MEDIA = LocalMedia("127.0.0.1", 20000)


def establish(ua: UserAgent, uac: Uac, now: float = 0.0):
    """INVITE → 100 → (app answers) → 200 → ACK → CallAnswered. Returns the call."""
    out = ua.feed(uac.invite(), CALLER, now)
    assert statuses(out) == [100]
    call = events(out, IncomingCall)[0].call
    answer = datagrams(ua.answer(call, MEDIA, now))[0]
    assert answer.status == 200
    uac.learn_tag(answer)
    acked = ua.feed(uac.ack(), CALLER, now + 0.01)
    assert events(acked, CallAnswered)[0].call is call
    return call


def test_basic_call_answer_and_remote_bye(ua):
    uac = Uac()
    call = establish(ua, uac)
    assert call.state is CallState.CONFIRMED
    assert call.media.codec == "PCMA" and call.media.telephone_event_pt == 101  # the offerer's first choice
    assert call.caller == "13800000001"
    out = ua.feed(uac.in_dialog("BYE"), CALLER, 5.0)
    assert statuses(out) == [200]
    assert events(out, CallEnded)[0].cause == "remote_bye"
    assert ua.active_calls == []


def test_answer_carries_sdp_contact_and_to_tag(ua):
    uac = Uac()
    out = ua.feed(uac.invite(), CALLER, 0.0)
    call = events(out, IncomingCall)[0].call
    ringing = datagrams(ua.ringing(call, 0.1))[0]
    answer = datagrams(ua.answer(call, MEDIA, 0.2))[0]
    assert ringing.status == 180 and ringing.to_tag() == answer.to_tag() != ""
    assert answer.get("contact") == "<sip:ivr@127.0.0.1:5099>"
    sdp = parse_sdp(answer.body)
    assert sdp.media[0].port == 20000 and sdp.media[0].formats == ["8", "101"]
    assert ("ptime", "20") in sdp.media[0].attributes


def test_200_is_retransmitted_with_timer_g_until_ack(ua):
    uac = Uac()
    call = events(ua.feed(uac.invite(), CALLER, 0.0), IncomingCall)[0].call
    uac.learn_tag(datagrams(ua.answer(call, MEDIA, 0.0))[0])
    sent_at = []
    now = 0.0
    while now < 8.0:
        now = round(now + 0.05, 2)
        if statuses(ua.tick(now)) == [200]:
            sent_at.append(now)
    # T1, then doubling, capped at T2: 0.5, 1.5, 3.5, 7.5
    assert sent_at == [T1, 3 * T1, 7 * T1, 7 * T1 + T2]
    ua.feed(uac.ack(), CALLER, now)
    assert statuses(ua.tick(now + 10)) == []


def test_no_ack_within_timer_h_ends_the_call_with_bye(ua):
    uac = Uac()
    call = events(ua.feed(uac.invite(), CALLER, 0.0), IncomingCall)[0].call
    ua.answer(call, MEDIA, 0.0)
    out = []
    for step in range(1, 70):
        out += ua.tick(step * 0.5)
    byes = [m for m in datagrams(out) if m.is_request]
    assert [m.method for m in byes][:1] == ["BYE"]
    assert events(out, CallEnded)[0].cause == "ack_timeout"


def test_invite_retransmission_is_absorbed(ua):
    uac = Uac()
    first = ua.feed(uac.invite(), CALLER, 0.0)
    again = ua.feed(uac.invite(), CALLER, 0.3)
    assert len(events(first, IncomingCall)) == 1
    assert statuses(again) == [100] and events(again) == []
    call = events(first, IncomingCall)[0].call
    ua.answer(call, MEDIA, 0.4)
    assert statuses(ua.feed(uac.invite(), CALLER, 0.5)) == [200]  # the 2xx is repeated, no new call
    assert len(ua.active_calls) == 1


def test_branchless_rfc2543_invite_retransmission_is_absorbed(ua):
    uac = Uac()
    invite = uac.invite().replace(b";branch=z9hG4bK-b", b";x=b")
    assert len(events(ua.feed(invite, CALLER, 0.0), IncomingCall)) == 1
    assert events(ua.feed(invite, CALLER, 0.5), IncomingCall) == []


def test_cancel_before_answer(ua):
    uac = Uac()
    call = events(ua.feed(uac.invite(), CALLER, 0.0), IncomingCall)[0].call
    cancel = uac.request("CANCEL")
    out = ua.feed(cancel, CALLER, 1.0)
    responses = datagrams(out)
    assert [(m.status, m.cseq.method) for m in responses] == [(200, "CANCEL"), (487, "INVITE")]
    assert events(out, CallEnded)[0].cause == "cancelled"
    assert call.state is CallState.ENDED
    with pytest.raises(CallError):
        ua.answer(call, MEDIA, 1.1)
    # the 487 is retransmitted until its ACK, which then stops it (Timer G, I)
    assert statuses(ua.tick(1.0 + T1)) == [487]
    ua.feed(uac.request("ACK"), CALLER, 1.6)
    assert statuses(ua.tick(5.0)) == []


def test_cancel_without_invite_gets_481(ua):
    assert statuses(ua.feed(Uac().request("CANCEL"), CALLER, 0.0)) == [481]


def test_bye_from_our_side_and_its_retransmission(ua):
    uac = Uac()
    call = establish(ua, uac)
    out = ua.hangup(call, 2.0)
    bye = datagrams(out)[0]
    assert bye.method == "BYE" and bye.to_tag() == uac.from_tag and bye.from_tag() == uac.to_tag
    assert bye.call_id == uac.call_id
    assert events(out, CallEnded)[0].cause == "local_hangup"
    assert [m.method for m in datagrams(ua.tick(2.0 + T1))] == ["BYE"]  # Timer E
    ok = f"SIP/2.0 200 OK\r\nVia: {bye.get('via')}\r\nFrom: {bye.get('from')}\r\nTo: {bye.get('to')}\r\n" \
         f"Call-ID: {bye.call_id}\r\nCSeq: {bye.get('cseq')}\r\nContent-Length: 0\r\n\r\n"
    assert ua.feed(ok.encode(), CALLER, 2.6) == []
    assert datagrams(ua.tick(10.0)) == []  # no more retransmissions


def test_hangup_before_ack_defers_the_bye_until_the_ack(ua):
    uac = Uac()
    call = events(ua.feed(uac.invite(), CALLER, 0.0), IncomingCall)[0].call
    uac.learn_tag(datagrams(ua.answer(call, MEDIA, 0.0))[0])
    out = ua.hangup(call, 0.1)
    assert datagrams(out) == [] and events(out, CallEnded)[0].cause == "local_hangup"
    assert ua.active_calls == []
    out = ua.feed(uac.ack(), CALLER, 0.2)
    assert [m.method for m in datagrams(out)] == ["BYE"] and events(out) == []


def test_options_answers_allow_accept_supported(ua):
    response = datagrams(ua.feed(Uac().request("OPTIONS"), CALLER, 0.0))[0]
    assert response.status == 200
    assert "INVITE" in response.get("allow") and "REGISTER" not in response.get("allow")
    assert response.get("accept") == "application/sdp"
    assert response.get("supported") is not None


@pytest.mark.parametrize("method,status", [("REGISTER", 405), ("SUBSCRIBE", 405), ("FOOBAR", 501)])
def test_methods_we_do_not_serve(ua, method, status):
    response = datagrams(ua.feed(Uac().request(method), CALLER, 0.0))[0]
    assert response.status == status and "INVITE" in response.get("allow")


def test_info_dtmf_relay(ua):
    uac = Uac()
    call = establish(ua, uac)
    out = ua.feed(uac.in_dialog("INFO", "Signal=5\r\nDuration=160\r\n", "application/dtmf-relay"), CALLER, 1.0)
    assert statuses(out) == [200]
    assert events(out, DtmfInfo) == [DtmfInfo(call, "5", 160)]
    out = ua.feed(uac.in_dialog("INFO", "Signal=11\r\n", "application/dtmf-relay"), CALLER, 1.1)
    assert events(out, DtmfInfo)[0].digit == "#"
    assert statuses(ua.feed(uac.in_dialog("INFO", "Signal=X\r\n", "application/dtmf-relay"), CALLER, 1.2)) == [400]
    assert statuses(ua.feed(uac.in_dialog("INFO", "{}", "application/json"), CALLER, 1.3)) == [415]


def test_reinvite_hold_and_unhold(ua):
    uac = Uac()
    call = establish(ua, uac)
    hold = OFFER.replace("a=ptime:20\r\n", "a=ptime:20\r\na=sendonly\r\n")
    out = ua.feed(uac.in_dialog("INVITE", hold), CALLER, 1.0)
    answer = datagrams(out)[0]
    assert answer.status == 200 and ("recvonly", None) in parse_sdp(answer.body).media[0].attributes
    assert events(out, ReInvite)[0].media.on_hold
    ua.feed(uac.ack(), CALLER, 1.1)
    old_style_hold = OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0")
    assert events(ua.feed(uac.in_dialog("INVITE", old_style_hold), CALLER, 2.0), ReInvite)[0].media.on_hold
    ua.feed(uac.ack(), CALLER, 2.1)
    out = ua.feed(uac.in_dialog("INVITE", OFFER), CALLER, 3.0)
    assert not events(out, ReInvite)[0].media.on_hold
    assert call.state is CallState.CONFIRMED


def test_no_common_codec_is_488(ua):
    g729 = OFFER.replace("RTP/AVP 8 0 101", "RTP/AVP 18").replace("a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n", "")
    uac = Uac()
    out = ua.feed(uac.invite(g729), CALLER, 0.0)
    assert statuses(out) == [488]
    [refused] = events(out)  # no call, but the application hears of it (for the CDR)
    assert isinstance(refused, CallRefused) and refused.status == 488
    assert refused.sip_call_id == uac.call_id and refused.caller
    # The INVITE's retransmission gets the same 488 from the transaction, and no second event.
    again = ua.feed(uac.invite(g729), CALLER, 0.1)
    assert statuses(again) == [488] and events(again) == []


def test_invite_without_sdp_gets_an_offer_and_the_answer_in_ack(ua):
    uac = Uac()
    call = events(ua.feed(uac.invite(body=""), CALLER, 0.0), IncomingCall)[0].call
    assert call.media is None
    answer = datagrams(ua.answer(call, MEDIA, 0.0))[0]
    assert parse_sdp(answer.body).media[0].formats == ["0", "8", "101"]
    uac.learn_tag(answer)
    ack = uac.ack().replace(b"Content-Length: 0\r\n\r\n", f"Content-Type: application/sdp\r\nContent-Length: {len(OFFER)}\r\n\r\n{OFFER}".encode())
    assert events(ua.feed(ack, CALLER, 0.1), CallAnswered)
    assert call.media.remote_port == 30000


def test_call_limit_answers_503_with_retry_after(ua, sip_settings):
    for _ in range(sip_settings.max_calls):
        assert events(ua.feed(Uac().invite(), CALLER, 0.0), IncomingCall)
    out = ua.feed(Uac().invite(), CALLER, 0.0)
    response = datagrams(out)[0]
    assert response.status == 503 and response.get("retry-after") == str(sip_settings.retry_after_s)
    assert [e.status for e in events(out, CallRefused)] == [503]


def test_max_call_length_hangs_up(sip_settings):
    ua = UserAgent(dataclasses.replace(sip_settings, max_call_s=60.0), LOCAL)
    establish(ua, Uac())
    out = ua.tick(61.0)
    assert [m.method for m in datagrams(out) if m.is_request] == ["BYE"]
    assert events(out, CallEnded)[0].cause == "max_call_length"


def test_unanswered_call_is_declined_after_ring_timeout(ua):
    call = events(ua.feed(Uac().invite(), CALLER, 0.0), IncomingCall)[0].call
    out = ua.tick(1000.0)
    assert statuses(out) == [480] and events(out, CallEnded)[0].call is call


def test_replies_go_to_the_source_with_received_and_rport(ua):
    out = ua.feed(Uac().request("OPTIONS"), ("127.0.0.9", 5555), 0.0)
    assert out[0].dest == ("127.0.0.9", 5555)
    via = datagrams(out)[0].get("via")
    assert "received=127.0.0.9" in via and "rport=5555" in via


def test_in_dialog_request_for_unknown_dialog_gets_481(ua):
    assert statuses(ua.feed(Uac().request("BYE", to_tag="nope"), CALLER, 0.0)) == [481]
    assert statuses(ua.feed(Uac().request("INFO", to_tag="nope"), CALLER, 0.0)) == [481]


def test_unknown_require_gets_420_with_unsupported(ua):
    response = datagrams(ua.feed(Uac().invite(headers="Require: 100rel"), CALLER, 0.0))[0]
    assert response.status == 420 and response.get("unsupported") == "100rel"


def test_garbage_never_raises(ua):
    for blob in (b"", b"\x00" * 100, b"INVITE\r\n\r\n", bytes(range(256)) * 10, b"SIP/2.0 200\r\n\r\n", "你好".encode()):
        assert isinstance(ua.feed(blob, CALLER, 0.0), list)
    assert statuses(ua.feed(Uac().request("OPTIONS"), CALLER, 0.0)) == [200]


# ----------------------------------------------------------------------------------------------- REFER


def refer_response(refer, status: int) -> bytes:
    text = (f"SIP/2.0 {status} Whatever\r\nVia: {refer.get('via')}\r\nFrom: {refer.get('from')}\r\n"
            f"To: {refer.get('to')}\r\nCall-ID: {refer.call_id}\r\nCSeq: {refer.get('cseq')}\r\nContent-Length: 0\r\n\r\n")
    return text.encode()


def notify(uac: Uac, status_line: str) -> bytes:
    return uac.in_dialog("NOTIFY", status_line + "\r\n", "message/sipfrag",
                         headers="Event: refer\nSubscription-State: active;expires=60")


def start_refer(ua: UserAgent, uac: Uac, call):
    out = ua.refer_to_queue(call, "general", {"intent": "loan", "verified": True, "customer_ref": "c-42",
                                              "green_channel": False, "call_id": "abc\r\nX-Evil: 1"}, 1.0)
    refer = datagrams(out)[0]
    assert refer.method == "REFER" and refer.get("refer-to") == "<sip:general@127.0.0.1:5070>"
    assert refer.get("x-ivr-intent") == "loan" and refer.get("x-ivr-verified") == "true"
    assert refer.get("x-evil") is None and "\r" not in refer.get("x-ivr-call-id")
    assert out[0].dest == CALLER
    return refer


def test_refer_accepted_and_notify_200_ends_our_leg(ua):
    """Time to agent is the caller's wait: from our answer (t=0.0) to the NOTIFY 200 (the agent answered, t=4.0), not
    to the 202 (the queue took the REFER, t=1.1); the 202 is kept as refer_accepted_s, from the handoff (t=1.0)."""
    uac = Uac()
    call = establish(ua, uac)
    refer = start_refer(ua, uac, call)
    assert ua.feed(refer_response(refer, 202), CALLER, 1.1) == []
    assert events(ua.feed(notify(uac, "SIP/2.0 100 Trying"), CALLER, 1.2)) == []
    assert events(ua.feed(notify(uac, "SIP/2.0 180 Ringing"), CALLER, 2.0)) == []
    out = ua.feed(notify(uac, "SIP/2.0 200 OK"), CALLER, 4.0)
    assert statuses(out) == [200]
    [result] = events(out, TransferResult)
    assert (result.ok, result.detail) == (True, "200 OK")
    assert result.time_to_agent_s == pytest.approx(4.0) and result.refer_accepted_s == pytest.approx(0.1)
    assert [m.method for m in datagrams(out) if m.is_request] == ["BYE"]
    assert events(out, CallEnded)[0].cause == "transferred"


def test_a_final_notify_that_overtakes_the_202_still_times_the_transfer(ua):
    uac = Uac()
    call = establish(ua, uac)
    refer = start_refer(ua, uac, call)
    out = ua.feed(notify(uac, "SIP/2.0 200 OK"), CALLER, 1.4)  # UDP reordered: the 202 comes after
    [result] = events(out, TransferResult)
    assert result.ok and result.time_to_agent_s == pytest.approx(1.4) and result.refer_accepted_s == pytest.approx(0.4)
    assert ua.feed(refer_response(refer, 202), CALLER, 1.5) == []


def test_refer_failure_in_notify_gives_the_call_back(ua):
    uac = Uac()
    call = establish(ua, uac)
    refer = start_refer(ua, uac, call)
    ua.feed(refer_response(refer, 202), CALLER, 1.1)
    out = ua.feed(notify(uac, "SIP/2.0 503 Service Unavailable"), CALLER, 1.5)
    result = events(out, TransferResult)[0]
    assert not result.ok and "503" in result.detail
    assert call.state is CallState.CONFIRMED and [m for m in datagrams(out) if m.is_request] == []


def test_refer_rejected_outright(ua):
    uac = Uac()
    call = establish(ua, uac)
    refer = start_refer(ua, uac, call)
    out = ua.feed(refer_response(refer, 603), CALLER, 1.1)
    assert not events(out, TransferResult)[0].ok


def test_refer_without_final_notify_times_out(ua, sip_settings):
    uac = Uac()
    call = establish(ua, uac)
    refer = start_refer(ua, uac, call)
    ua.feed(refer_response(refer, 202), CALLER, 1.1)
    out = ua.tick(1.0 + sip_settings.refer_timeout_s + 0.1)
    assert events(out, TransferResult)[0].ok is False and call.state is CallState.CONFIRMED


def test_refer_unanswered_times_out_with_timer_f(ua):
    uac = Uac()
    call = establish(ua, uac)
    start_refer(ua, uac, call)
    out = []
    for step in range(1, 80):
        out += ua.tick(1.0 + step * 0.5)
    assert events(out, TransferResult)[0].ok is False


def test_refer_outside_the_routing_table_is_refused(ua):
    uac = Uac()
    call = establish(ua, uac)
    with pytest.raises(TransferNotAllowed):
        ua.refer(call, "sip:+8613800000000@carrier.example.com", [], 1.0)
    with pytest.raises(TransferNotAllowed):
        ua.refer_to_queue(call, "premium_rate", {}, 1.0)
    with pytest.raises(TransferNotAllowed):
        ua.refer(call, "sip:general@127.0.0.1:5070", [("Route", "<sip:evil.example.com>")], 1.0)


def test_a_call_is_found_from_its_transactions_by_their_keys_and_only_while_they_live(ua):
    """Issue 11: calls are never keyed by id(obj) (an id is reused once its object is gone). The core files each
    transaction's call under the key the transaction itself is filed under, and lets go of it with the transaction."""
    uac = Uac()
    call = establish(ua, uac)
    ua.feed(uac.in_dialog("INVITE", OFFER), CALLER, 0.5)  # a re-INVITE: its transaction awaits the ACK
    ua.feed(uac.ack(), CALLER, 0.6)
    start_refer(ua, uac, call)
    ua.hangup(call, 2.0)
    live = set(ua.server_transactions) | set(ua.client_transactions)
    assert ua._tx_calls and set(ua._tx_calls) <= live
    assert set(ua._tx_calls.values()) == {call}
    assert all(tx.call_id == call.id for key, tx in {**ua.server_transactions, **ua.client_transactions}.items()
               if key in ua._tx_calls)
    for step in range(1, 200):
        ua.tick(2.0 + step * T2)
    assert ua.server_transactions == {} and ua.client_transactions == {} and ua._tx_calls == {}


def test_the_screen_pop_reference_also_travels_as_user_to_user_for_the_agents_invite(ua, sip_settings):
    """RFC 7433: the UUI rides in the Refer-To URI, so the INVITE the caller's phone sends the agent carries it."""
    ref = "Ab-_9" * 6
    with_uui = UserAgent(dataclasses.replace(sip_settings, refer_uui=True), LOCAL)  # SIP_REFER_UUI=true
    refer = datagrams(with_uui.refer_to_queue(establish(with_uui, Uac()), "general", {"context_ref": ref}, 1.0))[0]
    target = parse_uri(refer.get("refer-to").strip("<>"))
    assert (target.user, target.host, target.port, target.params) == ("general", "127.0.0.1", 5070, {})
    name, _, escaped = target.headers.partition("=")
    assert name == "User-to-User" and uui.parse_reference(unquote(escaped)) == ref
    assert refer.get("x-ivr-context-ref") == ref

    # the default: a plain Refer-To, which every phone can act on (baresip 1.0 cannot act on URI headers)
    refer = datagrams(ua.refer_to_queue(establish(ua, Uac()), "general", {"context_ref": ref}, 1.0))[0]
    assert refer.get("refer-to") == "<sip:general@127.0.0.1:5070>" and refer.get("x-ivr-context-ref") == ref


def test_a_context_ref_that_is_not_ours_gets_no_user_to_user(sip_settings):
    ua = UserAgent(dataclasses.replace(sip_settings, refer_uui=True), LOCAL)
    refer = datagrams(ua.refer_to_queue(establish(ua, Uac()), "general", {"context_ref": "x;y=\r\n"}, 1.0))[0]
    assert refer.get("refer-to") == "<sip:general@127.0.0.1:5070>"


def test_the_screen_pop_reference_travels_with_the_refer_and_cannot_inject_headers(ua):
    uac = Uac()
    call = establish(ua, uac)
    out = ua.refer_to_queue(call, "general", {"intent": "loan", "context_ref": "Ab-_9" * 6 + "\r\nX-Evil: 1"}, 1.0)
    refer = datagrams(out)[0]
    assert refer.get("x-ivr-context-ref") == "Ab-_9" * 6 + "__X-Evil:_1"  # CR, LF and space made "_"
    assert refer.get("x-evil") is None
