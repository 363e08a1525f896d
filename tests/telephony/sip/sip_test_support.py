"""Helpers shared by the SIP tests: a scripted UAC for the sans-I/O core and output filters."""

from __future__ import annotations

import itertools

from telephony.sip.message import SipMessage, parse_message
from telephony.sip.transaction import Datagram

CALLER = ("127.0.0.1", 40000)
LOCAL = ("127.0.0.1", 5099)
OFFER = (
    "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 30000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
)


class Uac:
    """A scripted caller: builds requests the way a phone would and reads what the core sends back."""

    _counter = itertools.count(1)

    def __init__(self, source: tuple[str, int] = CALLER):
        self.source = source
        n = next(self._counter)
        self.call_id = f"call-{n}@test"
        self.from_tag = f"ft{n}"
        self.cseq = 1
        self.to_tag = ""
        self.branch = f"z9hG4bK-b{n}-1"

    def request(self, method: str, body: str = "", content_type: str = "application/sdp", headers: str = "",
                branch: str | None = None, cseq: int | None = None, to_tag: str | None = None) -> bytes:
        tag = self.to_tag if to_tag is None else to_tag
        to = "<sip:ivr@127.0.0.1>" + (f";tag={tag}" if tag else "")
        lines = [
            f"{method} sip:ivr@127.0.0.1:5099 SIP/2.0",
            f"Via: SIP/2.0/UDP phone.example.com:5062;branch={branch or self.branch};rport",
            "Max-Forwards: 70",
            f"From: \"Caller\" <sip:13800000001@127.0.0.1>;tag={self.from_tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq if cseq is not None else self.cseq} {method}",
            "Contact: <sip:13800000001@127.0.0.1:40000>",
        ]
        if headers:
            lines += headers.strip().split("\n")
        if body:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def invite(self, body: str = OFFER, **kwargs) -> bytes:
        return self.request("INVITE", body, **kwargs)

    def ack(self) -> bytes:
        return self.request("ACK", branch=self.branch + "-ack", cseq=self.cseq)

    def in_dialog(self, method: str, body: str = "", content_type: str = "application/sdp", **kwargs) -> bytes:
        self.cseq += 1
        self.branch = self.branch.rsplit("-", 1)[0] + f"-{self.cseq}"
        return self.request(method, body, content_type, **kwargs)

    def learn_tag(self, response: SipMessage) -> None:
        self.to_tag = response.to_tag()


def datagrams(outputs: list) -> list[SipMessage]:
    return [parse_message(o.data) for o in outputs if isinstance(o, Datagram)]


def events(outputs: list, kind: type | None = None) -> list:
    return [o for o in outputs if not isinstance(o, Datagram) and (kind is None or isinstance(o, kind))]


def statuses(outputs: list) -> list[int]:
    return [m.status for m in datagrams(outputs) if not m.is_request]


def ack_for(response: SipMessage, request_uri: str = "") -> bytes:
    """The ACK a UAC sends for a final response to its INVITE, built from the response: for a 2xx a new
    transaction to the Contact (§13.2.2.4), for an error the same branch and Request-URI (§17.1.1.3)."""
    if response.status < 300:
        contact = response.get("contact") or "<sip:unknown@127.0.0.1>"
        target = contact[contact.find("<") + 1: contact.find(">")]
        via = "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-ack-" + response.call_id.replace(" ", "")[:20]
    else:
        target, via = request_uri, response.get_all("via")[0]
    lines = [
        f"ACK {target} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f"From: {response.get('from')}",
        f"To: {response.get('to')}",
        f"Call-ID: {response.call_id}",
        f"CSeq: {response.cseq.number} ACK",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
