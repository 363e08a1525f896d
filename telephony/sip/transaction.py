"""SIP transactions (RFC 3261 §17), sans I/O: they return datagrams and keep their own timers.

Server side: the INVITE server transaction (Proceeding → Completed → Confirmed → Terminated, Timers G, H, I),
with the RFC 6026 Accepted state so that the 2xx is retransmitted and INVITE retransmissions are absorbed
until the ACK arrives; the non-INVITE server transaction (Trying → Proceeding → Completed, Timer J).
Client side: the non-INVITE client transaction (Timers E, F, K) used for BYE and REFER.
Timers are absolute deadlines in the caller's clock (`now`), so tests drive time without sleeping.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from telephony.sip.message import SipMessage, SipSyntaxError

T1 = 0.5  # RTT estimate (§17.1.1.1)
T2 = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # maximum duration a message stays in the network
MAGIC_COOKIE = "z9hG4bK"

Address = tuple[str, int]


@dataclass(frozen=True)
class Datagram:
    """Bytes to send to `dest` over `transport` ("udp" or "tcp")."""

    data: bytes
    dest: Address
    transport: str = "udp"


class State(enum.Enum):
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"  # RFC 6026 §7.1
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(8)


def server_key(request: SipMessage, method: str | None = None) -> tuple:
    """§17.2.3 matching: branch + sent-by + method (ACK matches its INVITE), else the RFC 2543 fallback.
    `method` overrides the request's own, e.g. to find the INVITE a CANCEL refers to (§9.2)."""
    via = request.top_via
    method = method or ("INVITE" if request.method == "ACK" else request.method)
    if via.branch.startswith(MAGIC_COOKIE) and len(via.branch) > len(MAGIC_COOKIE):
        # Call-ID and CSeq number are redundant for a well-behaved peer and stop a peer that reuses branches
        # (the RFC 4475 messages do) from making a new request look like a retransmission.
        return ("rfc3261", via.branch, via.sent_by, method, request.call_id, request.cseq.number)
    # RFC 2543 peers: Request-URI, tags, Call-ID, CSeq number and the top Via identify the transaction.
    # The To tag is left out for INVITE/ACK because the ACK carries the tag we added in our response.
    to_tag = "" if method == "INVITE" else request.to_tag()
    top_via = request.get_all("via")[0]
    return ("rfc2543", request.uri, to_tag, request.from_tag(), request.call_id, request.cseq.number, top_via, method)


def client_key(branch: str, method: str) -> tuple:
    return (branch, method)


def response_client_key(response: SipMessage) -> tuple:
    """§17.1.3: a response matches the client transaction by top Via branch and CSeq method."""
    return client_key(response.top_via.branch, response.cseq.method)


class Transaction:
    """Common timer bookkeeping. `timers` maps the RFC timer name to its absolute deadline."""

    def __init__(self, peer: Address, transport: str):
        self.peer = peer
        self.transport = transport
        self.state = State.TRYING
        self.timers: dict[str, float] = {}
        self.timed_out = False

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def next_deadline(self) -> float | None:
        return min(self.timers.values(), default=None)

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        self.timers.clear()

    def _datagram(self, data: bytes) -> Datagram:
        return Datagram(data, self.peer, self.transport)

    def tick(self, now: float) -> list[Datagram]:
        out: list[Datagram] = []
        for name in sorted(self.timers, key=self.timers.__getitem__):
            if name in self.timers and self.timers[name] <= now:
                del self.timers[name]
                out += self._fire(name, now)
        return out

    def _fire(self, name: str, now: float) -> list[Datagram]:
        raise NotImplementedError


class ServerTransaction(Transaction):
    def __init__(self, request: SipMessage, peer: Address, transport: str):
        super().__init__(peer, transport)
        self.request = request
        self.last_response: bytes | None = None
        self.final_status = 0

    def retransmission(self) -> list[Datagram]:
        """A retransmitted request: repeat our latest response, if any (§17.2.1, §17.2.2)."""
        return [self._datagram(self.last_response)] if self.last_response else []


class InviteServerTransaction(ServerTransaction):
    def __init__(self, request: SipMessage, peer: Address, transport: str):
        super().__init__(request, peer, transport)
        self.state = State.PROCEEDING
        self.acked = False
        self._g_interval = T1

    def respond(self, response: SipMessage, now: float) -> list[Datagram]:
        if self.state not in (State.PROCEEDING,):
            return []  # a final response was already sent
        self.last_response = response.serialise()
        if response.status >= 200:
            self.final_status = response.status
            # 2xx: Accepted (RFC 6026), retransmitted until the ACK (§13.3.1.4); others: Completed (§17.2.1).
            self.state = State.ACCEPTED if response.status < 300 else State.COMPLETED
            if not self.reliable:
                self.timers["G"] = now + T1
            self.timers["H"] = now + 64 * T1
        return [self._datagram(self.last_response)]

    def ack(self, now: float) -> None:
        """The ACK arrived: for a 2xx the dialog is confirmed; for an error response Timer I absorbs retransmissions."""
        if self.state is State.ACCEPTED:
            # Stop retransmitting the 2xx but stay Accepted until Timer H (RFC 6026 Timer L) so that late
            # INVITE retransmissions are still absorbed instead of starting a new call.
            self.acked = True
            self.timers.pop("G", None)
        elif self.state is State.COMPLETED:
            self.state = State.CONFIRMED
            self.timers = {"I": now + (0 if self.reliable else T4)}

    def _fire(self, name: str, now: float) -> list[Datagram]:
        if name == "G" and self.state in (State.ACCEPTED, State.COMPLETED) and self.last_response:
            self._g_interval = min(2 * self._g_interval, T2)
            self.timers["G"] = now + self._g_interval
            return [self._datagram(self.last_response)]
        if name == "H":
            # No ACK within 64*T1: give up. For a 2xx the UAS core must end the dialog with BYE (§13.3.1.4).
            self.timed_out = not self.acked
            self._terminate()
        if name == "I":
            self._terminate()
        return []


class NonInviteServerTransaction(ServerTransaction):
    def respond(self, response: SipMessage, now: float) -> list[Datagram]:
        if self.state in (State.COMPLETED, State.TERMINATED):
            return []
        self.last_response = response.serialise()
        if response.status < 200:
            self.state = State.PROCEEDING
        else:
            self.final_status = response.status
            self.state = State.COMPLETED
            self.timers["J"] = now + (0 if self.reliable else 64 * T1)
        return [self._datagram(self.last_response)]

    def _fire(self, name: str, now: float) -> list[Datagram]:
        if name == "J":
            self._terminate()
        return []


class NonInviteClientTransaction(Transaction):
    """A BYE, REFER or other non-INVITE request we send (§17.1.2)."""

    def __init__(self, request: SipMessage, peer: Address, transport: str, now: float):
        super().__init__(peer, transport)
        self.request = request
        self.method = request.method
        self.branch = request.top_via.branch
        self.response: SipMessage | None = None
        self._data = request.serialise()
        self._e_interval = T1
        self.timers["F"] = now + 64 * T1
        if not self.reliable:
            self.timers["E"] = now + T1

    @property
    def key(self) -> tuple:
        return client_key(self.branch, self.method)

    def start(self) -> list[Datagram]:
        return [self._datagram(self._data)]

    def receive(self, response: SipMessage, now: float) -> bool:
        """Feed a matching response; True when it is new to the TU (a retransmitted final one is absorbed)."""
        if self.state in (State.COMPLETED, State.TERMINATED):
            return False
        self.response = response
        if response.status < 200:
            self.state = State.PROCEEDING
            return True
        self.state = State.COMPLETED
        self.timers = {"K": now + (0 if self.reliable else T4)}
        return True

    def _fire(self, name: str, now: float) -> list[Datagram]:
        if name == "E" and self.state in (State.TRYING, State.PROCEEDING):
            # Proceeding retransmits at T2 (§17.1.2.2).
            self._e_interval = T2 if self.state is State.PROCEEDING else min(2 * self._e_interval, T2)
            self.timers["E"] = now + self._e_interval
            return [self._datagram(self._data)]
        if name == "F":
            self.timed_out = True
            self._terminate()
        if name == "K":
            self._terminate()
        return []


def safe_server_key(request: SipMessage) -> tuple | None:
    try:
        return server_key(request)
    except SipSyntaxError:
        return None
