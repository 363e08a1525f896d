"""What the media doors (Twilio-style WebSocket, AudioSocket) share: a call's life is a `bot.call_session.CallSession`
(id, admission, voice loop, CDR, metrics, key logging, teardown); this module only holds what the two wire protocols
have in common: the sample rate, the counters of what they refuse and skip, and a way to wait on two things.

What the peer calls the call (Twilio callSid, AudioSocket UUID) is only a reference, kept in the CDR as
`peer_call_id` (`safe_peer_reference`): the call id is always our own (bot/call_ids.py).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from prometheus_client import Counter

from bot.call_session import CallFactory  # noqa: F401 (the doors' type for runtime.create_call)

MEDIA_SAMPLE_RATE = 8000  # both doors carry 8 kHz telephone audio
_CALL_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
_MAX_CALL_ID = 64

BAD_MESSAGES = Counter("ivr_media_bad_messages_total",
                       "Malformed or out-of-place messages skipped at the media doors", ["door", "reason"])
REFUSED_CONNECTIONS = Counter("ivr_media_refused_connections_total",
                              "Connections the media doors closed before any call", ["door", "reason"])


def safe_peer_reference(raw: Any) -> str:
    """A peer-supplied id (callSid, streamSid) made safe for logs and the CDR; "" when nothing usable."""
    return _CALL_ID_UNSAFE.sub("", raw if isinstance(raw, str) else "")[:_MAX_CALL_ID]


async def first_result(*awaitables: Any) -> Any:
    """Wait for the first awaitable to finish, cancel and reap the others, return its result."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    first = next(task for task in tasks if task in done)
    return first.result()
