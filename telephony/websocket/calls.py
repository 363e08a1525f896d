"""What the media doors (Twilio-style WebSocket, AudioSocket) share when they hand a call to the voice loop.

The voice loop's contract is `bot.call`: a `CallFactory` (in production `VoiceRuntime.create_call`) turns a
`CallInfo` into a `CallHandle`. `CallBinding` attaches the control callbacks every door needs: the bot's
hangup becomes an event the door's connection loop waits on, and handoffs are declined because neither
door can transfer a call (the bot then apologises and offers a callback, per the REST call contract).
It also keeps the call's books: its log lines carry `call=<id>`, keys are logged without the key, and the
call ends in one CDR line and the telephony metrics (telephony/cdr.py, telephony/metrics.py).

Call ids: every call gets a fresh `<door>-<uuid4>` (`new_call_id`), unique across doors and restarts and not
guessable. What the peer calls the call (Twilio callSid, AudioSocket UUID) is only a reference, kept in the CDR
as `peer_call_id`: a peer that repeats or forges an id must never land in another call's conversation.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from typing import Any, Callable

from prometheus_client import Counter

from bot.call import CallHandle, CallInfo
from telephony import metrics
from telephony.call_log import call_logger
from telephony.cdr import CallDetailRecord, CdrWriter, finish_call, handoff_is_green_channel

log = logging.getLogger(__name__)

CallFactory = Callable[[CallInfo], CallHandle]
MEDIA_SAMPLE_RATE = 8000  # both doors carry 8 kHz telephone audio
_CALL_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")
_MAX_CALL_ID = 64
_MAX_CALLER_NUMBER = 32

BAD_MESSAGES = Counter("ivr_media_bad_messages_total",
                       "Malformed or out-of-place messages skipped at the media doors", ["door", "reason"])
REFUSED_CONNECTIONS = Counter("ivr_media_refused_connections_total",
                              "Connections the media doors closed before any call", ["door", "reason"])


def new_call_id(door: str) -> str:
    """The conversation id of a new call at `door`: globally unique and unguessable (uuid4), never the peer's."""
    return f"{door}-{uuid.uuid4().hex}"


def safe_peer_reference(raw: Any) -> str:
    """A peer-supplied id (callSid, streamSid) made safe for logs and the CDR; "" when nothing usable."""
    return _CALL_ID_UNSAFE.sub("", raw if isinstance(raw, str) else "")[:_MAX_CALL_ID]


def safe_caller_number(raw: Any) -> str:
    """Digits (and a leading +) of the caller's number, or "" when unknown."""
    if not isinstance(raw, str):
        return ""
    digits = re.sub(r"[^0-9]", "", raw)[:_MAX_CALLER_NUMBER]
    return ("+" + digits) if raw.strip().startswith("+") and digits else digits


class CallBinding:
    """Owns one started call for a door: hangup and handoff callbacks, caller input, the CDR, an idempotent stop.

    door: `telephony.metrics.DOOR_MEDIA_STREAM` or `DOOR_AUDIOSOCKET`; codec: what the wire carries;
    cdr_writer: where the call's CDR line goes (None: metrics only)."""

    def __init__(self, call: CallHandle, door: str, *, codec: str, peer_call_id: str = "",
                 cdr_writer: CdrWriter | None = None) -> None:
        self.call = call
        self.door = door
        self.bot_hung_up = asyncio.Event()
        self.log = call_logger(log, call.info.call_id)
        self.record = CallDetailRecord.begin(call.info.call_id, door, caller=call.info.caller_number,
                                             peer_call_id=peer_call_id, codec=codec)
        self._cdr_writer = cdr_writer
        self._stopped = False
        call.on_hangup = self._on_hangup
        call.on_handoff = self._on_handoff

    @property
    def call_id(self) -> str:
        return self.call.info.call_id

    async def start(self) -> bool:
        """Start the voice loop; False (logged) if it failed, so the door can refuse the call cleanly."""
        try:
            await self.call.start()
        except Exception:
            self.log.exception("the voice loop failed to start")
            return False
        self.record.answered()
        return True

    def feed_audio(self, pcm16: bytes) -> None:
        """One media message of caller audio (a "packet" in the CDR)."""
        self.record.packets_in += 1
        self.call.feed_audio(pcm16)

    def feed_dtmf(self, key: str) -> None:
        # A PIN is keyed: the log may say that a key came, never which.
        self.log.debug("dtmf key received (%s)", self.door)
        self.call.feed_dtmf(key)

    def audio_sent(self) -> None:
        """One media message of bot audio went out."""
        self.record.packets_out += 1

    async def stop(self, cause: str) -> None:
        """Stops the voice loop; the CDR is written even if that fails or is cancelled."""
        if self._stopped:
            return
        self._stopped = True
        try:
            await self.call.stop(cause)
        except Exception:  # teardown must go on: the connection and its socket still have to close
            self.log.exception("voice loop failed to stop cleanly")
        finally:
            finish_call(self.record, cause, self._cdr_writer)
            self.log.info("%s call ended (%s)", self.door, cause)

    async def _on_hangup(self) -> None:
        self.bot_hung_up.set()

    async def _on_handoff(self, event: dict[str, Any]) -> None:
        self.log.info("handoff to queue %s requested, but a %s call cannot be transferred", event.get("queue"),
                      self.door)
        green_channel = handoff_is_green_channel(event)
        self.record.transfer_requested(str(event.get("queue") or ""), None, green_channel=green_channel)
        self.record.transfer_finished(False, f"{self.door} calls cannot be transferred")
        metrics.transfer_finished(metrics.UNROUTED_QUEUE, False, green_channel, None)
        # Answer outside the callback so the voice loop is not re-entered from its own output task.
        asyncio.get_running_loop().call_soon(
            self.call.transfer_result, False, f"{self.door} calls cannot be transferred")


def bind_call(
    call_factory: CallFactory, info: CallInfo, door: str, *, codec: str, peer_call_id: str,
    on_audio: Callable[[bytes], None], on_clear: Callable[[], None], cdr_writer: CdrWriter | None,
) -> CallBinding | None:
    """Create the voice loop's call for `info` and bind it to a door's audio callbacks; None (logged) when the
    voice loop refuses the call, so the door can close the connection instead of crashing."""
    try:
        call = call_factory(info)
    except Exception:
        call_logger(log, info.call_id).exception("the voice loop refused the call")
        return None
    call.on_audio = on_audio
    call.on_clear = on_clear
    return CallBinding(call, door, codec=codec, peer_call_id=peer_call_id, cdr_writer=cdr_writer)


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
