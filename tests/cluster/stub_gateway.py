"""A scripted SIP gateway for the SIP front's tests: a UDP UAS that keeps every request exactly as it arrived.

Our real gateways (`python -m telephony.sip_calls --echo`) say in their logs which calls they took; they cannot say
which headers an INVITE carried or where its BYE came from. This stub can: it answers OPTIONS 200 (so the front's
probes keep it in the pool), every INVITE with 100 (and 180 if `ring`) then `final` (200 with SDP, copying the
Record-Route set as a UAS must, RFC 3261 §12.1.1; or 503 with Retry-After; or, with `final=None`, nothing more: a
gateway stuck after its 100), BYE and CANCEL 200, and records each request with its source address.
It runs on the test's event loop; `close()` in a `finally`.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field

COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length"}
ECHOED = ("via", "from", "to", "call-id", "cseq")


@dataclass(frozen=True)
class Received:
    method: str
    source: tuple[str, int]
    text: str
    headers: tuple[tuple[str, str], ...]

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]

    def get(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    @property
    def call_id(self) -> str:
        return self.get("call-id") or ""


def parse(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    head = text.split("\r\n\r\n", 1)[0]
    start, *lines = head.split("\r\n")
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers.append((COMPACT.get(key, key), value.strip()))
    return start, tuple(headers)


RING_S = 0.2


@dataclass(eq=False)
class StubGateway(asyncio.DatagramProtocol):
    name: str
    final: int | None = 200  # the answer to every INVITE: 200, an error such as 503, or None: never a final answer
    ring: bool = False  # 180 Ringing before the final answer, which then comes RING_S later
    host: str = "127.0.0.1"
    port: int = 0
    received: list[Received] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None
    answered: dict[str, bytes] = field(default_factory=dict)  # INVITE branch -> our final answer (retransmissions)

    async def start(self) -> "StubGateway":
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.host, self.port))
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def requests(self, method: str) -> list[Received]:
        return [request for request in self.received if request.method == method]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode("utf-8", errors="replace")
        start, headers = parse(text)
        if start.startswith("SIP/2.0"):
            return  # a response: we send no requests
        method = start.split(" ", 1)[0]
        request = Received(method, addr, text, headers)
        self.received.append(request)
        if method == "ACK":
            return
        if method == "INVITE":
            branch = (request.get("via") or "").split("branch=")[-1]
            if branch in self.answered:  # a retransmission: the same answer again
                self._send(self.answered[branch], addr)
                return
            self._send(self._response(request, 100, "Trying"), addr)
            tag = f"{self.name}-{secrets.token_hex(4)}"
            if self.ring:
                self._send(self._response(request, 180, "Ringing", tag=tag), addr)
            if self.final is None:
                return  # stuck: a retransmission gets its 100 (and 180) again
            final = self._invite_answer(request, tag)
            self.answered[branch] = final
            if self.ring:
                # A ring lasts: sent in the same instant, the 180 and the final could be taken by two of Kamailio's
                # UDP workers at once, and which of its reply and failure routes runs first is then undefined.
                asyncio.get_running_loop().call_later(RING_S, self._send, final, addr)
            else:
                self._send(final, addr)
            return
        self._send(self._response(request, 200, "OK"), addr)

    def _invite_answer(self, request: Received, tag: str) -> bytes:
        if self.final != 200:
            return self._response(request, self.final, "Service Unavailable" if self.final == 503 else "Error",
                                  [("Retry-After", "1")] if self.final == 503 else [], tag=tag)
        sdp = (f"v=0\r\no=stub 1 1 IN IP4 {self.host}\r\ns=-\r\nc=IN IP4 {self.host}\r\nt=0 0\r\n"
               f"m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
        extra = [("Record-Route", value) for value in request.all("record-route")]
        extra += [("Contact", f"<sip:{self.name}@{self.host}:{self.port}>"), ("Content-Type", "application/sdp")]
        return self._response(request, 200, "OK", extra, tag=tag, body=sdp)

    def _response(self, request: Received, status: int, reason: str, extra: list[tuple[str, str]] = (),
                  tag: str | None = None, body: str = "") -> bytes:
        lines = [f"SIP/2.0 {status} {reason}"]
        for key, value in request.headers:
            if key not in ECHOED:
                continue
            if key == "to" and tag and "tag=" not in value:
                value = f"{value};tag={tag}"
            lines.append(f"{key.title() if key != 'call-id' else 'Call-ID'}: {value}")
        lines += [f"{name}: {value}" for name, value in extra]
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)
