"""Call ids and the doors calls come in by: one fact, used by every door, the voice loop and the books.

A call id is `<door>-<uuid4 hex>`: unique across doors and restarts, never a counter (a restarted gateway must never
hand a new caller an old conversation) and not guessable. It is the conversation id upstream (the Rasa sender, the
CDR, the call record, every log line). What a peer calls the call (a SIP Call-ID, a Twilio callSid, an AudioSocket
UUID) is only kept as a reference (`peer_call_id`): a peer that repeats or forges an id never lands in another call.
"""

from __future__ import annotations

import uuid

DOOR_SIP = "sip"
DOOR_MEDIA_STREAM = "media_stream"  # the Twilio-protocol /media WebSocket
DOOR_AUDIOSOCKET = "audiosocket"
DOOR_WEB = "web"  # the browser voice page and `make call` (/voice/ws)
DOOR_CONSOLE = "console"  # the web text console (/console): its records' channel, its ids `console-<uuid4 hex>`
DOORS = (DOOR_SIP, DOOR_MEDIA_STREAM, DOOR_AUDIOSOCKET, DOOR_WEB, DOOR_CONSOLE)
# The doors of the project's developers and trainers, not of the bank's customers: the KPIs leave their calls out
# by default (bot/kpis.py, docs/KPIS.md).
DEVELOPER_DOORS = frozenset({DOOR_CONSOLE, DOOR_WEB})


def new_call_id(door: str) -> str:
    """The id of a new call at `door`."""
    return f"{door}-{uuid.uuid4().hex}"


def door_of(call_id: str) -> str:
    """The door of a call id made by `new_call_id` ("unknown" for any other id, e.g. a test's)."""
    door = call_id.rsplit("-", 1)[0]
    return door if door in DOORS else "unknown"
