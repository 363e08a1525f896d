"""SIP message parsing and serialising (RFC 3261 §7, §20, §25).

A careful own parser, because the exact RFC 4475 verdicts depend on details a lenient library hides:
header folding and LWS, compact header names, comma-separated values, Content-Length framing.

`parse_message` splits a datagram or framed stream message into start line, headers and body and raises
`SipSyntaxError` (which carries the status to answer with) when the framing is broken. `check_request`
does the deeper §25 checks a UAS needs before acting on a request (From/To/CSeq/Via/URI syntax).
Header values are kept as text; the structured views (`NameAddr`, `Via`, `SipUri`, `CSeq`) are parsed on demand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from telephony.sip.digits import ascii_int

SIP_VERSION = "SIP/2.0"
CRLF = "\r\n"

# RFC 3261 §7.3.3 compact forms (plus the common extension ones).
COMPACT_NAMES = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length", "c": "content-type",
    "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via", "r": "refer-to", "b": "referred-by",
    "o": "event", "u": "allow-events", "x": "session-expires",
}
# How a canonical (lower-case) name is written back out.
PRETTY_NAMES = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate", "mime-version": "MIME-Version",
    "rack": "RAck", "rseq": "RSeq", "user-to-user": "User-to-User",
}
# Headers whose value is a comma-separated list (§7.3.1); others (Date, WWW-Authenticate, ...) contain commas.
LIST_HEADERS = frozenset({
    "via", "contact", "route", "record-route", "allow", "supported", "require", "proxy-require", "unsupported",
    "accept", "accept-encoding", "accept-language", "content-encoding", "allow-events",
})
SINGLE_HEADERS = ("to", "from", "call-id", "cseq")

TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN_RE = re.compile(rf"^[{TOKEN_CHARS}]+$")
SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+\-.]*$")
REQUEST_LINE_RE = re.compile(r"^([^ ]+) ([^ ]+) (SIP/[0-9]+\.[0-9]+)$")
STATUS_LINE_RE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9]) (.*)$")
VIA_SENT_PROTOCOL_RE = re.compile(rf"^SIP\s*/\s*2\.0\s*/\s*([{TOKEN_CHARS}]+)\s+(.*)$", re.S)
RFC1123_DATE_RE = re.compile(r"^[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT$")
HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)$")
MAX_CSEQ = 2**31 - 1  # §8.1.1.5: the sequence number MUST be less than 2**31


class SipSyntaxError(ValueError):
    """The bytes are not an acceptable SIP message. `status` is what a UAS answers (when it can answer)."""

    def __init__(self, reason: str, status: int = 400, message: "SipMessage | None" = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.message = message  # whatever could be parsed, so a response can still be addressed


@dataclass
class SipMessage:
    """One SIP request or response. Headers keep their order; names are stored canonical (lower-case)."""

    method: str = ""
    uri: str = ""
    version: str = SIP_VERSION
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.status == 0

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header (for list headers: of its first line, unsplit)."""
        key = canonical_name(name)
        for header_name, value in self.headers:
            if header_name == key:
                return value
        return default

    def get_lines(self, name: str) -> list[str]:
        key = canonical_name(name)
        return [value for header_name, value in self.headers if header_name == key]

    def get_all(self, name: str) -> list[str]:
        """All values of a header; list headers are split on commas outside quotes and <>."""
        key = canonical_name(name)
        lines = self.get_lines(key)
        if key not in LIST_HEADERS:
            return lines
        return [item for line in lines for item in split_list(line) if item]

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self.add(name, value)

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self.headers = [(n, v) for n, v in self.headers if n != key]

    @property
    def call_id(self) -> str:
        return (self.get("call-id") or "").strip()

    @property
    def cseq(self) -> "CSeq":
        return parse_cseq(self.get("cseq") or "")

    @property
    def top_via(self) -> "Via":
        vias = self.get_all("via")
        if not vias:
            raise SipSyntaxError("no Via", message=self)
        return parse_via(vias[0])

    def from_tag(self) -> str:
        return parse_name_addr(self.get("from") or "").params.get("tag") or ""

    def to_tag(self) -> str:
        return parse_name_addr(self.get("to") or "").params.get("tag") or ""

    def serialise(self) -> bytes:
        """Wire form; Content-Length is always written from the body actually carried."""
        start = f"{self.method} {self.uri} {self.version}" if self.is_request else f"{SIP_VERSION} {self.status} {self.reason}"
        lines = [start]
        lines += [f"{pretty_name(n)}: {v}" for n, v in self.headers if n != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        head = CRLF.join(lines) + CRLF + CRLF
        return head.encode("utf-8", "surrogateescape") + self.body


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    return COMPACT_NAMES.get(key, key)


def pretty_name(name: str) -> str:
    return PRETTY_NAMES.get(name) or "-".join(part.capitalize() for part in name.split("-"))


# --------------------------------------------------------------------------------------------- framing


def split_head(data: bytes) -> tuple[bytes, bytes]:
    """Header block and the bytes after the empty line. A missing empty line is a framing error."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        index = data.find(separator)
        if index >= 0:
            return data[:index], data[index + len(separator):]
    raise SipSyntaxError("no empty line after the headers")


def unfold_lines(head: str) -> list[str]:
    """Header lines with continuation lines (leading SP/HT, §7.3.1) joined by one space."""
    lines: list[str] = []
    for raw in re.split(r"\r\n|\n", head):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] = lines[-1].rstrip() + " " + raw.strip()
        else:
            lines.append(raw)
    return lines


def parse_message(data: bytes, stream: bool = False) -> SipMessage:
    """Parse one message. On a datagram the body is framed by Content-Length (§18.3): bytes beyond it are
    ignored and fewer bytes than it announces is a 400. `stream=True` expects exactly one framed message."""
    # Clients may send CRLF keep-alives before a message (RFC 5626 §3.5.1).
    data = data.lstrip(b"\r\n")
    head_bytes, rest = split_head(data)
    lines = unfold_lines(head_bytes.decode("utf-8", "surrogateescape"))
    message = SipMessage()
    message.headers = _parse_header_lines(lines[1:], message)
    _parse_start_line(lines[0], message)
    message.body = _frame_body(message, rest, stream)
    return message


def _parse_header_lines(lines: list[str], message: SipMessage) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for line in lines:
        name, colon, value = line.partition(":")
        name = name.strip(" \t")  # §7.3.1: whitespace is allowed before the colon
        if not colon or not TOKEN_RE.match(name):
            message.headers = headers
            raise SipSyntaxError(f"malformed header line {line[:40]!r}", message=message)
        headers.append((canonical_name(name), value.strip(" \t")))
    return headers


def _parse_start_line(line: str, message: SipMessage) -> None:
    if line.startswith("SIP/"):
        match = STATUS_LINE_RE.match(line)
        if not match:
            raise SipSyntaxError("malformed status line", message=message)
        message.status, message.reason = int(match.group(1)), match.group(2)
        return
    match = REQUEST_LINE_RE.match(line)
    if not match:
        # §25.1: exactly one SP between the three elements, no leading or trailing whitespace.
        # Keep the method (if it is one) so the 400 can still be sent, and never to an ACK.
        words = line.split()
        if words and TOKEN_RE.match(words[0]) and not line.startswith((" ", "\t")):
            message.method = words[0]
        raise SipSyntaxError("malformed request line", message=message)
    message.method, message.uri, message.version = match.groups()
    if not TOKEN_RE.match(message.method):
        raise SipSyntaxError("method is not a token", message=message)


def _frame_body(message: SipMessage, rest: bytes, stream: bool) -> bytes:
    lengths = {value.strip() for value in message.get_lines("content-length")}
    if not lengths:
        if stream:
            raise SipSyntaxError("Content-Length is mandatory over stream transports", message=message)
        return rest
    if len(lengths) > 1:
        raise SipSyntaxError("conflicting Content-Length headers", message=message)
    length = ascii_int(lengths.pop())
    if length is None:
        raise SipSyntaxError("Content-Length is not a non-negative integer", message=message)
    if length > len(rest):
        raise SipSyntaxError("body shorter than Content-Length", message=message)
    return rest[:length]


def frame_stream(buffer: bytes, max_bytes: int) -> tuple[bytes | None, bytes]:
    """One complete message from the front of a TCP buffer, or None if more bytes are needed (§18.3)."""
    buffer = buffer.lstrip(b"\r\n")
    index = buffer.find(b"\r\n\r\n")
    if index < 0:
        if len(buffer) > max_bytes:
            raise SipSyntaxError("header block too large", status=513)
        return None, buffer
    head = buffer[:index].decode("utf-8", "surrogateescape")
    match = re.search(r"(?im)^(?:content-length|l)[ \t]*:[ \t]*([0-9]+)[ \t]*$", head)
    length = ascii_int(match.group(1)) if match else None
    if length is None:
        raise SipSyntaxError("Content-Length is mandatory over stream transports")
    end = index + 4 + length
    if end > max_bytes:
        raise SipSyntaxError("message too large", status=513)
    if len(buffer) < end:
        return None, buffer
    return buffer[:end], buffer[end:]


# --------------------------------------------------------------------------------------------- structured values


def split_list(value: str, separator: str = ",") -> list[str]:
    """Split on `separator` outside quoted strings and <...>; raises on an unbalanced quote."""
    items: list[str] = []
    current: list[str] = []
    in_quotes = in_angle = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif in_quotes and char == "\\":
            escaped = True
        elif char == '"' and not in_angle:
            in_quotes = not in_quotes
        elif not in_quotes and char == "<":
            in_angle = True
        elif not in_quotes and char == ">":
            in_angle = False
        elif char == separator and not in_quotes and not in_angle:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if in_quotes:
        raise SipSyntaxError("unbalanced quotes")
    items.append("".join(current).strip())
    return items


def parse_params(text: str) -> dict[str, str | None]:
    """`;name=value;flag` (leading ';' optional) with LWS allowed around ';' and '=' (§25.1 SEMI, EQUAL)."""
    params: dict[str, str | None] = {}
    text = text.strip()
    if not text:
        return params
    if text.startswith(";"):
        text = text[1:]
    for part in split_list(text, ";"):
        name, equals, value = part.partition("=")
        name = name.strip()
        if not name or not TOKEN_RE.match(name):
            raise SipSyntaxError(f"bad parameter {part!r}")
        value = value.strip()
        if equals and not value:
            raise SipSyntaxError(f"parameter {name} has no value")
        params[name.lower()] = value if equals else None
    return params


@dataclass(frozen=True)
class SipUri:
    scheme: str
    user: str
    host: str
    port: int | None
    params: dict[str, str | None]
    headers: str
    raw: str

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host


def parse_uri(text: str) -> SipUri:
    """A sip/sips URI in full (§19.1), any other scheme only as scheme:opaque (its syntax is not ours to judge)."""
    scheme, colon, rest = text.partition(":")
    if not colon or not SCHEME_RE.match(scheme) or not rest:
        raise SipSyntaxError(f"malformed URI {text[:60]!r}")
    scheme = scheme.lower()
    if scheme not in ("sip", "sips"):
        if any(c in rest for c in " \t<>\""):
            raise SipSyntaxError(f"malformed URI {text[:60]!r}")
        return SipUri(scheme, "", "", None, {}, "", text)
    if any(c in rest for c in " \t<>\"\r\n"):
        raise SipSyntaxError(f"malformed SIP URI {text[:60]!r}")
    user = ""
    if "@" in rest:
        # The userinfo may legally hold ';', '?' and ':' (RFC 4475 intmeth), so split at the last '@'.
        user, _, rest = rest.rpartition("@")
        if not user:
            raise SipSyntaxError("empty userinfo")
    rest, _, headers = rest.partition("?")
    hostport, _, param_text = rest.partition(";")
    host, port = _split_hostport(hostport)
    return SipUri(scheme, user, host, port, parse_params(param_text), headers, text)


def _split_hostport(hostport: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise SipSyntaxError("unterminated IPv6 reference")
        host, port_text = hostport[: end + 1], hostport[end + 1:]
        if port_text and not port_text.startswith(":"):
            raise SipSyntaxError("garbage after IPv6 reference")
        port_text = port_text[1:]
    else:
        host, _, port_text = hostport.partition(":")
    if not HOST_RE.match(host or "-"):
        raise SipSyntaxError(f"malformed host {host!r}")
    if port_text == "" and hostport.endswith(":"):
        raise SipSyntaxError("empty port")
    port = ascii_int(port_text) if port_text else None
    if port_text and (port is None or not 0 < port < 65536):
        # e.g. RFC 5118 ipv6-bad "sip:2001:db8::10": an IPv6 address must be bracketed.
        raise SipSyntaxError(f"malformed port {port_text!r}")
    return host.lower(), port


@dataclass(frozen=True)
class NameAddr:
    display: str
    uri: str
    params: dict[str, str | None]
    bracketed: bool

    def uri_parsed(self) -> SipUri:
        return parse_uri(self.uri)


def parse_name_addr(text: str) -> NameAddr:
    """`[display] <uri> ;params` or `addr-spec ;params` (§20.10, §25.1)."""
    text = text.strip()
    if "<" in text:
        return _parse_bracketed(text)
    uri, _, param_text = text.partition(";")
    uri = uri.strip()
    if "?" in uri or "," in uri:
        # §20: a URI holding a comma, question mark or semicolon MUST be inside <>.
        raise SipSyntaxError("URI with '?' or ',' outside <>")
    if not uri:
        raise SipSyntaxError("empty address")
    parse_uri(uri)
    return NameAddr("", uri, parse_params(param_text), False)


def _parse_bracketed(text: str) -> NameAddr:
    display, in_quotes, escaped, index = "", False, False, 0
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif in_quotes and char == "\\":
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif char == "<" and not in_quotes:
            break
    else:
        raise SipSyntaxError("unbalanced quotes or missing '<'")
    display = text[:index].strip()
    _check_display_name(display)
    end = text.find(">", index)
    if end < 0:
        raise SipSyntaxError("missing '>'")
    uri = text[index + 1: end]
    if uri != uri.strip():
        raise SipSyntaxError("whitespace inside <>")  # RFC 4475 badaspec
    parse_uri(uri)
    return NameAddr(_unquote(display), uri, parse_params(text[end + 1:]), True)


def _check_display_name(display: str) -> None:
    if not display or (display.startswith('"') and display.endswith('"') and len(display) >= 2):
        return
    for word in display.split():
        if not TOKEN_RE.match(word):
            # RFC 4475 baddn: an unquoted display name may only hold tokens.
            raise SipSyntaxError("unquoted display name with non-token characters")


def _unquote(display: str) -> str:
    if display.startswith('"') and display.endswith('"'):
        return re.sub(r"\\(.)", r"\1", display[1:-1])
    return display


@dataclass(frozen=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str | None]

    @property
    def branch(self) -> str:
        return self.params.get("branch") or ""

    @property
    def sent_by(self) -> str:
        return f"{self.host}:{self.port or 5060}"


def parse_via(text: str) -> Via:
    match = VIA_SENT_PROTOCOL_RE.match(text.strip())
    if not match:
        raise SipSyntaxError("malformed Via sent-protocol")
    transport, rest = match.groups()
    hostport, _, param_text = rest.partition(";")
    host, port = _split_hostport(hostport.strip())
    return Via(transport.upper(), host, port, parse_params(param_text))


@dataclass(frozen=True)
class CSeq:
    number: int
    method: str


def parse_cseq(text: str) -> CSeq:
    parts = text.split()
    number = ascii_int(parts[0]) if len(parts) == 2 else None
    if number is None or not TOKEN_RE.match(parts[1]):
        raise SipSyntaxError("malformed CSeq")
    if number > MAX_CSEQ:
        raise SipSyntaxError("CSeq number out of range")
    return CSeq(number, parts[1])


def media_type(value: str | None) -> str:
    """`application/SDP; charset=x` -> `application/sdp`."""
    return (value or "").split(";", 1)[0].strip().lower()


# --------------------------------------------------------------------------------------------- request checks


def check_request(message: SipMessage) -> None:
    """The §8.2 / §25 syntax a UAS relies on. Raises SipSyntaxError(400) naming the first problem."""
    try:
        _check_mandatory_headers(message)
        _check_cseq(message)
        for via in message.get_all("via"):
            parse_via(via)
        for name in ("to", "from"):
            parse_name_addr(message.get(name) or "")
        for name in ("contact", "route", "record-route"):
            for value in message.get_all(name):
                if value != "*":
                    parse_name_addr(value)
        _check_max_forwards(message)
        _check_request_uri(message)
        _check_date(message)
    except SipSyntaxError as error:
        error.message = message
        raise


def _check_mandatory_headers(message: SipMessage) -> None:
    # Max-Forwards is not required: RFC 2543 peers (RFC 4475 inv2543) do not send it.
    for name in SINGLE_HEADERS:
        count = len(message.get_lines(name))
        if count != 1:
            raise SipSyntaxError(f"{pretty_name(name)} must appear exactly once (found {count})")
    if not message.get_all("via"):
        raise SipSyntaxError("missing Via")


def _check_cseq(message: SipMessage) -> None:
    cseq = message.cseq
    if cseq.method != message.method:
        raise SipSyntaxError("CSeq method does not match the request method")


def _check_max_forwards(message: SipMessage) -> None:
    values = message.get_lines("max-forwards")
    if len(values) > 1:
        raise SipSyntaxError("Max-Forwards appears more than once")
    hops = ascii_int(values[0]) if values else 0
    if hops is None or hops > 255:
        raise SipSyntaxError("Max-Forwards is not 0..255")


def _check_request_uri(message: SipMessage) -> None:
    uri = parse_uri(message.uri)
    if uri.scheme in ("sip", "sips") and uri.headers:
        # §19.1.5: headers are not allowed in a Request-URI (RFC 4475 escruri).
        raise SipSyntaxError("Request-URI carries headers")


def _check_date(message: SipMessage) -> None:
    date = message.get("date")
    if date is not None and not RFC1123_DATE_RE.match(date):
        raise SipSyntaxError("Date is not an RFC 1123 GMT date")


# --------------------------------------------------------------------------------------------- responses

REASON_PHRASES = {
    100: "Trying", 180: "Ringing", 200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 405: "Method Not Allowed", 406: "Not Acceptable", 408: "Request Timeout",
    413: "Request Entity Too Large", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    420: "Bad Extension", 480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "Version Not Supported", 513: "Message Too Large", 603: "Decline",
}
# Copied from the request into every response (§8.2.6.2).
ECHOED_HEADERS = ("via", "from", "to", "call-id", "cseq")


def build_response(
    request: SipMessage,
    status: int,
    source: tuple[str, int] | None = None,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    reason: str | None = None,
) -> SipMessage:
    """A response to `request` (§8.2.6). The top Via gets received/rport from `source` (§18.2.1, RFC 3581)
    so intermediaries can route it back; we ourselves always send it to `source`, never to the Via host.
    Works on partially parsed (malformed) requests: the echoed headers are copied verbatim."""
    response = SipMessage(status=status, reason=reason or REASON_PHRASES.get(status, "Unknown"))
    for name, value in request.headers:
        if name not in ECHOED_HEADERS:
            continue
        if name == "to" and to_tag and status != 100 and "tag=" not in value.lower():
            value = f"{value};tag={to_tag}"
        response.headers.append((name, value))
    if source is not None:
        _stamp_top_via(response, source)
    response.headers += headers or []
    response.body = body
    return response


def _stamp_top_via(response: SipMessage, source: tuple[str, int]) -> None:
    for index, (name, value) in enumerate(response.headers):
        if name != "via":
            continue
        try:
            first, *others = split_list(value) if value else [""]
            via = parse_via(first)
        except SipSyntaxError:
            return  # a malformed Via is echoed untouched
        if via.host.strip("[]") != source[0]:
            first += f";received={source[0]}"
        if "rport" in via.params and via.params["rport"] is None:
            first = re.sub(r";\s*rport(?=\s*(;|$))", f";rport={source[1]}", first, count=1)
        response.headers[index] = (name, ", ".join([first, *others]))
        return
