"""Screen-pop for the agent who takes a transferred call: what the bot learnt, behind an unguessable reference.

    store = ScreenPopStore(ttl_s=1800)                 # the voice loop's (bot/web/voice_loop.py VoiceLoop.screen_pops)
    ref = store.create(screen_pop_for(event, caller="13800000001", record=call.record))
    ...                                                # the REFER carries it as X-IVR-Context-Ref (sip/refer.py)
    store.get(ref)                                     # GET /agent/{ref} (bot/web/agent.py); None: unknown or expired

A reference is `secrets.token_urlsafe(24)` (192 random bits): it is the only thing that names a pop, so it cannot be
enumerated or derived from a call id. Pops are filed under the SHA-256 of their reference, so looking one up compares
digests of what the requester sent, never the reference itself, character by character (no timing oracle), and a
reference is never kept in clear. Unknown, expired and malformed references are the same `None`. Nor is one logged:
logs name a pop by `ref_tag(ref)`, the first 12 hex digits of its SHA-256 (enough to tell pops apart and match a
reference someone holds to a log line; nothing to open the page with).

What a pop holds is safe to show an agent: the caller number masked (bot/masking.py), the handoff's flags, intent and
reason, and the last turns of the transcript with secure input (a PIN) already `****` (bot/call_records.py) and any
run of 6 or more digits masked too (a card or account number said aloud, a PIN spoken outside a secure prompt), by
the call record's own rule (bot/masking.py mask_long_digits), so separators between the digits (123，456, 一二三、四五六)
do not hide them.

The store is in memory, per gateway: the agent's page must be asked of the gateway that handed the call off. A
cluster would keep pops in its shared Redis or PostgreSQL (with the same hashing and expiry) instead.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections import OrderedDict
from typing import Any, Callable

from bot.masking import LONG_DIGITS_RE, mask_caller_number, mask_long_digits
from call_contract import PRIORITY_ELDERLY, QUEUE_ELDERLY

__all__ = ["LONG_DIGITS_RE", "REF_RE", "ScreenPopStore", "mask_long_digits", "ref_tag", "screen_pop_for"]

REF_BYTES = 24  # 192 bits; token_urlsafe gives 32 characters of [A-Za-z0-9_-]
REF_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")  # always fullmatch: `$` would let a trailing "\n" in
LAST_TURNS = 8
MAX_TURN_CHARS = 300
MAX_POPS = 10_000
REF_TAG_HEX = 12  # 48 bits of the reference's SHA-256: what logs say instead of the reference


def ref_tag(ref: str) -> str:
    """What a log line may say about a reference: a short prefix of its SHA-256 (never the reference itself)."""
    return _digest(ref).hex()[:REF_TAG_HEX]


def screen_pop_for(event: dict[str, Any], *, caller: str, record: Any = None, call_id: str = "",
                   last_turns: int = LAST_TURNS) -> dict[str, Any]:
    """The agent's view of a handoff event (docs/ARCHITECTURE.md) and the call record's transcript so far."""
    context = event.get("context") if isinstance(event.get("context"), dict) else {}
    queue = str(event.get("queue") or "")
    try:
        priority = int(event.get("priority") or 0)
    except (TypeError, ValueError):
        priority = 0
    turns = []
    for turn in list(getattr(record, "transcript", None) or [])[-last_turns:]:
        if not isinstance(turn, dict):
            continue
        text = str(turn.get("text") or "")[:MAX_TURN_CHARS]
        turns.append({"who": "caller" if turn.get("who") == "caller" else "bot",
                      "text": mask_long_digits(text)})
    intent = context.get("intent")
    return {
        "call_id": str(context.get("call_id") or call_id),
        "caller": mask_caller_number(caller),
        "queue": queue,
        "reason": str(event.get("reason") or ""),
        "intent": str(intent) if intent else None,
        "verified": bool(context.get("verified")),
        "green_channel": bool(context.get("green_channel")) or event.get("reason") == "green_channel",
        "elderly": queue == QUEUE_ELDERLY or priority >= PRIORITY_ELDERLY,
        "transcript": turns,
    }


def _digest(ref: str) -> bytes:
    return hashlib.sha256(ref.encode("utf-8", "replace")).digest()


class ScreenPopStore:
    """Pops by reference, each for `ttl_s` from its creation; at most `max_pops` (the oldest go first)."""

    def __init__(self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic, max_pops: int = MAX_POPS):
        self.ttl_s = ttl_s
        self._clock = clock
        self._max = max_pops
        self._pops: OrderedDict[bytes, tuple[float, dict[str, Any]]] = OrderedDict()  # digest -> (expires, pop)

    def __len__(self) -> int:
        self._expire(self._clock())
        return len(self._pops)

    def create(self, pop: dict[str, Any]) -> str:
        now = self._clock()
        self._expire(now)
        ref = secrets.token_urlsafe(REF_BYTES)
        self._pops[_digest(ref)] = (now + self.ttl_s, dict(pop))
        while len(self._pops) > self._max:
            self._pops.popitem(last=False)
        return ref

    def get(self, ref: str) -> dict[str, Any] | None:
        """The pop, or None for a reference that is malformed, unknown or expired (callers cannot tell which)."""
        now = self._clock()
        self._expire(now)
        entry = self._pops.get(_digest(ref)) if isinstance(ref, str) and REF_RE.fullmatch(ref) else None
        if entry is None or entry[0] <= now:
            return None
        return dict(entry[1])

    def _expire(self, now: float) -> None:
        # Created in order with one ttl, so expiry times are in order too: drop from the oldest end.
        while self._pops:
            digest, (expires, _) = next(iter(self._pops.items()))
            if expires > now:
                break
            del self._pops[digest]
