"""Parsing and serialising SIP messages (RFC 3261 §7, §25)."""

from __future__ import annotations

import pytest

from telephony.sip.message import (
    SipMessage,
    SipSyntaxError,
    build_response,
    check_request,
    frame_stream,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
)

FOLDED = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"v: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,\r\n SIP/2.0/TCP b.example.com;branch=z9hG4bK2\r\n"
    b"Via: SIP/2.0/UDP c.example.com:5070;branch=z9hG4bK3\r\n"
    b"f: \"Alice, A.\" <sip:alice@example.com>;tag=1\r\n"
    b"t: <sip:bob@example.com>\r\n"
    b"i: abc@host\r\n"
    b"CSeq: 1\r\n  INVITE\r\n"
    b"l: 4\r\n\r\nbodyEXTRA"
)


def test_folding_compact_forms_and_multi_values():
    message = parse_message(FOLDED)
    check_request(message)
    assert [parse_via(v).host for v in message.get_all("via")] == ["a.example.com", "b.example.com", "c.example.com"]
    assert message.cseq.number == 1 and message.cseq.method == "INVITE"
    assert message.call_id == "abc@host"
    assert parse_name_addr(message.get("from")).display == "Alice, A."
    assert message.body == b"body"  # bytes beyond Content-Length are not part of the datagram's message


def test_serialise_round_trip_recomputes_content_length():
    message = parse_message(FOLDED)
    message.body = b"longer body"
    again = parse_message(message.serialise())
    assert again.body == b"longer body" and again.get("content-length") == "11"
    assert again.serialise() == message.serialise()


@pytest.mark.parametrize("data", [
    b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nshort",
    b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"INVITE sip:a@b SIP/2.0\r\nBad Header Line\r\n\r\n",
    b"INVITE  sip:a@b SIP/2.0\r\n\r\n",
    b"no empty line at all",
])
def test_framing_errors(data):
    with pytest.raises(SipSyntaxError) as error:
        parse_message(data)
    assert error.value.status == 400


def test_uri_forms():
    uri = parse_uri("sip:user:pw@[2001:db8::1]:5070;transport=tcp;lr?subject=x")
    assert (uri.user, uri.host, uri.port, uri.params, uri.headers) == ("user:pw", "[2001:db8::1]", 5070,
                                                                       {"transport": "tcp", "lr": None}, "subject=x")
    assert parse_uri("tel:+8613800000000").scheme == "tel"
    for bad in ("sip:2001:db8::10", "sip:a@b:99999", "<sip:a@b>", "sip:a b@c", "1sip:x"):
        with pytest.raises(SipSyntaxError):
            parse_uri(bad)


def test_stream_framing_waits_for_the_whole_body():
    message = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 3\r\n\r\nabc"
    assert frame_stream(message[:-1], 8192) == (None, message[:-1])
    assert frame_stream(b"\r\n\r\n" + message + b"NEXT", 8192) == (message, b"NEXT")
    with pytest.raises(SipSyntaxError):
        frame_stream(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n", 8192)
    with pytest.raises(SipSyntaxError) as error:
        frame_stream(b"X" * 9000, 8192)
    assert error.value.status == 513


def test_response_echoes_headers_and_stamps_via():
    request = parse_message(FOLDED)
    response = build_response(request, 180, ("192.0.2.7", 6000), to_tag="tt")
    vias = response.get_all("via")
    assert vias[0] == "SIP/2.0/UDP a.example.com;branch=z9hG4bK1;received=192.0.2.7" and len(vias) == 3
    assert response.to_tag() == "tt" and response.call_id == "abc@host"
    assert build_response(request, 100, None, to_tag="tt").to_tag() == ""  # 100 Trying carries no tag


def test_headers_api():
    message = SipMessage(method="OPTIONS", uri="sip:a@b")
    message.add("Allow", "INVITE, BYE")
    message.set("allow", "ACK")
    assert message.get_all("ALLOW") == ["ACK"]
    assert b"Allow: ACK\r\n" in message.serialise()
