"""Transfer to a human queue with REFER (RFC 3515), and only to a queue of the routing table.

The routing table (`settings.sip.routing`, "queue=uri;queue=uri") is the complete list of places we may
send a caller: anything else is refused before a byte goes out (no toll fraud through a crafted handoff).
Context travels as X-IVR-* headers; values are sanitised so they cannot inject headers. X-IVR-Context-Ref is the
unguessable reference of the agent's screen-pop (bot/screen_pop.py, `GET /agent/{ref}` on the gateway).
The outcome comes back in NOTIFY bodies of type message/sipfrag (RFC 3420): `SIP/2.0 200 OK`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from telephony.sip.message import parse_uri

ENTRY_START_RE = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=\s*(sips?:.*)$")
SIPFRAG_STATUS_RE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9])(?: (.*))?$")
SAFE_VALUE_RE = re.compile(r"[^A-Za-z0-9_.:@\-+]")
MAX_CONTEXT_VALUE = 64

# context key (handoff event) -> header
CONTEXT_HEADERS = {
    "intent": "X-IVR-Intent",
    "verified": "X-IVR-Verified",
    "customer_ref": "X-IVR-Customer-Ref",
    "green_channel": "X-IVR-Green-Channel",
    "call_id": "X-IVR-Call-Id",
    # The agent's screen-pop (bot/screen_pop.py): GET /agent/{ref} on the gateway that handed the call off.
    "context_ref": "X-IVR-Context-Ref",
}


class TransferNotAllowed(ValueError):
    """The target is not in the routing table."""


@dataclass(frozen=True)
class RoutingTable:
    routes: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> "RoutingTable":
        """`queue=uri;queue=uri`; a ';' that does not start `name=sip:` belongs to the previous URI's params."""
        routes: dict[str, str] = {}
        current: str | None = None
        for part in text.split(";"):
            match = ENTRY_START_RE.match(part)
            if match:
                current = match.group(1)
                routes[current] = match.group(2).strip()
            elif current and part.strip():
                routes[current] += ";" + part.strip()
            elif part.strip():
                raise ValueError(f"SIP_ROUTING entry {part!r} is not queue=sip:uri")
        for uri in routes.values():
            parse_uri(uri)
        return cls(routes)

    def uri_for(self, queue: str) -> str:
        try:
            return self.routes[queue]
        except KeyError:
            raise TransferNotAllowed(f"no route for queue {queue!r}") from None

    def check_target(self, uri: str) -> str:
        if uri not in self.routes.values():
            raise TransferNotAllowed(f"{uri!r} is not in the routing table")
        return uri


def context_headers(context: dict) -> list[tuple[str, str]]:
    """The handoff context as headers. Values are reduced to a safe alphabet and length (no CR/LF, no PII)."""
    headers: list[tuple[str, str]] = []
    for key, header in CONTEXT_HEADERS.items():
        value = context.get(key)
        if value is None:
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        headers.append((header.lower(), SAFE_VALUE_RE.sub("_", text)[:MAX_CONTEXT_VALUE]))
    return headers


def sipfrag_status(body: bytes) -> tuple[int, str] | None:
    """The status line of a message/sipfrag body, or None if it has none."""
    first_line = body.decode("utf-8", "replace").lstrip().split("\n", 1)[0].strip()
    match = SIPFRAG_STATUS_RE.match(first_line)
    if not match:
        return None
    return int(match.group(1)), (match.group(2) or "").strip()
