"""SIP transactions (RFC 3261 §17), sans I/O: they return datagrams and keep their own timers.

Server side: the INVITE server transaction (Proceeding → Completed → Confirmed → Terminated, Timers G, H, I),
with the RFC 6026 Accepted state so that the 2xx is retransmitted and INVITE retransmissions are absorbed
until the ACK arrives; the non-INVITE server transaction (Trying → Proceeding → Completed, Timer J).
Client side: the non-INVITE client transaction (Timers E, F, K) used for BYE and REFER.
Timers are absolute deadlines in the caller's clock (`now`), so tests drive time without sleeping.

No server transaction lives forever: RFC 3261 §17.2.1 gives Proceeding (and §17.2.2 Trying) no timer of its own
and relies on the TU to answer. If it never does (a bug, a lost event), the "Proceeding guard" answers 408 itself,
and Completed's timers then end the transaction as usual. Every state change goes through `_set_state`, which
logs `old -> new` with the call id.
"""

from __future__ import annotations

import enum
import logging
import secrets
from dataclasses import dataclass

from bot.call_log import UNKNOWN_CALL, call_logger
from telephony.sip.message import SipMessage, build_response

log = logging.getLogger(__name__)

T1 = 0.5  # RTT estimate (§17.1.1.1)
T2 = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # maximum duration a message stays in the network
MAGIC_COOKIE = "z9hG4bK"
# The Proceeding guard. For an INVITE it is modelled on a proxy's Timer C (§16.6 step 11: "MUST be greater than
# 3 minutes"): the UAS core declines an unanswered call earlier (uas.RING_TIMEOUT_S), so this only fires when the TU
# lost the transaction. For other requests it is Timer F (64*T1, §17.1.2.2): by then the client has given up.
PROCEEDING_GUARD = "guard"
INVITE_PROCEEDING_GUARD_S = 181.0
NON_INVITE_PROCEEDING_GUARD_S = 64 * T1
PROCEEDING_GUARD_STATUS = 408  # §21.4.9: "could not produce a response within a suitable amount of time"

Address = tuple[str, int]


@dataclass(frozen=True)
class Datagram:
    """Bytes to send to `dest` over `transport` ("udp" or "tcp"). `may_connect`: a request of ours, for which the
    transport opens a new TCP connection if none is open to `dest` (§18.1.1); a response only ever goes back on the
    connection its request came on (§18.2.2), so it is dropped when that is gone."""

    data: bytes
    dest: Address
    transport: str = "udp"
    may_connect: bool = False


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
    """Common timer bookkeeping. `timers` maps the RFC timer name to its absolute deadline.
    `call_id` is our id of the call it belongs to (set by the UAS core), for the log lines."""

    def __init__(self, peer: Address, transport: str, method: str):
        self.peer = peer
        self.transport = transport
        self.method = method
        self.state = State.TRYING
        self.timers: dict[str, float] = {}
        self.timed_out = False
        self.call_id = UNKNOWN_CALL

    def _set_state(self, state: State) -> None:
        if state is not self.state:
            call_logger(log, self.call_id).debug("%s %s transaction: %s -> %s", self.method, self.kind,
                                                 self.state.value, state.value)
            self.state = state

    @property
    def kind(self) -> str:
        return "server" if isinstance(self, ServerTransaction) else "client"

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def next_deadline(self) -> float | None:
        return min(self.timers.values(), default=None)

    def _terminate(self) -> None:
        self._set_state(State.TERMINATED)
        self.timers.clear()

    def _datagram(self, data: bytes) -> Datagram:
        return Datagram(data, self.peer, self.transport, may_connect=isinstance(self, NonInviteClientTransaction))

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
    GUARD_S = NON_INVITE_PROCEEDING_GUARD_S

    def __init__(self, request: SipMessage, peer: Address, transport: str, now: float = 0.0):
        super().__init__(peer, transport, request.method)
        self.request = request
        self.last_response: bytes | None = None
        self.final_status = 0
        self.to_tag = ""  # the tag of our provisional responses; a final one must carry the same
        self.timers[PROCEEDING_GUARD] = now + self.GUARD_S

    @property
    def key(self) -> tuple:
        """The key the UAS core files this transaction under (§17.2.3)."""
        return server_key(self.request)

    def retransmission(self) -> list[Datagram]:
        """A retransmitted request: repeat our latest response, if any (§17.2.1, §17.2.2)."""
        return [self._datagram(self.last_response)] if self.last_response else []

    def respond(self, response: SipMessage, now: float) -> list[Datagram]:
        raise NotImplementedError

    def _remember(self, response: SipMessage) -> bytes:
        self.last_response = response.serialise()
        if response.status > 100:
            self.to_tag = self.to_tag or response.to_tag()
        if response.status >= 200:
            self.final_status = response.status
            self.timers.pop(PROCEEDING_GUARD, None)
        return self.last_response

    def _guard_expired(self, now: float) -> list[Datagram]:
        """The TU never gave a final response: give one ourselves, so the peer stops waiting and we can end."""
        if self.final_status:
            return []
        call_logger(log, self.call_id).warning("%s got no final response from the application: %d",
                                               self.method, PROCEEDING_GUARD_STATUS)
        self.timed_out = True
        response = build_response(self.request, PROCEEDING_GUARD_STATUS, self.peer, self.to_tag or secrets.token_hex(6))
        return self.respond(response, now)


class InviteServerTransaction(ServerTransaction):
    GUARD_S = INVITE_PROCEEDING_GUARD_S

    def __init__(self, request: SipMessage, peer: Address, transport: str, now: float = 0.0):
        super().__init__(request, peer, transport, now)
        self.state = State.PROCEEDING
        self.acked = False
        self._g_interval = T1

    def respond(self, response: SipMessage, now: float) -> list[Datagram]:
        if self.state not in (State.PROCEEDING,):
            return []  # a final response was already sent
        self._remember(response)
        if response.status >= 200:
            # 2xx: Accepted (RFC 6026), retransmitted until the ACK (§13.3.1.4); others: Completed (§17.2.1).
            self._set_state(State.ACCEPTED if response.status < 300 else State.COMPLETED)
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
            self._set_state(State.CONFIRMED)
            self.timers = {"I": now + (0 if self.reliable else T4)}

    def _fire(self, name: str, now: float) -> list[Datagram]:
        if name == PROCEEDING_GUARD:
            return self._guard_expired(now)
        if name == "G" and self.state in (State.ACCEPTED, State.COMPLETED) and self.last_response:
            self._g_interval = min(2 * self._g_interval, T2)
            self.timers["G"] = now + self._g_interval
            return [self._datagram(self.last_response)]
        if name == "H":
            # No ACK within 64*T1: give up. For a 2xx the UAS core must end the dialog with BYE (§13.3.1.4).
            self.timed_out = self.timed_out or not self.acked
            self._terminate()
        if name == "I":
            self._terminate()
        return []


class NonInviteServerTransaction(ServerTransaction):
    def respond(self, response: SipMessage, now: float) -> list[Datagram]:
        if self.state in (State.COMPLETED, State.TERMINATED):
            return []
        self._remember(response)
        if response.status < 200:
            self._set_state(State.PROCEEDING)
        else:
            self._set_state(State.COMPLETED)
            self.timers["J"] = now + (0 if self.reliable else 64 * T1)
        return [self._datagram(self.last_response)]

    def _fire(self, name: str, now: float) -> list[Datagram]:
        if name == PROCEEDING_GUARD:
            return self._guard_expired(now)
        if name == "J":
            self._terminate()
        return []


class NonInviteClientTransaction(Transaction):
    """A BYE, REFER or other non-INVITE request we send (§17.1.2)."""

    def __init__(self, request: SipMessage, peer: Address, transport: str, now: float):
        super().__init__(peer, transport, request.method)
        self.request = request
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
            self._set_state(State.PROCEEDING)
            return True
        self._set_state(State.COMPLETED)
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

