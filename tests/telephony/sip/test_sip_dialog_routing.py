"""Requests we send inside a dialog (BYE, REFER) follow the remote target (Contact) and the route set
(Record-Route), RFC 3261 §12.2.1.1 — not the address the INVITE happened to come from."""

from __future__ import annotations

import pytest

from sip_test_support import Uac, datagrams, events
from telephony.sip.sdp import LocalMedia
from telephony.sip.uas import CallAnswered, IncomingCall, UserAgent

PROXY = ("127.0.0.20", 5080)


def invite(uac: Uac, contact: str, record_route: str = "") -> bytes:
    data = uac.invite(headers=f"Record-Route: {record_route}" if record_route else "")
    return data.replace(b"Contact: <sip:13800000001@127.0.0.1:40000>", f"Contact: {contact}".encode())


def establish(ua: UserAgent, uac: Uac, contact: str, record_route: str = "", source=PROXY, transport: str = "udp"):
    call = events(ua.feed(invite(uac, contact, record_route), source, 0.0, transport), IncomingCall)[0].call
    uac.learn_tag(datagrams(ua.answer(call, LocalMedia("127.0.0.1", 20000), 0.0))[0])
    assert events(ua.feed(uac.ack(), source, 0.01, transport), CallAnswered)
    return call


def bye_of(ua: UserAgent, call):
    [out] = [o for o in ua.hangup(call, 1.0) if hasattr(o, "dest")]
    return out, datagrams([out])[0]


def test_bye_goes_to_the_contact_not_the_source(ua):
    call = establish(ua, Uac(), "<sip:13800000001@127.0.0.30:5062>")
    out, bye = bye_of(ua, call)
    assert out.dest == ("127.0.0.30", 5062) and out.transport == "udp"
    assert bye.uri == "sip:13800000001@127.0.0.30:5062" and bye.get("route") is None


def test_a_loose_route_set_is_followed_and_carried(ua):
    route = "<sip:127.0.0.20:5080;lr>, <sip:10.9.9.9;lr>"
    call = establish(ua, Uac(), "<sip:13800000001@127.0.0.30:5062>", route)
    out, bye = bye_of(ua, call)
    assert out.dest == PROXY
    assert bye.uri == "sip:13800000001@127.0.0.30:5062"  # the remote target stays the Request-URI
    assert bye.get_all("route") == ["<sip:127.0.0.20:5080;lr>", "<sip:10.9.9.9;lr>"]


def test_a_strict_router_gets_the_request_uri_and_the_target_goes_last(ua):
    call = establish(ua, Uac(), "<sip:13800000001@127.0.0.30:5062>", "<sip:127.0.0.20:5080>")
    out, bye = bye_of(ua, call)
    assert out.dest == PROXY and bye.uri == "sip:127.0.0.20:5080"
    assert bye.get_all("route") == ["<sip:13800000001@127.0.0.30:5062>"]


def test_the_contacts_transport_parameter_is_followed_with_a_new_connection_allowed(ua):
    call = establish(ua, Uac(), "<sip:13800000001@127.0.0.30:5062;transport=tcp>")
    out, bye = bye_of(ua, call)
    assert (out.dest, out.transport, out.may_connect) == (("127.0.0.30", 5062), "tcp", True)
    assert "SIP/2.0/TCP" in bye.get("via")


@pytest.mark.parametrize("contact", ["<sip:13800000001@phone.example.com:5062>", "<sips:13800000001@127.0.0.30>",
                                     "<tel:+8613800000001>"])
def test_a_target_we_cannot_reach_without_dns_or_tls_falls_back_to_the_source(ua, contact):
    call = establish(ua, Uac(), contact)
    out, _ = bye_of(ua, call)
    assert out.dest == PROXY


def test_a_call_over_tcp_keeps_tcp_when_the_contact_does_not_say(ua):
    call = establish(ua, Uac(), "<sip:13800000001@127.0.0.30:5062>", transport="tcp")
    out, _ = bye_of(ua, call)
    assert (out.dest, out.transport) == (("127.0.0.30", 5062), "tcp")


def test_refer_follows_the_same_path(ua):
    call = establish(ua, Uac(), "<sip:13800000001@127.0.0.30:5062>", "<sip:127.0.0.20:5080;lr>")
    [out] = [o for o in ua.refer_to_queue(call, "general", {}, 1.0) if hasattr(o, "dest")]
    refer = datagrams([out])[0]
    assert out.dest == PROXY and refer.method == "REFER" and refer.get("route") == "<sip:127.0.0.20:5080;lr>"


def test_responses_still_go_to_the_source(ua):
    uac = Uac()
    establish(ua, uac, "<sip:13800000001@127.0.0.30:5062>")
    [out] = ua.feed(uac.in_dialog("INFO", "Signal=1\r\n", "application/dtmf-relay"), PROXY, 1.0)[:1]
    assert out.dest == PROXY and not out.may_connect


def test_dialog_creating_responses_carry_the_invites_record_route_in_order(ua):
    """§12.1.1: the UAS copies every Record-Route value into its 18x/2xx, so the caller's ACK and BYE also pass the
    proxies that asked to stay in the path (a Kamailio front's loose_route); without them they bypass it."""
    uac = Uac()
    route = "<sip:127.0.0.20:5080;lr;ftag=abc>, <sip:10.9.9.9;lr>"
    call = events(ua.feed(invite(uac, "<sip:13800000001@127.0.0.30:5062>", route), PROXY, 0.0), IncomingCall)[0].call
    ringing = datagrams(ua.ringing(call, 0.0))[0]
    ok = datagrams(ua.answer(call, LocalMedia("127.0.0.1", 20000), 0.0))[0]
    for response in (ringing, ok):
        assert response.get_all("record-route") == ["<sip:127.0.0.20:5080;lr;ftag=abc>", "<sip:10.9.9.9;lr>"]


def test_responses_outside_dialog_creation_carry_no_record_route(ua):
    uac = Uac()
    data = invite(uac, "<sip:13800000001@127.0.0.30:5062>", "<sip:127.0.0.20:5080;lr>")
    trying = datagrams(ua.feed(data, PROXY, 0.0))[0]
    assert trying.status == 100 and trying.get("record-route") is None
