"""SIP dialogs (RFC 3261 §12), UAS side: created by our 2xx to an INVITE.

A dialog knows its id (Call-ID, local tag, remote tag), both CSeq spaces, the route set and remote target
(from the INVITE's Record-Route and Contact), and builds in-dialog requests (BYE, REFER) from that state.
They go where §12.2.1.1 and §8.1.2 say: to the first Route if there is a route set, else to the remote target
(Contact) — not to wherever the INVITE came from. Only IP literals are followed: the sans-I/O core resolves no
names, so a target with a host name (or none we can parse) falls back to the INVITE's source.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

from telephony.sip.message import SipMessage, SipSyntaxError, SipUri, parse_name_addr, parse_uri
from telephony.sip.transaction import Address, new_branch

DEFAULT_SIP_PORT = 5060
FOLLOWED_TRANSPORTS = ("udp", "tcp")


def new_tag() -> str:
    return secrets.token_hex(6)


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the To of the INVITE (our identity), without tag
    remote_uri: str  # the From of the INVITE, without tag
    remote_target: str  # the Contact URI
    route_set: list[str]
    remote_cseq: int
    peer: Address  # where the INVITE came from: the fallback next hop when the target is not an IP literal
    transport: str
    local_contact: str
    local_cseq: int = field(default_factory=lambda: secrets.randbelow(2**20) + 1)

    @classmethod
    def from_invite(cls, invite: SipMessage, peer: Address, transport: str, local_contact: str) -> "Dialog":
        """§12.1.1: the UAS side state. A missing or odd Contact falls back to the From URI."""
        from_addr = parse_name_addr(invite.get("from") or "")
        to_addr = parse_name_addr(invite.get("to") or "")
        contacts = invite.get_all("contact")
        target = from_addr.uri
        if contacts:
            try:
                target = parse_name_addr(contacts[0]).uri
            except SipSyntaxError:
                pass
        return cls(
            call_id=invite.call_id,
            local_tag=new_tag(),
            remote_tag=from_addr.params.get("tag") or "",
            local_uri=to_addr.uri if not to_addr.display else f'"{to_addr.display}" <{to_addr.uri}>',
            remote_uri=from_addr.uri,
            remote_target=target,
            route_set=invite.get_all("record-route"),  # UAS keeps Record-Route order (§12.1.1)
            remote_cseq=invite.cseq.number,
            peer=peer,
            transport=transport,
            local_contact=local_contact,
        )

    def accepts_remote_cseq(self, number: int) -> bool:
        """§12.2.2: a request whose CSeq is not above the last one is out of order (answer 500). Equal is refused
        too: a retransmission never gets here (its transaction absorbs it), so an equal CSeq is a replay."""
        if number <= self.remote_cseq:
            return False
        self.remote_cseq = number
        return True

    def next_hop(self) -> tuple[Address, str]:
        """Where an in-dialog request is sent, and over what: the first Route of the route set, else the remote
        target (§12.2.1.1 with §8.1.2). The URI's `transport` parameter wins, else the INVITE's transport.
        A sips: URI would need TLS, which we do not speak: it falls back to the INVITE's source too."""
        first = self._first_route()
        uri = first if first is not None else _sip_uri_or_none(self.remote_target)
        host = _ip_literal(uri.host) if uri is not None else None
        if uri is None or uri.scheme != "sip" or host is None:
            return self.peer, self.transport
        transport = (uri.params.get("transport") or "").lower()
        return (host, uri.port or DEFAULT_SIP_PORT), transport if transport in FOLLOWED_TRANSPORTS else self.transport

    def _first_route(self) -> SipUri | None:
        if not self.route_set:
            return None
        try:
            return parse_name_addr(self.route_set[0]).uri_parsed()
        except SipSyntaxError:
            return None

    def _request_uri_and_routes(self) -> tuple[str, list[str]]:
        """§12.2.1.1: with a loose router first (`lr`) the Request-URI is the remote target and the Route header
        is the route set; with a strict router it is that router's URI, and the remote target goes last."""
        first = self._first_route()
        if first is None or "lr" in first.params:
            return self.remote_target, list(self.route_set)
        return first.raw, self.route_set[1:] + [f"<{self.remote_target}>"]

    def create_request(
        self, method: str, via_sent_by: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""
    ) -> SipMessage:
        """§12.2.1.1: a request within the dialog, with a fresh branch and the next local CSeq."""
        self.local_cseq += 1
        request_uri, routes = self._request_uri_and_routes()
        request = SipMessage(method=method, uri=request_uri)
        transport = "TCP" if self.next_hop()[1] == "tcp" else "UDP"
        request.add("via", f"SIP/2.0/{transport} {via_sent_by};branch={new_branch()};rport")
        request.add("max-forwards", "70")
        request.add("from", f"<{self.local_uri}>;tag={self.local_tag}" if "<" not in self.local_uri else f"{self.local_uri};tag={self.local_tag}")
        request.add("to", f"<{self.remote_uri}>;tag={self.remote_tag}" if self.remote_tag else f"<{self.remote_uri}>")
        request.add("call-id", self.call_id)
        request.add("cseq", f"{self.local_cseq} {method}")
        for route in routes:
            request.add("route", route)
        request.add("contact", self.local_contact)
        request.headers += headers or []
        request.body = body
        return request


def _sip_uri_or_none(text: str) -> SipUri | None:
    try:
        uri = parse_uri(text)
    except SipSyntaxError:
        return None
    return uri


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None
