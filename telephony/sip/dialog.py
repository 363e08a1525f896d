"""SIP dialogs (RFC 3261 §12), UAS side: created by our 2xx to an INVITE.

A dialog knows its id (Call-ID, local tag, remote tag), both CSeq spaces, the route set and remote target
(from the INVITE's Record-Route and Contact), and builds in-dialog requests (BYE, REFER) from that state.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from telephony.sip.message import SipMessage, SipSyntaxError, parse_name_addr
from telephony.sip.transaction import Address, new_branch


def new_tag() -> str:
    return secrets.token_hex(6)


@dataclass(frozen=True)
class DialogId:
    call_id: str
    local_tag: str
    remote_tag: str


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
    peer: Address  # where the INVITE came from: in-dialog requests go there (symmetric signalling)
    transport: str
    local_contact: str
    local_cseq: int = field(default_factory=lambda: secrets.randbelow(2**20) + 1)
    confirmed: bool = False

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

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
        """§12.2.2: a request with a lower CSeq than the last one is out of order (answer 500)."""
        if number < self.remote_cseq:
            return False
        self.remote_cseq = number
        return True

    def create_request(
        self, method: str, via_sent_by: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""
    ) -> SipMessage:
        """§12.2.1.1: a request within the dialog, with a fresh branch and the next local CSeq."""
        self.local_cseq += 1
        request = SipMessage(method=method, uri=self.remote_target)
        transport = "TCP" if self.transport == "tcp" else "UDP"
        request.add("via", f"SIP/2.0/{transport} {via_sent_by};branch={new_branch()};rport")
        request.add("max-forwards", "70")
        request.add("from", f"<{self.local_uri}>;tag={self.local_tag}" if "<" not in self.local_uri else f"{self.local_uri};tag={self.local_tag}")
        request.add("to", f"<{self.remote_uri}>;tag={self.remote_tag}" if self.remote_tag else f"<{self.remote_uri}>")
        request.add("call-id", self.call_id)
        request.add("cseq", f"{self.local_cseq} {method}")
        for route in self.route_set:
            request.add("route", route)
        request.add("contact", self.local_contact)
        request.headers += headers or []
        request.body = body
        return request
