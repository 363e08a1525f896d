"""User-to-User call control information (RFC 7433) for the screen-pop reference that travels with a transfer.

A contact centre's PBX or agent desktop reads the `User-to-User` header of the INVITE that reaches the agent; many
know nothing of our X-IVR-* headers. The gateway is not the one sending that INVITE: the caller's phone does, on our
REFER. So the UUI goes where RFC 3515 §2.1 puts headers for the triggered request, embedded in the Refer-To URI
(`<sip:agent@pbx?User-to-User=...>`, RFC 3261 §19.1.1, escaped): the transfer case RFC 7433 describes.

The value follows the ISDN UUI package (RFC 7434), the one every PBX speaks:
    User-to-User: 04<hex of the ASCII reference>;encoding=hex;purpose=isdn-uui;content=isdn-uui
- the first octet is the protocol discriminator of the ISDN user-user element, 0x04 "IA5 characters", then the
  reference;
- `encoding=hex` is the only encoding RFC 7433 defines;
- at most 128 octets of data (what the ISDN user-user element carries), so it survives interworking.
Parsing is strict: anything else is not ours, and `parse_reference` answers None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

HEADER = "User-to-User"
PURPOSE_ISDN = "isdn-uui"
IA5_DISCRIMINATOR = 0x04  # Q.931 protocol discriminator: IA5 characters
MAX_UUI_OCTETS = 128  # the ISDN user-user element's limit (RFC 7434 interworks with it)
HEX_RE = re.compile(r"^(?:[0-9A-Fa-f]{2})+$")
PARAM_RE = re.compile(r"^([A-Za-z0-9_.!%*+`'~-]+)(?:=(.*))?$")
REFERENCE_RE = re.compile(r"[A-Za-z0-9_-]{1,127}")  # a URL-safe token; fullmatch only (`$` lets "\n" in)
# RFC 3261 §25.1 hnv-unreserved / unreserved: what may stay literal in an embedded header's value.
_URI_HEADER_SAFE = "[]/?:+$-_.!~*'()"


class UuiError(ValueError):
    """The UUI cannot be built: data too long, or not a URL-safe reference."""


@dataclass(frozen=True)
class Uui:
    data: bytes
    purpose: str
    content: str | None


def encode_reference(reference: str) -> str:
    """The header value carrying `reference` (a URL-safe token) as IA5 characters, hex-encoded."""
    if not REFERENCE_RE.fullmatch(reference):
        raise UuiError("a UUI reference must be 1-127 characters of [A-Za-z0-9_-]")
    data = bytes([IA5_DISCRIMINATOR]) + reference.encode("ascii")
    return f"{data.hex().upper()};encoding=hex;purpose={PURPOSE_ISDN};content={PURPOSE_ISDN}"


def parse(value: str) -> Uui | None:
    """One User-to-User value (the first, if the header holds a list), or None when it is not well-formed hex UUI.
    RFC 7433: with no `purpose` the package is isdn-uui, with no `encoding` the package's default (hex)."""
    first = value.split(",", 1)[0].strip()
    data_text, *param_texts = [part.strip() for part in first.split(";")]
    params: dict[str, str] = {}
    for text in param_texts:
        match = PARAM_RE.match(text)
        if not match:
            return None
        params[match.group(1).lower()] = (match.group(2) or "").strip().strip('"').lower()
    if params.get("encoding", "hex") != "hex" or not HEX_RE.match(data_text):
        return None
    data = bytes.fromhex(data_text)
    if len(data) > MAX_UUI_OCTETS:
        return None
    return Uui(data=data, purpose=params.get("purpose", PURPOSE_ISDN), content=params.get("content"))


def parse_reference(value: str | None) -> str | None:
    """The reference carried by `encode_reference`, or None for any other UUI (another package, binary data)."""
    uui = parse(value) if value else None
    if uui is None or uui.purpose != PURPOSE_ISDN or not uui.data or uui.data[0] != IA5_DISCRIMINATOR:
        return None
    text = uui.data[1:].decode("ascii", "replace")
    return text if REFERENCE_RE.fullmatch(text) else None


def with_embedded_header(uri: str, name: str, value: str) -> str:
    """`uri` with `name=value` as an embedded header (RFC 3261 §19.1.1), escaped so the URI stays one token:
    a ';' or '=' in the value cannot start a URI parameter or another header."""
    separator = "&" if "?" in uri else "?"
    return f"{uri}{separator}{quote(name, safe='-')}={quote(value, safe=_URI_HEADER_SAFE)}"
