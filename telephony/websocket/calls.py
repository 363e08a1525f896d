"""What the media doors (Twilio-style WebSocket, AudioSocket) share when they hand a call to the voice loop.

The voice loop's contract is `bot.call`: a `CallFactory` (in production `VoiceRuntime.create_call`) turns a
`CallInfo` into a `CallHandle`. `CallBinding` attaches the control callbacks every door needs: the bot's
hangup becomes an event the door's connection loop waits on, and handoffs are declined because neither
door can transfer a call (the bot then apologises and offers a callback, per the REST call contract).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Any, Callable

from prometheus_client import Counter, Gauge

from bot.call import CallHandle, CallInfo

log = logging.getLogger(__name__)

CallFactory = Callable[[CallInfo], CallHandle]
MEDIA_SAMPLE_RATE = 8000  # both doors carry 8 kHz telephone audio
_CALL_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
_MAX_CALL_ID = 64
_MAX_CALLER_NUMBER = 32

MEDIA_DOOR_CALLS = Counter("ivr_media_door_calls_total", "Calls ended on a media door, by door and cause",
                           ["door", "cause"])
MEDIA_DOOR_ACTIVE = Gauge("ivr_media_door_active_calls", "Calls in progress on a media door", ["door"])


def safe_call_id(raw: Any) -> str:
    """A call id safe for logs and Rasa sender ids; a fresh one when the peer sent nothing usable."""
    cleaned = _CALL_ID_UNSAFE.sub("", raw if isinstance(raw, str) else "")[:_MAX_CALL_ID]
    return cleaned or uuid.uuid4().hex


def safe_caller_number(raw: Any) -> str:
    """Digits (and a leading +) of the caller's number, or "" when unknown."""
    if not isinstance(raw, str):
        return ""
    digits = re.sub(r"[^0-9]", "", raw)[:_MAX_CALLER_NUMBER]
    return ("+" + digits) if raw.strip().startswith("+") and digits else digits


class CallBinding:
    """Owns one started call for a door: hangup and handoff callbacks, and an idempotent stop."""

    def __init__(self, call: CallHandle, door: str) -> None:
        self.call = call
        self.door = door
        self.bot_hung_up = asyncio.Event()
        self._stopped = False
        call.on_hangup = self._on_hangup
        call.on_handoff = self._on_handoff
        MEDIA_DOOR_ACTIVE.labels(door).inc()

    @property
    def call_id(self) -> str:
        return self.call.info.call_id

    async def start(self) -> bool:
        """Start the voice loop; False (logged) if it failed, so the door can refuse the call cleanly."""
        try:
            await self.call.start()
        except Exception:
            log.exception("call %s: the voice loop failed to start", self.call_id)
            return False
        return True

    async def stop(self, cause: str) -> None:
        if self._stopped:
            return
        self._stopped = True
        MEDIA_DOOR_ACTIVE.labels(self.door).dec()
        MEDIA_DOOR_CALLS.labels(self.door, cause).inc()
        try:
            await self.call.stop(cause)
        except Exception:  # teardown must go on: the connection and its socket still have to close
            log.exception("call %s: voice loop failed to stop cleanly", self.call_id)
        log.info("call %s: %s call ended (%s)", self.call_id, self.door, cause)

    async def _on_hangup(self) -> None:
        self.bot_hung_up.set()

    async def _on_handoff(self, event: dict[str, Any]) -> None:
        log.info("call %s: handoff to queue %s requested, but a %s call cannot be transferred",
                 self.call_id, event.get("queue"), self.door)
        # Answer outside the callback so the voice loop is not re-entered from its own output task.
        asyncio.get_running_loop().call_soon(
            self.call.transfer_result, False, f"{self.door} calls cannot be transferred")


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
