"""Who is calling: the From URI's user, or the P-Asserted-Identity of a trusted proxy (RFC 3325).

From is whatever the caller's phone wrote, and so is P-Asserted-Identity when it does not come from a proxy of our
trust domain (RFC 3325 §2.3-§4): anyone reaching the SIP port could otherwise name any caller. So the header is
believed only from a source the application says is trusted (settings.trusted_proxies, checked by the Gate).

The header (RFC 3325 §9.1) holds one identity, or two: one sip/sips URI and one tel URI. The first names the caller.
Anything else (three values, two of a kind, another scheme, no number) is malformed and the whole header is
ignored: a proxy sending garbage has not told us which part to trust. `Privacy: id` (RFC 3325 §9.3) asks the
trust domain not to pass the identity on; we are the end of that domain, so it does not change the caller, and
callers of this module log the number masked only.

Pure functions, no I/O; nothing here knows what the number is used for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from telephony.sip.message import SipMessage, SipSyntaxError, SipUri, parse_name_addr, parse_uri, split_list

HEADER = "p-asserted-identity"
MAX_HEADER_CHARS = 1024  # all of a request's PAI lines together; two URIs never need more, so larger is not parsed
MAX_NUMBER_CHARS = 32  # E.164 has at most 15 digits (ITU-T E.164 §6); room for local forms, not for abuse
VISUAL_SEPARATORS = str.maketrans("", "", "-.()")  # RFC 3966 §3 visual-separator: not part of the number
NUMBER_RE = re.compile(r"\+?[0-9*#]+")  # a global (+) or local number once separators are gone (RFC 3966 §3)
UNTRUSTED = "not from a trusted proxy"


class IdentityError(ValueError):
    """A malformed P-Asserted-Identity. The reason is a fixed phrase, never the header's text (it may name a
    caller who asked for privacy), so it is safe to log."""


@dataclass(frozen=True)
class CallerIdentity:
    """The caller, and why a P-Asserted-Identity present was not used (for a log line; "" when it was, or absent)."""

    number: str
    asserted: bool = False  # the number came from a trusted P-Asserted-Identity
    ignored: str = ""
    ignored_number: str = ""  # what an ignored, well-formed identity asserted: log it masked


def caller_identity(request: SipMessage, trusted_source: bool) -> CallerIdentity:
    """The caller of an INVITE: a trusted proxy's asserted identity if it sent a well-formed one, else From's user."""
    lines = request.get_lines(HEADER)
    if not lines:
        return CallerIdentity(from_user(request))
    try:
        number = asserted_number(lines)
    except IdentityError as error:
        reason = UNTRUSTED if not trusted_source else f"malformed: {error}"
        return CallerIdentity(from_user(request), ignored=reason)
    if not trusted_source:
        return CallerIdentity(from_user(request), ignored=UNTRUSTED, ignored_number=number)
    return CallerIdentity(number, asserted=True)


def asserted_number(lines: list[str]) -> str:
    """The caller number of P-Asserted-Identity header lines (RFC 3325 §9.1); raises IdentityError."""
    if sum(len(line) for line in lines) > MAX_HEADER_CHARS:
        raise IdentityError("too long")
    try:
        values = [value for line in lines for value in split_list(line)]
    except SipSyntaxError:
        raise IdentityError("unbalanced quotes") from None
    if not 1 <= len(values) <= 2:
        raise IdentityError(f"{len(values)} identities")
    uris = [_identity_uri(value) for value in values]
    if len({"tel" if uri.scheme == "tel" else "sip" for uri in uris}) != len(uris):
        raise IdentityError("two identities of one scheme")  # §9.1: one sip or sips URI and one tel URI
    return _number(uris[0])


def from_user(request: SipMessage) -> str:
    """The user of the From URI ("" if it has none or cannot be parsed): the caller without a trusted proxy."""
    try:
        return uri_user(parse_name_addr(request.get("from") or "").uri)
    except SipSyntaxError:
        return ""


def uri_user(uri: str) -> str:
    """A sip/sips URI's user without password or parameters; "" for other schemes or a malformed URI."""
    try:
        return parse_uri(uri).user.split(":")[0].split(";")[0]
    except SipSyntaxError:
        return ""


def _identity_uri(value: str) -> SipUri:
    try:
        uri = parse_name_addr(value).uri_parsed()
    except SipSyntaxError:
        raise IdentityError("not a name-addr") from None  # the parser's reason quotes the text: not logged
    if uri.scheme not in ("sip", "sips", "tel"):
        raise IdentityError("not a sip, sips or tel URI")
    return uri


def _number(uri: SipUri) -> str:
    """The telephone number an identity names: a tel URI's number, or a sip URI's user part (RFC 3261 §19.1.1
    telephone-subscriber when user=phone; a proxy writes it so without the parameter too), minus parameters such
    as phone-context or isub and minus visual separators."""
    if uri.scheme == "tel":
        subscriber = uri.raw.partition(":")[2]
    elif uri.host:
        subscriber = unquote(uri.user.split(":")[0])  # %2B86... is +86... (§19.1.2 escaping)
    else:
        raise IdentityError("sip URI without a host")
    number = subscriber.split(";")[0].translate(VISUAL_SEPARATORS)
    if len(number) > MAX_NUMBER_CHARS or not NUMBER_RE.fullmatch(number):
        raise IdentityError("no telephone number")
    return number
