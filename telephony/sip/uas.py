"""The SIP user agent core, sans I/O: `feed(datagram, source, now)` and `tick(now)` return outputs.

Outputs are `Datagram`s to send (always to the packet's source, RFC 3581 — never to a host taken from Via)
and events for the application: IncomingCall, CallAnswered (ACK received), CallEnded, DtmfInfo, ReInvite,
TransferResult. The application acts through `ringing`, `answer`, `reject`, `hangup` and `refer`.

Request handling follows RFC 3261 §8.2 in order: syntax (400/505), method (405/501), Request-URI scheme
(416), Require (420), Content-Type (415), then the method itself. This module knows SIP, not banking.

Behind a proxy or NAT the address we are bound to is not the one peers must reach: Via sent-by, Contact (and,
through the application's LocalMedia, SDP) name `advertised_host` (`advertised_host_for`), never a wildcard. The
caller is From's user, or a trusted proxy's P-Asserted-Identity (telephony/sip/identity.py, RFC 3325).
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import re
from dataclasses import dataclass, field
from typing import Iterable, Union

from settings import SipSettings
from bot.masking import mask_caller_number
from call_contract import DTMF_KEYS
from bot import call_ids
from bot.call_log import UNKNOWN_CALL, CallLoggerAdapter, call_logger
from telephony.rtp.dtmf import key_for_event_code
from telephony.sip.dialog import Dialog, new_tag
from telephony.sip.digits import ascii_int
from telephony.sip.identity import UNTRUSTED, CallerIdentity, caller_identity, uri_user
from telephony.sip.message import (
    SIP_VERSION,
    SipMessage,
    SipSyntaxError,
    build_response,
    check_request,
    media_type,
    parse_message,
    parse_uri,
)
from telephony.sip.refer import RoutingTable, TransferNotAllowed, context_headers, sipfrag_status
from telephony.sip import uui as uui_header
from telephony.sip.sdp import LocalMedia, MediaPlan, NoCommonCodec, SdpError, build_answer, build_offer, negotiate, parse_sdp
from telephony.sip.security import Gate, is_scanner
from telephony.sip.transaction import (
    Address,
    Datagram,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
    State,
    response_client_key,
    server_key,
)

log = logging.getLogger(__name__)

ALLOWED_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "NOTIFY")
# Methods we recognise but do not serve (405 with Allow); anything else is 501 (§8.2.1).
KNOWN_METHODS = ALLOWED_METHODS + ("REGISTER", "MESSAGE", "SUBSCRIBE", "PUBLISH", "UPDATE", "PRACK", "REFER")
SUPPORTED_URI_SCHEMES = ("sip", "sips", "tel")
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()  # option tags we honour in Require (§8.2.2.3)
ACCEPTED_BODIES = {
    "INVITE": ("application/sdp",),
    "ACK": ("application/sdp",),
    "INFO": ("application/dtmf-relay", "application/dtmf"),
    "NOTIFY": ("message/sipfrag",),
}
RING_TIMEOUT_S = 120.0  # an INVITE the application never answers is declined after this
CSEQ_OUT_OF_ORDER = "CSeq out of order"
# Signal= is a key (either case) or an RFC 4733 event code 10-16 (16, flash, is no key)
_DTMF_KEY_CLASS = "[" + re.escape("".join(sorted(DTMF_KEYS))) + "]"
DTMF_SIGNAL_RE = re.compile(r"(?im)^\s*signal\s*=\s*(%s|1[0-6])\s*$" % _DTMF_KEY_CLASS)
DTMF_DURATION_RE = re.compile(r"(?im)^\s*duration\s*=\s*([0-9]+)\s*$")
UUI_HEADER_NAME = "user-to-user"  # RFC 7433; by its full name only ("user-to-user-x" is another header)
ALLOWED_REFER_HEADER_PREFIX = "x-ivr-"
CONTEXT_HEADER_PREFIX = "x-"  # with User-to-User, an INVITE's context for whoever answers (trunk, transfer)
HOST_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9])?")  # RFC 3261 §25.1 hostname, loosely


class CallState(enum.Enum):
    RINGING = "ringing"  # INVITE received, no final response yet
    ANSWERED = "answered"  # 200 OK sent, waiting for the ACK
    CONFIRMED = "confirmed"  # ACK received: media flows
    ENDED = "ended"


def new_call_id() -> str:
    """Our id of a call (bot/call_ids.py): the conversation id upstream. The peer's Call-ID is only kept as a
    reference (`sip_call_id`, the CDR's peer_call_id)."""
    return call_ids.new_call_id(call_ids.DOOR_SIP)


@dataclass
class Transfer:
    target: str
    deadline: float
    refer_key: tuple
    accepted: bool = False
    accepted_at: float | None = None  # the 2xx to the REFER: the queue took the caller (not yet an agent)
    started_at: float = 0.0  # the REFER went out: the handoff, where REFER accepted is measured from


@dataclass(eq=False)
class Call:
    """One inbound call. `id` is ours (`new_call_id`); `sip_call_id` is the peer's Call-ID header."""

    sip_call_id: str
    caller: str
    callee: str
    peer: Address
    transport: str
    dialog: Dialog
    invite_tx: InviteServerTransaction
    media: MediaPlan | None
    created_at: float
    id: str = field(default_factory=new_call_id)
    state: CallState = CallState.RINGING
    local_media: LocalMedia | None = None
    answered_at: float | None = None
    transfer: Transfer | None = None
    ack_tx: InviteServerTransaction | None = None  # the transaction whose 2xx waits for an ACK
    bye_after_ack: bool = False  # we hung up before the ACK: the BYE waits for it (§15)
    headers: dict[str, str] = field(default_factory=dict)  # X- and User-to-User headers of the INVITE (context)

    @property
    def log(self) -> CallLoggerAdapter:
        """This module's logger, every line tagged `call=<id>`."""
        return call_logger(log, self.id)

    def _set_state(self, state: CallState) -> None:
        """Every call state change goes through here, so the log tells a call's whole life."""
        if state is not self.state:
            self.log.debug("call state: %s -> %s", self.state.value, state.value)
            self.state = state


@dataclass(frozen=True)
class IncomingCall:
    call: Call


@dataclass(frozen=True)
class CallAnswered:
    call: Call


@dataclass(frozen=True)
class CallEnded:
    call: Call
    cause: str


@dataclass(frozen=True)
class DtmfInfo:
    call: Call
    digit: str
    duration_ms: int


@dataclass(frozen=True)
class ReInvite:
    call: Call
    media: MediaPlan


@dataclass(frozen=True)
class TransferResult:
    call: Call
    ok: bool
    detail: str
    # ok only: from our 200 OK (the caller starts waiting) to the NOTIFY whose sipfrag says `SIP/2.0 200`: the agent answered
    time_to_agent_s: float | None = None
    refer_accepted_s: float | None = None  # ok only: from the handoff to the 2xx to our REFER (the queue took it)


@dataclass(frozen=True)
class CallRefused:
    """A new INVITE this core refused with a final error itself (406, 400 bad SDP, 488 no common codec, 503 over
    the call limit). No Call exists, but operators still count and record it."""

    sip_call_id: str
    caller: str
    status: int
    id: str = field(default_factory=new_call_id)


Event = Union[IncomingCall, CallAnswered, CallEnded, DtmfInfo, ReInvite, TransferResult, CallRefused]
Output = Union[Datagram, Event]


class CallError(RuntimeError):
    """The application asked for something the call's state does not allow."""


class AdvertisedAddressError(ValueError):
    """No address a peer could reach to advertise: bound to a wildcard without an advertised host, or an
    advertised host that is no host at all."""


def advertised_host_for(bound_host: str, advertised_host: str = "") -> str:
    """The host our Via sent-by, Contact and SDP name: `advertised_host` if given, else the bound one.

    A wildcard is refused: `sip:ivr@0.0.0.0` routes nowhere (responses to our BYE follow our Via, RFC 3261
    §18.2.2; the peer's in-dialog requests our Contact, §12.1.1) and `c=IN IP4 0.0.0.0` means hold (RFC 2543,
    RFC 3264 §8.4). The value lands in headers, so it must be an IP literal or a host name, nothing else.
    Returned without IPv6 brackets (SDP wants none; `_sent_by` adds them)."""
    host = (advertised_host or bound_host).strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if _is_wildcard(host):
        bound = f"bound to {host or 'all addresses'} with no advertised host"
        what = f"advertised host {host}" if advertised_host else bound
        raise AdvertisedAddressError(f"{what}: a wildcard address, which no peer can reach")
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        if not HOST_NAME_RE.fullmatch(host):
            raise AdvertisedAddressError(f"{host!r} is not an IP address or host name to advertise") from None
        return host


def _is_wildcard(host: str) -> bool:
    """0.0.0.0, :: (any spelling), or "" (asyncio binds every interface for it)."""
    try:
        return not host or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


class UserAgent:
    """The UAS core for one listening address. `advertised_host`: the host peers must use to reach it when that is
    not the bound one (a wildcard bind, NAT, a proxy in front); raises AdvertisedAddressError if there is none."""

    def __init__(self, settings: SipSettings, local_address: Address, advertised_host: str = ""):
        self.settings = settings
        self.local_host, self.local_port = local_address
        self.advertised_host = advertised_host_for(self.local_host, advertised_host)
        self.gate = Gate(settings)
        self.routing = RoutingTable.parse(settings.routing)
        self.server_transactions: dict[tuple, ServerTransaction] = {}
        self.client_transactions: dict[tuple, NonInviteClientTransaction] = {}
        self.calls: dict[tuple[str, str], Call] = {}  # (Call-ID, our tag) -> call
        # transaction key -> its call, while the transaction lives (CANCEL, REFER answers, timer outcomes). Server
        # and client keys never collide: a client key is (branch, method), a server key starts with its RFC.
        self._tx_calls: dict[tuple, Call] = {}
        self.internal_errors = 0  # messages dropped because of a bug here; should stay 0

    # ------------------------------------------------------------------------------------- public API

    @property
    def active_calls(self) -> list[Call]:
        return [call for call in self.calls.values() if call.state is not CallState.ENDED]

    def feed(self, data: bytes, source: Address, now: float, transport: str = "udp") -> list[Output]:
        """Everything that follows from one received datagram (or framed stream message)."""
        try:
            return self._receive(data, source, now, transport)
        except Exception:  # a bug must cost one message, never the server
            self.internal_errors += 1
            log.exception("SIP message from %s:%s dropped after an internal error", *source)
            return []

    def next_deadline(self) -> float | None:
        """The earliest time `tick` has something to do (None: nothing pending), so the transport sleeps until
        then instead of polling."""
        deadlines = [tx.next_deadline() for tx in self.server_transactions.values()]
        deadlines += [tx.next_deadline() for tx in self.client_transactions.values()]
        deadlines += [_call_deadline(call, self.settings.max_call_s) for call in self.calls.values()]
        return min((deadline for deadline in deadlines if deadline is not None), default=None)

    def tick(self, now: float) -> list[Output]:
        """Fire due timers: retransmissions, transaction timeouts, call and transfer limits."""
        out: list[Output] = []
        for call in list(self.calls.values()):  # first: the ring timeout's 480 beats the Proceeding guard's 408
            out += self._check_call_limits(call, now)
        out += self._tick_server_transactions(now)
        out += self._tick_client_transactions(now)
        return out

    def ringing(self, call: Call, now: float) -> list[Output]:
        if call.state is not CallState.RINGING:
            return []
        return self._respond(call.invite_tx, 180, call.peer, to_tag=call.dialog.local_tag, now=now, contact=True)

    def answer(self, call: Call, local_media: LocalMedia, now: float) -> list[Output]:
        """200 OK with our SDP (an answer to the caller's offer, or an offer when the INVITE had none)."""
        if call.state is not CallState.RINGING:
            raise CallError(f"call {call.id} cannot be answered in state {call.state.value}")
        call.local_media = local_media
        sdp = build_answer(call.media, local_media) if call.media else build_offer(local_media)
        call._set_state(CallState.ANSWERED)
        call.answered_at = now
        call.ack_tx = call.invite_tx
        call.log.info("answered (%s)", call.media.codec if call.media else "offer in 200")
        return self._respond(
            call.invite_tx, 200, call.peer, to_tag=call.dialog.local_tag, now=now, contact=True,
            headers=[("content-type", "application/sdp")], body=sdp.serialise(),
        )

    def reject(self, call: Call, status: int, now: float, cause: str = "rejected") -> list[Output]:
        if call.state is not CallState.RINGING:
            raise CallError(f"call {call.id} was already answered")
        headers = [("retry-after", str(self.settings.retry_after_s))] if status == 503 else None
        out = self._respond(call.invite_tx, status, call.peer, to_tag=call.dialog.local_tag, now=now, headers=headers)
        return out + self._end(call, f"{cause} {status}")

    def hangup(self, call: Call, now: float, cause: str = "local_hangup") -> list[Output]:
        """End the call from our side: decline if unanswered, BYE otherwise."""
        if call.state is CallState.ENDED:
            return []
        if call.state is CallState.RINGING:
            return self.reject(call, 480, now, cause)
        if call.state is CallState.ANSWERED:
            # §15: no BYE before the 2xx is acknowledged (or Timer H gives up); the app hears of the end now.
            call.bye_after_ack = True
            return self._end(call, cause, keep_dialog=True)
        _, out = self._send_in_dialog(call, "BYE", now)
        return out + self._end(call, cause)

    def refer(self, call: Call, target_uri: str, headers: list[tuple[str, str]], now: float, *,
              uui: str | None = None) -> list[Output]:
        """REFER the caller to `target_uri` (RFC 3515), which must be in the routing table. `uui`: a User-to-User
        value (telephony/sip/uui.py) for the INVITE the caller's phone sends, embedded in the Refer-To URI."""
        self.routing.check_target(target_uri)
        refer_to = uui_header.with_embedded_header(target_uri, uui_header.HEADER, uui) if uui else target_uri
        if call.state is not CallState.CONFIRMED:
            raise CallError(f"call {call.id} is not established")
        if call.transfer is not None:
            raise CallError(f"call {call.id} already has a transfer in progress")
        for name, value in headers:
            if not _may_travel_with_refer(name) or any(c in value for c in "\r\n"):
                raise TransferNotAllowed(f"header {name!r} may not travel with a REFER")
        refer_headers = [
            ("refer-to", f"<{refer_to}>"),
            ("referred-by", f"<{call.dialog.local_uri.strip('<>')}>" if "<" not in call.dialog.local_uri else call.dialog.local_uri),
            *[(name.lower(), value) for name, value in headers],
        ]
        refer_tx, out = self._send_in_dialog(call, "REFER", now, refer_headers)
        call.transfer = Transfer(target_uri, now + self.settings.refer_timeout_s, refer_tx.key, started_at=now)
        call.log.info("REFER to %s", target_uri)
        return out

    def refer_to_queue(self, call: Call, queue: str, context: dict, now: float) -> list[Output]:
        """The handoff event's queue and context, as a REFER (unknown queue: TransferNotAllowed)."""
        return self.refer(call, self.routing.uri_for(queue), context_headers(context), now,
                          uui=self._context_uui(context))

    def _context_uui(self, context: dict) -> str | None:
        """The screen-pop reference as UUI, when there is one and SIP_REFER_UUI allows it."""
        reference = context.get("context_ref")
        if not self.settings.refer_uui or not isinstance(reference, str):
            return None
        try:
            return uui_header.encode_reference(reference)
        except uui_header.UuiError:
            return None  # not a reference we made: it still travels, sanitised, as X-IVR-Context-Ref

    # ------------------------------------------------------------------------------------- receiving

    def _receive(self, data: bytes, source: Address, now: float, transport: str) -> list[Output]:
        allowed_source = self.gate.source_allowed(source[0])
        if not allowed_source and not self.gate.may_authenticate():
            return []  # silently: outside the allow-list we do not exist
        if not self.gate.rate_limiter.allow(source[0], now):
            return []
        if len(data) > self.gate.max_message_bytes:
            return self._answer_oversized(data, source, transport)
        try:
            message = parse_message(data, stream=transport != "udp")
        except SipSyntaxError as error:
            return self._answer_malformed(error, source, transport)
        if not message.is_request:
            return self._receive_response(message, now)
        if is_scanner(message):
            return []
        if message.version != SIP_VERSION:
            return self._stateless(message, 505, source, transport)
        try:
            check_request(message)
        except SipSyntaxError as error:
            return self._answer_malformed(error, source, transport)
        if not allowed_source and not self._authorised(message, source):
            return self._challenge(message, source, transport)
        return self._receive_request(message, source, now, transport)

    def _receive_request(self, request: SipMessage, source: Address, now: float, transport: str) -> list[Output]:
        if request.method == "ACK":
            return self._receive_ack(request, now)
        key = server_key(request)
        existing = self.server_transactions.get(key)
        if existing is not None:
            return list(existing.retransmission())  # §17.2.3: absorbed by its transaction
        tx: ServerTransaction
        if request.method == "INVITE":
            tx = InviteServerTransaction(request, source, transport, now)
        else:
            tx = NonInviteServerTransaction(request, source, transport, now)
        tx.call_id = self._call_id_of(request)
        self.server_transactions[key] = tx
        try:
            return self._dispatch(tx, request, source, now)
        except Exception:
            # A bug must cost one request, and that request still gets its final response: a peer left without
            # one retransmits and waits (an INVITE for minutes), and its retransmissions get the same 500.
            self.internal_errors += 1
            log.exception("%s from %s:%s failed; answering 500", request.method, *source)
            if tx.final_status:
                return []
            return self._respond(tx, 500, source, now=now)

    def _dispatch(self, tx: ServerTransaction, request: SipMessage, source: Address, now: float) -> list[Output]:
        method = request.method
        if method not in KNOWN_METHODS:
            return self._respond(tx, 501, source, now=now, headers=[("allow", ", ".join(ALLOWED_METHODS))])
        if method not in ALLOWED_METHODS:
            return self._respond(tx, 405, source, now=now, headers=[("allow", ", ".join(ALLOWED_METHODS))])
        if parse_uri(request.uri).scheme not in SUPPORTED_URI_SCHEMES:
            return self._respond(tx, 416, source, now=now)
        unsupported = self._unsupported_extensions(request)
        if unsupported and method != "CANCEL":
            return self._respond(tx, 420, source, now=now, headers=[("unsupported", ", ".join(unsupported))])
        if not self._body_acceptable(request):
            accept = ", ".join(ACCEPTED_BODIES.get(method, ("application/sdp",)))
            return self._respond(tx, 415, source, now=now, headers=[("accept", accept)])
        handler = {
            "OPTIONS": self._on_options, "INVITE": self._on_invite, "CANCEL": self._on_cancel,
            "BYE": self._on_bye, "INFO": self._on_info, "NOTIFY": self._on_notify,
        }[method]
        return handler(tx, request, source, now)

    @staticmethod
    def _unsupported_extensions(request: SipMessage) -> list[str]:
        return [tag for tag in request.get_all("require") if tag.lower() not in SUPPORTED_EXTENSIONS]

    @staticmethod
    def _body_acceptable(request: SipMessage) -> bool:
        if not request.body.strip():
            return True
        accepted = ACCEPTED_BODIES.get(request.method)
        return accepted is None or media_type(request.get("content-type")) in accepted

    def _on_options(self, tx: ServerTransaction, request: SipMessage, source: Address, now: float) -> list[Output]:
        headers = [
            ("allow", ", ".join(ALLOWED_METHODS)),
            ("accept", "application/sdp"),
            ("accept-encoding", "identity"),
            ("accept-language", "en"),
            ("supported", ", ".join(sorted(SUPPORTED_EXTENSIONS))),
        ]
        return self._respond(tx, 200, source, now=now, headers=headers)

    def _on_invite(self, tx: ServerTransaction, request: SipMessage, source: Address, now: float) -> list[Output]:
        assert isinstance(tx, InviteServerTransaction)
        if request.to_tag():
            return self._on_reinvite(tx, request, source, now)
        if not self._sdp_acceptable_to_caller(request):
            return self._refuse(tx, request, 406, source, now=now, headers=[("accept", "application/sdp")])
        if len(self.calls) >= self.settings.max_calls:
            retry = [("retry-after", str(self.settings.retry_after_s))]
            return self._refuse(tx, request, 503, source, now=now, headers=retry)
        media: MediaPlan | None = None
        if request.body.strip():
            try:
                media = negotiate(parse_sdp(request.body))
            except NoCommonCodec:
                return self._refuse(tx, request, 488, source, now=now, headers=[("warning", '304 - "PCMU/PCMA only"')])
            except SdpError as error:
                return self._refuse(tx, request, 400, source, now=now, reason=f"Bad SDP: {error}"[:80])
        call = self._new_call(tx, request, source, media, now)
        out = self._respond(tx, 100, source, now=now)
        call.log.info("INVITE from %s (Call-ID %s)", mask_caller_number(call.caller) or "anonymous", call.sip_call_id)
        return out + [IncomingCall(call)]

    def _refuse(self, tx: ServerTransaction, request: SipMessage, status: int, source: Address, *, now: float,
                headers: list[tuple[str, str]] | None = None, reason: str | None = None) -> list[Output]:
        """A final error to a new INVITE, and the CallRefused event that lets the application record it."""
        identity = self._caller_identity(request, source)
        refused = CallRefused(request.call_id, identity.number, status)
        refused_log = call_logger(log, refused.id)
        _log_identity(refused_log, identity, source)
        refused_log.info("INVITE from %s refused with %d (Call-ID %s)",
                         mask_caller_number(identity.number) or "anonymous", status, request.call_id)
        out = self._respond(tx, status, source, now=now, headers=headers, reason=reason)
        return out + [refused]

    def _caller_identity(self, request: SipMessage, source: Address) -> CallerIdentity:
        """The caller: a P-Asserted-Identity only from a trusted proxy (RFC 3325 §4), else From's user."""
        return caller_identity(request, self.gate.trusted_proxy(source[0]))

    @staticmethod
    def _sdp_acceptable_to_caller(request: SipMessage) -> bool:
        """§8.2.3 / RFC 4475 sdp01: we answer with SDP, so an Accept that excludes it gets 406."""
        accepts = [media_type(value) for value in request.get_all("accept")]
        if not request.get_lines("accept") or not any(accepts):
            return True
        return any(value in ("application/sdp", "application/*", "*/*") for value in accepts)

    def _new_call(self, tx: InviteServerTransaction, request: SipMessage, source: Address, media: MediaPlan | None, now: float) -> Call:
        dialog = Dialog.from_invite(request, source, tx.transport, self._contact(tx.transport))
        identity = self._caller_identity(request, source)
        call = Call(
            sip_call_id=request.call_id,
            caller=identity.number,
            callee=uri_user(request.uri),
            peer=source,
            transport=tx.transport,
            dialog=dialog,
            invite_tx=tx,
            media=media,
            created_at=now,
            headers=invite_context_headers(request.headers),
        )
        self.calls[(call.sip_call_id, dialog.local_tag)] = call
        self._attach(tx, call)
        _log_identity(call.log, identity, source)
        return call

    def _on_reinvite(self, tx: InviteServerTransaction, request: SipMessage, source: Address, now: float) -> list[Output]:
        call = self._find_call(request)
        if call is None or call.state is CallState.RINGING:
            return self._respond(tx, 481, source, now=now)
        if not call.dialog.accepts_remote_cseq(request.cseq.number):
            return self._respond(tx, 500, source, now=now, reason=CSEQ_OUT_OF_ORDER)
        if call.ack_tx is not None and call.ack_tx.state is State.ACCEPTED:
            return self._respond(tx, 491, source, now=now)  # §14.2: a previous 2xx still waits for its ACK
        try:
            media = negotiate(parse_sdp(request.body)) if request.body.strip() else call.media
        except NoCommonCodec:
            return self._respond(tx, 488, source, now=now)
        except SdpError:
            return self._respond(tx, 400, source, now=now, reason="Bad SDP")
        if media is None or call.local_media is None:
            return self._respond(tx, 488, source, now=now)
        call.media = media
        call.ack_tx = tx
        self._attach(tx, call)
        sdp = build_answer(media, call.local_media)
        out = self._respond(
            tx, 200, source, to_tag=call.dialog.local_tag, now=now, contact=True,
            headers=[("content-type", "application/sdp")], body=sdp.serialise(),
        )
        call.log.info("re-INVITE, direction %s", media.direction)
        return out + [ReInvite(call, media)]

    def _on_cancel(self, tx: ServerTransaction, request: SipMessage, source: Address, now: float) -> list[Output]:
        invite_key = server_key(request, method="INVITE")
        invite_tx = self.server_transactions.get(invite_key)
        if not isinstance(invite_tx, InviteServerTransaction):
            return self._respond(tx, 481, source, now=now)
        out = self._respond(tx, 200, source, now=now)
        call = self._tx_calls.get(invite_key)
        if invite_tx.state is State.PROCEEDING:
            # §9.2: the CANCEL succeeded, the INVITE ends with 487.
            to_tag = call.dialog.local_tag if call else new_tag()
            out += self._respond(invite_tx, 487, invite_tx.peer, to_tag=to_tag, now=now)
            if call is not None and call.state is CallState.RINGING:
                out += self._end(call, "cancelled")
        return out

    def _on_bye(self, tx: ServerTransaction, request: SipMessage, source: Address, now: float) -> list[Output]:
        call = self._find_call(request)
        if call is None:
            return self._respond(tx, 481, source, now=now)
        if not call.dialog.accepts_remote_cseq(request.cseq.number):
            return self._respond(tx, 500, source, now=now, reason=CSEQ_OUT_OF_ORDER)
        out = self._respond(tx, 200, source, now=now)
        return out + self._end(call, "remote_bye")

    def _on_info(self, tx: ServerTransaction, request: SipMessage, source: Address, now: float) -> list[Output]:
        call = self._find_call(request)
        if call is None:
            return self._respond(tx, 481, source, now=now)
        if not call.dialog.accepts_remote_cseq(request.cseq.number):
            return self._respond(tx, 500, source, now=now, reason=CSEQ_OUT_OF_ORDER)
        if not request.body.strip():
            return self._respond(tx, 200, source, now=now)  # an empty INFO is a keep-alive
        digit, duration = parse_dtmf_info(request.body, media_type(request.get("content-type")))
        if digit is None:
            return self._respond(tx, 400, source, now=now, reason="Bad DTMF body")
        return self._respond(tx, 200, source, now=now) + [DtmfInfo(call, digit, duration)]

    def _on_notify(self, tx: ServerTransaction, request: SipMessage, source: Address, now: float) -> list[Output]:
        call = self._find_call(request)
        event = (request.get("event") or "").split(";")[0].strip().lower()
        if call is None:
            return self._respond(tx, 481, source, now=now)
        if not call.dialog.accepts_remote_cseq(request.cseq.number):
            return self._respond(tx, 500, source, now=now, reason=CSEQ_OUT_OF_ORDER)
        if event != "refer":
            return self._respond(tx, 489, source, now=now, reason="Bad Event")
        status = sipfrag_status(request.body)
        if status is None:
            return self._respond(tx, 400, source, now=now, reason="Bad sipfrag")
        out = self._respond(tx, 200, source, now=now)
        return out + self._transfer_progress(call, status[0], status[1], now)

    def _transfer_progress(self, call: Call, status: int, reason: str, now: float) -> list[Output]:
        if call.transfer is None or status < 200:
            return []
        transfer, call.transfer = call.transfer, None
        target = transfer.target
        if status >= 300:
            call.log.info("transfer to %s failed: %s %s", target, status, reason)
            return [TransferResult(call, False, f"transfer target answered {status} {reason}".strip())]
        call.log.info("transferred to %s", target)
        # RFC 5589 §6.1: the transfer succeeded, so our leg is no longer needed.
        to_agent, accepted = _transfer_times(call, transfer, now)
        out: list[Output] = [TransferResult(call, True, f"{status} {reason}".strip(), to_agent, accepted)]
        return out + self.hangup(call, now, cause="transferred")

    def _receive_ack(self, request: SipMessage, now: float) -> list[Output]:
        tx = self.server_transactions.get(server_key(request))
        if isinstance(tx, InviteServerTransaction) and tx.state in (State.COMPLETED, State.CONFIRMED):
            tx.ack(now)  # the ACK of an error response (§17.2.1)
            return []
        call = self._find_call(request)
        if call is None or call.ack_tx is None:
            return []
        if request.cseq.number != call.ack_tx.request.cseq.number:
            return []
        call.ack_tx.ack(now)
        call.ack_tx = None
        if call.bye_after_ack:
            return self._deferred_bye(call, now)
        if call.state is not CallState.ANSWERED:
            return []  # the ACK of a re-INVITE
        if call.media is None:
            return self._late_answer(call, request, now)
        call._set_state(CallState.CONFIRMED)
        return [CallAnswered(call)]

    def _late_answer(self, call: Call, ack: SipMessage, now: float) -> list[Output]:
        """The INVITE had no offer, so the ACK carries the answer to ours (§13.2.1)."""
        try:
            call.media = negotiate(parse_sdp(ack.body))
        except (NoCommonCodec, SdpError):
            call._set_state(CallState.CONFIRMED)
            return self.hangup(call, now, cause="no_common_codec")
        call._set_state(CallState.CONFIRMED)
        return [CallAnswered(call)]

    def _receive_response(self, response: SipMessage, now: float) -> list[Output]:
        try:
            key = response_client_key(response)
        except SipSyntaxError:
            return []  # RFC 4475 scalarlg, bigcode: malformed responses are dropped
        tx = self.client_transactions.get(key)
        if tx is None or not tx.receive(response, now):
            return []  # no transaction of ours (RFC 4475 bcast, unreason): dropped
        call = self._tx_calls.get(key)
        if tx.method == "REFER" and call is not None and response.status >= 200:
            return self._refer_answered(call, tx, response, now)
        return []

    def _refer_answered(self, call: Call, tx: NonInviteClientTransaction, response: SipMessage,
                        now: float) -> list[Output]:
        if call.transfer is None or call.transfer.refer_key != tx.key:
            return []
        if response.status < 300:
            call.transfer.accepted = True  # now the NOTIFYs tell how the transfer goes
            call.transfer.accepted_at = now
            return []
        call.transfer = None
        return [TransferResult(call, False, f"REFER rejected: {response.status} {response.reason}".strip())]

    # ------------------------------------------------------------------------------------- timers

    def _tick_server_transactions(self, now: float) -> list[Output]:
        out: list[Output] = []
        for key, tx in list(self.server_transactions.items()):
            deadline = tx.next_deadline()
            if deadline is not None and deadline <= now:
                out += tx.tick(now)
            call = self._tx_calls.get(key)
            if call is not None and call.invite_tx is tx and call.state is CallState.RINGING and tx.final_status:
                out += self._end(call, "no_final_response")  # the Proceeding guard answered for the application
            if tx.terminated:
                del self.server_transactions[key]
                self._tx_calls.pop(key, None)
                if tx.timed_out and call is not None and call.ack_tx is tx:
                    out += self._ack_timeout(call, now)
        return out

    def _ack_timeout(self, call: Call, now: float) -> list[Output]:
        """Timer H: the 2xx was never acknowledged, so the dialog is ended with BYE (§13.3.1.4)."""
        call.log.warning("no ACK for the 200 OK")
        call.ack_tx = None
        if call.bye_after_ack:
            return self._deferred_bye(call, now)
        if call.state is CallState.ANSWERED:
            _, out = self._send_in_dialog(call, "BYE", now)
            return out + self._end(call, "ack_timeout")
        return []

    def _tick_client_transactions(self, now: float) -> list[Output]:
        out: list[Output] = []
        for key, tx in list(self.client_transactions.items()):
            deadline = tx.next_deadline()
            if deadline is not None and deadline <= now:
                out += tx.tick(now)
            if tx.terminated:
                del self.client_transactions[key]
                call = self._tx_calls.pop(key, None)
                if tx.timed_out and tx.method == "REFER" and call is not None and call.transfer is not None:
                    call.transfer = None
                    out.append(TransferResult(call, False, "REFER timed out"))
        return out

    def _check_call_limits(self, call: Call, now: float) -> list[Output]:
        # `>=` throughout: the transport wakes exactly at `next_deadline()`, which must then fire.
        if call.state is CallState.RINGING and now >= call.created_at + RING_TIMEOUT_S:
            return self.reject(call, 480, now, cause="ring_timeout")
        if (call.answered_at is not None and call.state is not CallState.ENDED
                and now >= call.answered_at + self.settings.max_call_s):
            return self.hangup(call, now, cause="max_call_length")
        if call.transfer is not None and now >= call.transfer.deadline:
            call.transfer = None
            return [TransferResult(call, False, "no final NOTIFY before the transfer timeout")]
        return []

    # ------------------------------------------------------------------------------------- helpers

    def _call_id_of(self, request: SipMessage) -> str:
        """Our id of the call an in-dialog request or a CANCEL belongs to, for its transaction's log lines."""
        call = self._find_call(request) if request.to_tag() else None
        if call is None and request.method == "CANCEL":
            call = self._tx_calls.get(server_key(request, method="INVITE"))
        return call.id if call is not None else UNKNOWN_CALL

    def _attach(self, tx: ServerTransaction | NonInviteClientTransaction, call: Call) -> None:
        """`tx` belongs to `call`: its log lines say so, and its outcomes find the call by the key it is filed under."""
        tx.call_id = call.id
        self._tx_calls[tx.key] = call

    def _find_call(self, request: SipMessage) -> Call | None:
        call = self.calls.get((request.call_id, request.to_tag()))
        if call is None or call.dialog.remote_tag != request.from_tag():
            return None
        return call

    def _end(self, call: Call, cause: str, keep_dialog: bool = False) -> list[Output]:
        if call.state is CallState.ENDED:
            if not keep_dialog:
                self.calls.pop((call.sip_call_id, call.dialog.local_tag), None)
            return []
        call._set_state(CallState.ENDED)
        if not keep_dialog:
            self.calls.pop((call.sip_call_id, call.dialog.local_tag), None)
        call.log.info("ended (%s)", cause)
        return [CallEnded(call, cause)]

    def _deferred_bye(self, call: Call, now: float) -> list[Output]:
        call.bye_after_ack = False
        self.calls.pop((call.sip_call_id, call.dialog.local_tag), None)
        _, out = self._send_in_dialog(call, "BYE", now)
        return out

    def _send_in_dialog(
        self, call: Call, method: str, now: float, headers: list[tuple[str, str]] | None = None
    ) -> tuple[NonInviteClientTransaction, list[Output]]:
        request = call.dialog.create_request(method, self._sent_by(), headers)
        request.add("user-agent", self.settings.user_agent)
        destination, transport = call.dialog.next_hop()
        tx = NonInviteClientTransaction(request, destination, transport, now)
        self.client_transactions[tx.key] = tx
        self._attach(tx, call)
        return tx, list(tx.start())

    def _sent_by(self) -> str:
        """Our Via sent-by and Contact host:port: the advertised host (a wildcard or NAT-private bound address
        would send responses and in-dialog requests nowhere), on the bound port."""
        host = f"[{self.advertised_host}]" if ":" in self.advertised_host else self.advertised_host
        return f"{host}:{self.local_port}"

    def _contact(self, transport: str) -> str:
        suffix = ";transport=tcp" if transport == "tcp" else ""
        return f"<sip:ivr@{self._sent_by()}{suffix}>"

    def _respond(
        self,
        tx: ServerTransaction,
        status: int,
        source: Address,
        *,
        now: float,
        to_tag: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        reason: str | None = None,
        contact: bool = False,
    ) -> list[Output]:
        extra = [("server", self.settings.user_agent)] + list(headers or [])
        if contact:
            extra.append(("contact", self._contact(tx.transport)))
            if not tx.request.to_tag():
                # §12.1.1: a response that creates a dialog copies the INVITE's Record-Route, in order, so the
                # caller's ACK and BYE pass the proxies that asked to stay in the path (a Kamailio front).
                extra += [("record-route", value) for value in tx.request.get_all("record-route")]
        response = build_response(tx.request, status, source, to_tag or new_tag(), extra, body, reason)
        return list(tx.respond(response, now))  # type: ignore[attr-defined]

    def _stateless(self, request: SipMessage, status: int, source: Address, transport: str, reason: str | None = None,
                   headers: list[tuple[str, str]] | None = None) -> list[Output]:
        if request.method == "ACK" or not request.get_lines("via"):
            return []  # never answer an ACK; without Via a response cannot be matched
        extra = [("server", self.settings.user_agent)] + list(headers or [])
        response = build_response(request, status, source, new_tag(), extra, reason=reason)
        return [Datagram(response.serialise(), source, transport)]

    def _answer_malformed(self, error: SipSyntaxError, source: Address, transport: str) -> list[Output]:
        message = error.message
        if message is None or not message.is_request or not message.method:
            return []  # nothing to address a response to, or a response: dropped
        log.info("400 to %s:%s: %s", source[0], source[1], error.reason)
        return self._stateless(message, error.status, source, transport, reason=f"Bad Request ({error.reason})"[:100])

    def _answer_oversized(self, data: bytes, source: Address, transport: str) -> list[Output]:
        try:
            message = parse_message(data, stream=False)
        except SipSyntaxError as error:
            message = error.message
        if message is None or not message.is_request:
            return []
        return self._stateless(message, 513, source, transport)

    def _authorised(self, request: SipMessage, source: Address) -> bool:
        """Outside the allow-list: digest credentials, or a request inside a call that authenticated."""
        if request.method in ("ACK", "CANCEL") or request.to_tag():
            return any(call.peer == source for call in self.calls.values())
        return self.gate.digest is not None and self.gate.digest.verify(request)

    def _challenge(self, request: SipMessage, source: Address, transport: str) -> list[Output]:
        if self.gate.digest is None or request.method in ("ACK", "CANCEL") or request.to_tag():
            return []
        return self._stateless(request, 401, source, transport, headers=[("www-authenticate", self.gate.digest.challenge())])


def parse_dtmf_info(body: bytes, content_type: str) -> tuple[str | None, int]:
    """`Signal=5\\r\\nDuration=160` (application/dtmf-relay) or a bare `5` (application/dtmf)."""
    text = body.decode("utf-8", "replace")
    if content_type == "application/dtmf":
        digit = text.strip().upper()
        return (digit if digit in DTMF_KEYS else None), 0
    match = DTMF_SIGNAL_RE.search(text)
    if not match:
        return None, 0
    signal = match.group(1).upper()
    event = ascii_int(signal)
    if event is not None and event >= 10:
        signal = key_for_event_code(event) or ""
        if not signal:
            return None, 0
    duration = DTMF_DURATION_RE.search(text)
    return signal, (ascii_int(duration.group(1)) or 0) if duration else 0


def _call_deadline(call: Call, max_call_s: float) -> float | None:
    """When `_check_call_limits` next has something to do for this call."""
    deadlines = []
    if call.state is CallState.RINGING:
        deadlines.append(call.created_at + RING_TIMEOUT_S)
    if call.answered_at is not None and call.state is not CallState.ENDED:
        deadlines.append(call.answered_at + max_call_s)
    if call.transfer is not None:
        deadlines.append(call.transfer.deadline)
    return min(deadlines, default=None)


def _transfer_times(call: Call, transfer: Transfer, now: float) -> tuple[float, float]:
    """(time to agent, REFER accepted). Time to agent is the caller's wait: from our answer (the call's 200 OK, where
    a green-channel caller starts waiting for a human) to now, the NOTIFY whose sipfrag is `SIP/2.0 200` (RFC 3515
    §2.4.5): the agent answered, not merely the queue taking the REFER (its 202). REFER accepted is from the handoff
    (our REFER) to that 202. A final NOTIFY that overtook the 202 (UDP reorders) still proves the REFER was accepted
    (RFC 3515: only an accepted REFER is NOTIFYed), so its arrival stands in for the 202's."""
    answered_at = call.answered_at if call.answered_at is not None else transfer.started_at
    accepted_at = transfer.accepted_at if transfer.accepted_at is not None else now
    return max(0.0, now - answered_at), max(0.0, min(accepted_at, now) - transfer.started_at)


def _log_identity(call_log: CallLoggerAdapter, identity: CallerIdentity, source: Address) -> None:
    """Why a P-Asserted-Identity was not believed. Numbers masked, the header's text never logged: its display
    name or number may belong to a caller who asked for privacy (RFC 3325 §9.3 Privacy: id)."""
    if not identity.ignored:
        if identity.asserted:
            call_log.info("caller from the P-Asserted-Identity of trusted proxy %s", source[0])
        return
    fallback = mask_caller_number(identity.number) or "anonymous"
    if identity.ignored == UNTRUSTED:
        call_log.warning("P-Asserted-Identity (%s) from %s ignored: not a trusted proxy; caller from From: %s",
                         mask_caller_number(identity.ignored_number) or "no number", source[0], fallback)
    else:
        call_log.warning("P-Asserted-Identity from trusted proxy %s ignored (%s); caller from From: %s",
                         source[0], identity.ignored, fallback)


def _may_travel_with_refer(name: str) -> bool:
    name = name.lower()
    return name == UUI_HEADER_NAME or name.startswith(ALLOWED_REFER_HEADER_PREFIX)


def invite_context_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """An INVITE's context headers (X-… and User-to-User, names lower-case) for whoever answers. Of a header sent
    more than once, the first counts (RFC 7433 §4.1: the first User-to-User); a later copy cannot replace it."""
    found: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        if name == UUI_HEADER_NAME or name.startswith(CONTEXT_HEADER_PREFIX):
            found.setdefault(name, value)
    return found
