"""One call's life at any door: its id, admission, the voice loop, key logging, handoff and transfer result, the CDR
and the per-door metrics, and a teardown that always completes.

The doors (SIP legs in telephony/sip_calls.py, the /media and AudioSocket connections in telephony/websocket/, the
browser's /voice/ws in bot/web/voice.py) only translate their wire to these calls:

    session = CallSession(runtime.create_call, DOOR_MEDIA_STREAM, caller="13800000001", peer_call_id=call_sid,
                          codec="PCMU", cdr_writer=writer, admission=runtime.admission)
    session.admit()                         # optional, early (SIP, at the INVITE): False → refuse with 503
    if not await session.start(on_audio=send, on_clear=flush):
        if session.busy: await session.play_busy(send)    # the admission limit: say so, then close
    session.feed_audio(pcm16); session.feed_dtmf(key); session.audio_sent()
    await session.bot_hung_up.wait()        # or the peer hangs up
    await session.stop("remote_hangup")     # idempotent; the slot is released and the CDR written whatever failed

A handoff goes to the door's `transfer` hook (SIP: a REFER). Without one the door cannot transfer: the session
declines it, and the dialogue apologises and offers a callback (the REST call contract). With `screen_pops` (the voice
loop's bot/screen_pop.py store) the handoff first leaves the agent's screen-pop there, and the event the hook gets
carries its reference as `context["context_ref"]` (SIP sends it as X-IVR-Context-Ref).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Protocol

from bot import door_metrics as metrics
from bot.admission import Admission, AtCapacity
from bot.call_ids import new_call_id
from bot.call_log import CallLoggerAdapter, call_logger
from bot.cdr import CallDetailRecord, CdrWriter, finish_call, handoff_is_green_channel
from bot.screen_pop import ScreenPopStore, ref_tag, screen_pop_for

log = logging.getLogger(__name__)

BUSY_CHUNK_S = 0.02  # the busy prompt goes out in 20 ms frames, paced in real time like the loop's own audio
CALLER_NUMBER_MAX = 32
VOICE_STOP_TIMEOUT_S = 10.0  # the pipeline's own teardown waits up to 5 s for its task (bot/call.py)
_ASCII_DIGITS = frozenset("0123456789")


def safe_caller_number(raw: Any) -> str:
    """A peer's idea of the caller (a SIP From user, a stream parameter) as a dialable number: ASCII digits and a
    leading +, or "" when unknown. '٣' and '３' are digits to `str.isdigit`, not to a bank."""
    if not isinstance(raw, str):
        return ""
    digits = "".join(c for c in raw if c in _ASCII_DIGITS)[:CALLER_NUMBER_MAX]
    return ("+" + digits) if raw.strip().startswith("+") and digits else digits


class VoiceCall(Protocol):
    """What a session needs from a voice-loop call (bot.call.CallHandle satisfies it)."""

    on_audio: Callable[[bytes], None]
    on_clear: Callable[[], None]
    on_handoff: Any
    on_hangup: Any

    async def start(self) -> None: ...
    def feed_audio(self, pcm16: bytes) -> None: ...
    def feed_dtmf(self, key: str) -> None: ...
    def transfer_result(self, ok: bool, detail: str = "") -> None: ...
    async def stop(self, cause: str = "remote_hangup") -> None: ...


CallFactory = Callable[[Any], VoiceCall]  # bot.call.CallInfo -> VoiceCall; raises AtCapacity at the limit
TransferHook = Callable[["CallSession", dict], Awaitable[None]]


class CallSession:
    """One call at one door. `sample_rate`: the wire's audio rate; `cdr_writer` None: metrics only."""

    def __init__(self, calls: CallFactory, door: str, *, caller: str = "", peer_call_id: str = "",
                 codec: str | None = None, sample_rate: int = 8000, cdr_writer: CdrWriter | None = None,
                 admission: Admission | None = None, transfer: TransferHook | None = None,
                 on_bot_hangup: Callable[[], None] | None = None, call_id: str | None = None,
                 screen_pops: ScreenPopStore | None = None) -> None:
        self.id = call_id or new_call_id(door)
        self.door = door
        self.caller = caller = safe_caller_number(caller)
        self.sample_rate = sample_rate
        self.record = CallDetailRecord.begin(self.id, door, caller=caller, peer_call_id=peer_call_id, codec=codec)
        self.log: CallLoggerAdapter = call_logger(log, self.id)
        self.voice: VoiceCall | None = None
        self.busy: AtCapacity | None = None
        self.bot_hung_up = asyncio.Event()
        # Run at teardown after the voice loop stopped and before the CDR is written (SIP: close RTP, copy stats).
        self.before_record: Callable[[], None] | None = None
        self._calls = calls
        self._cdr_writer = cdr_writer
        self._admission = admission
        self._transfer = transfer
        self._on_bot_hangup = on_bot_hangup
        self._screen_pops = screen_pops
        self._stopped = False

    # ---- start ------------------------------------------------------------------------------

    def admit(self) -> bool:
        """Take an admission slot now (before answering); False when the voice loop is full."""
        if self._admission is None or self._admission.try_admit(self.id, self.door):
            return True
        self.busy = AtCapacity(self._admission.limit)
        return False

    async def start(self, on_audio: Callable[[bytes], None], on_clear: Callable[[], None],
                    on_event: Callable[[dict], None] | None = None) -> bool:
        """Create and start the voice loop; False (logged) when it is full (`busy` is set) or failed to start.
        `on_event`: the loop's events for a console (partial, caller, bot, metrics…: bot/processors/call_observer)."""
        from bot.call import CallInfo  # the pipeline stack loads only when a call really starts

        try:
            voice = self._calls(CallInfo(self.id, self.caller, sample_rate=self.sample_rate))
        except AtCapacity as full:
            self.busy = full
            return False
        except Exception:
            self.log.exception("the voice loop refused the call")
            return False
        voice.on_audio, voice.on_clear = on_audio, on_clear
        voice.on_handoff, voice.on_hangup = self._on_handoff, self._on_hangup
        if on_event is not None:
            voice.on_event = on_event  # type: ignore[attr-defined] (CallHandle's; telephony doors have no console)
        self.voice = voice
        try:
            await voice.start()
        except Exception:
            self.log.exception("the voice loop failed to start")
            return False
        self.record.answered()
        return True

    async def play_busy(self, send: Callable[[bytes], Any]) -> None:
        """The spoken busy prompt, in real-time 20 ms frames through `send` (which may be a coroutine function)."""
        busy_audio = self.busy.busy_audio if self.busy is not None else None
        if busy_audio is None:
            return
        try:
            pcm = await busy_audio(self.sample_rate)
        except Exception:
            self.log.exception("the busy prompt could not be synthesised")
            return
        step = int(self.sample_rate * BUSY_CHUNK_S) * 2
        started = time.monotonic()
        for index, offset in enumerate(range(0, len(pcm), step)):
            sent = send(pcm[offset:offset + step])
            if asyncio.iscoroutine(sent):
                await sent
            await asyncio.sleep(max(0.0, started + (index + 1) * BUSY_CHUNK_S - time.monotonic()))

    # ---- caller → loop ----------------------------------------------------------------------

    def feed_audio(self, pcm16: bytes) -> None:
        """One wire message or packet of caller audio."""
        self.record.packets_in += 1
        if self.voice is not None:
            self.voice.feed_audio(pcm16)

    def feed_dtmf(self, key: str, via: str = "") -> None:
        # A PIN is keyed: the log may say that a key came, never which.
        self.log.debug("dtmf key received (%s)", via or self.door)
        if self.voice is not None:
            self.voice.feed_dtmf(key)

    def audio_sent(self) -> None:
        """One wire message of bot audio went out."""
        self.record.packets_out += 1

    # ---- handoff ------------------------------------------------------------------------------

    def transfer_requested(self, queue: str, uri: str | None, event: dict) -> None:
        self.record.transfer_requested(queue, uri, green_channel=handoff_is_green_channel(event))

    def transfer_finished(self, ok: bool, detail: str, time_to_agent_s: float | None = None,
                          refer_accepted_s: float | None = None) -> None:
        """The transfer's outcome: into the CDR, the call record and the metrics, and back to the dialogue (which
        apologises on failure). Answered outside the caller's callback so the voice loop is not re-entered from its
        own task. `time_to_agent_s`: from our answer (the call's 200 OK) to the agent answering (the REFER's NOTIFY 200);
        `refer_accepted_s`: from the handoff (our REFER) to the queue taking it (its 202)."""
        record = self.record
        record.transfer_finished(ok, detail, time_to_agent_s, refer_accepted_s)
        call_record = getattr(self.voice, "record", None)  # CallHandle's CallRecord (doubles may have none)
        if ok and hasattr(call_record, "agent_answered"):
            call_record.agent_answered(time_to_agent_s)
        queue = record.transfer_queue if record.transfer_uri is not None else metrics.UNROUTED_QUEUE
        metrics.transfer_finished(queue or metrics.UNROUTED_QUEUE, ok, record.green_channel, time_to_agent_s)
        if ok and time_to_agent_s is not None:
            self.log.info("time to agent %.1f s (queue %s)", time_to_agent_s, record.transfer_queue)
        if self.voice is not None:
            asyncio.get_running_loop().call_soon(self.voice.transfer_result, ok, detail)

    async def _on_handoff(self, event: dict[str, Any]) -> None:
        if self._transfer is not None:
            await self._transfer(self, self._with_screen_pop(event))
            return
        self.log.info("handoff to queue %s requested, but a %s call cannot be transferred", event.get("queue"),
                      self.door)
        self.transfer_requested(str(event.get("queue") or ""), None, event)
        self.transfer_finished(False, f"{self.door} calls cannot be transferred")

    def _with_screen_pop(self, event: dict[str, Any]) -> dict[str, Any]:
        """The handoff event, its context carrying the reference of the agent's screen-pop (when there is a store)."""
        if self._screen_pops is None:
            return event
        try:
            pop = screen_pop_for(event, caller=self.caller, record=getattr(self.voice, "record", None),
                                 call_id=self.id)
            ref = self._screen_pops.create(pop)
        except Exception:  # the caller must reach the agent even when the pop cannot be made
            self.log.exception("screen-pop not made")
            return event
        context = dict(event.get("context")) if isinstance(event.get("context"), dict) else {}
        context["context_ref"] = ref
        # Never the reference (it opens the agent's page): its tag, which matches the desk's log and a reference
        # someone holds. The reference travels as the REFER's X-IVR-Context-Ref (the stand-in desk prints the page).
        self.log.info("screen-pop %s filed for the agent (for %.0f s)", ref_tag(ref), self._screen_pops.ttl_s)
        return {**event, "context": context}

    async def _on_hangup(self) -> None:
        self.bot_hung_up.set()
        if self._on_bot_hangup is not None:
            self._on_bot_hangup()

    # ---- teardown ---------------------------------------------------------------------------

    async def stop(self, cause: str) -> None:
        """Once per call: stop the voice loop, free the slot, write the CDR (in a `finally`, whatever failed)."""
        if self._stopped:
            return
        self._stopped = True
        voice, self.voice = self.voice, None
        try:
            if voice is not None:
                # Bounded: a voice loop stuck in its own teardown must not keep the slot, the port and the CDR.
                await asyncio.wait_for(asyncio.shield(voice.stop(cause)), VOICE_STOP_TIMEOUT_S)
        except Exception:  # teardown must go on: the door's socket and ports still have to close
            self.log.exception("voice loop failed to stop cleanly")
        finally:
            self._close_books(cause)

    def _close_books(self, cause: str) -> None:
        try:
            if self.before_record is not None:
                self.before_record()
        except Exception:
            self.log.exception("closing the call's media failed")
        finally:
            if self._admission is not None:
                self._admission.release(self.id)
            finish_call(self.record, cause, self._cdr_writer)
            self.log.info("%s call ended (%s)", self.door, cause)
