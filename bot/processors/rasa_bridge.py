"""The Rasa bridge: the voice loop's link to the dialogue, speaking the REST call contract (docs/ARCHITECTURE.md).

At start it sends `/call_start` with the call's metadata; then every caller turn (final transcript or keypad
message) goes to Rasa, and every reply comes back as TTS text frames and control frames. Requests run one at a
time, in order, in the bridge's own task, so a barge-in (which resets processors' queues) never loses a reply
that is on its way.

A reply slower than `hold_after_s` (settings.rasa.timeout_s) gets 「请稍候」 and is still waited for, up to the client's
timeout (settings.rasa_reply_timeout_s, longer than the dialogue's own turn budget), so a turn that moves money is
never apologised for and then done. When Rasa is down or past that timeout, the caller hears a Mandarin apology
and an offer of an agent; asking for one while Rasa is still down transfers the call to the general queue.
Secure input (after `expect secure=true`) goes to Rasa and nowhere else: logs and records see `****`.
The dialogue's facts (`task_completed`, `elderly`, the satisfaction survey's `survey_offered` / `survey_answer`) go
to the call record. The survey is open while the latest reply asked its question: a silence then goes to the
dialogue as `/survey_no_answer` (it retries or says goodbye), never to the menu or an agent, and is no no-input
timeout for the KPIs; the ladder's last rung ends the call; keys typed before the question are dropped; with Rasa
gone the caller is let go with a goodbye, or transferred when they press the human key.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any

from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    StartFrame,
    TTSSpeakFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from bot.call_log import call_logger
from bot.call_records import BOT_HANGUP_NO_INPUT, CallRecord
from bot.frames import (
    BotReplyTextFrame,
    CallerTurnFrame,
    DialogueTurnFrame,
    ExpectInputFrame,
    HandoffFrame,
    HangupFrame,
    NoInputFrame,
    PromptInterruptibleFrame,
    SpeechRateFrame,
    TransferResultFrame,
)
from bot.metrics import RASA_UNAVAILABLE_TURNS
from bot.processors.no_input import LAST_RUNG
from bot.rasa_client import BotReply, RasaClient, RasaUnavailable
from call_contract import (
    CALL_START,
    DIALOGUE_FACT_EVENTS,
    EVENT_SURVEY_ANSWER,
    EVENT_SURVEY_OFFERED,
    HUMAN_AGENT,
    MENU_KEY,
    NLU_FALLBACK_INTENT,
    SURVEY_NO_ANSWER,
    TRANSFER_FAILED,
    dtmf_message,
    event_kind,
    fallback_handoff,
    human_key,
    parse_expect,
    parse_interruptible,
    parse_speech_rate,
)

log = logging.getLogger(__name__)

KEYPAD_MENU = dtmf_message(MENU_KEY)
# CallerTurnFrame.source values that are the caller's own words or keys (the others are the loop's messages).
CALLER_SOURCES = frozenset({"speech", "keypad"})

# Rasa cannot be reached and the caller took the offer of an agent: short, the handoff follows it.
DIRECT_HANDOFF_TEXT = "抱歉，系统暂时繁忙，正在为您转接人工客服，请稍候。"
NO_INPUT_GOODBYE_TEXT = "您好像一直没有说话。感谢您的来电，再见。"
# The satisfaction survey was open and Rasa cannot be reached: the caller's business is done, let them go.
SURVEY_GOODBYE_TEXT = "感谢您的来电，再见。"
HOLD_TEXT = "正在为您办理，请稍候。"


def apology_text(key: str) -> str:
    """What the caller hears when Rasa cannot answer: sorry, and the key that reaches an agent all the same."""
    return f"抱歉，系统暂时无法处理您的请求。如需人工服务，请按{key}；您也可以稍后再拨。"


APOLOGY_TEXT = apology_text(human_key())  # under this process's settings (HUMAN_KEY)


@dataclass(frozen=True)
class CallMetadata:
    """What Rasa learns about the call with every message (the contract's `metadata`)."""

    caller_number: str
    asr_available: bool = True
    channel: str = "voice"

    def as_dict(self) -> dict[str, Any]:
        return {"caller_number": self.caller_number, "channel": self.channel, "asr_available": self.asr_available}


class RasaBridge(FrameProcessor):
    """Frames in: StartFrame (→ `/call_start`), CallerTurnFrame, NoInputFrame, TransferResultFrame.

    Frames out, per reply item, in order: TTSSpeakFrame (texts; `interruptible=False` under the dialogue's flag),
    HandoffFrame / HangupFrame / PromptInterruptibleFrame (downstream, in order with the texts),
    SpeechRateFrame / ExpectInputFrame (broadcast), BotReplyTextFrame;
    DialogueTurnFrame (broadcast) before each request (pending) and after its reply (not pending).
    """

    def __init__(self, *, client: RasaClient, call_id: str, metadata: CallMetadata,
                 record: CallRecord | None = None, third_silence_action: str = "handoff",
                 hold_after_s: float = 0.0, human_key: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        # the key the keypad gatherer turns into /human_agent (settings.voice.human_key), named in the apology
        self._apology_text = apology_text(human_key) if human_key else APOLOGY_TEXT
        self._hold_after_s = hold_after_s
        self._client = client
        self._call_id = call_id
        self._log = call_logger(log, call_id)  # the bridge knows its call: its lines say so without the filter
        self._metadata = metadata
        self._record = record or CallRecord(call_id=call_id, caller_number=metadata.caller_number)
        self._third_silence_action = third_silence_action
        self._requests: asyncio.Queue[CallerTurnFrame | NoInputFrame | TransferResultFrame] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._last_prompt: list[str] = []
        self._ending = False
        self._rasa_down = False
        self._interruptible = True  # the dialogue's flag for the prompts being pushed now
        self._survey_open = False  # the survey question is out: silence is no answer, never the menu or a person

    @property
    def record(self) -> CallRecord:
        return self._record

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            self._worker = self.create_task(self._work(), name="rasa_bridge")
            self._requests.put_nowait(CallerTurnFrame(text=CALL_START, source="call"))
            return
        if isinstance(frame, (EndFrame, CancelFrame)) and self._worker is not None:
            task, self._worker = self._worker, None
            await self.cancel_task(task)
        if isinstance(frame, (CallerTurnFrame, NoInputFrame, TransferResultFrame)):
            self._requests.put_nowait(frame)
            return
        await self.push_frame(frame, direction)

    async def _work(self) -> None:
        while True:
            request = await self._requests.get()
            try:
                await self._handle(request)
            except Exception:  # one bad reply must not end the call's dialogue
                self._log.exception("%s: failed handling %s", self, request)

    async def _handle(self, request: Frame) -> None:
        if isinstance(request, CallerTurnFrame):
            await self._send_turn(request)
        elif isinstance(request, NoInputFrame):
            await self._on_no_input(request.attempt)
        elif isinstance(request, TransferResultFrame):
            await self._on_transfer_result(request)

    # -- caller turns ------------------------------------------------------------------------------------------

    async def _send_turn(self, turn: CallerTurnFrame) -> None:
        if self._ending:
            return
        from_caller = turn.source in CALLER_SOURCES
        if from_caller:
            self._record.add_caller_turn(turn.text, source=turn.source, secure=turn.secure,
                                         asr_limits=turn.asr_limits)
        if turn.source != "call":
            # The expectation is used up by this turn; the reply may set a new one.
            await self.broadcast_frame(ExpectInputFrame, input=None)
        # Keys typed from now until the reply is in wait for the prompt it brings (keypad type-ahead).
        await self.broadcast_frame(DialogueTurnFrame, pending=True)
        survey_was_open = self._survey_open
        try:
            await self._exchange(turn, from_caller)
        finally:
            # Keys typed before the survey question (during the goodbye) answered something else: never a rating.
            await self.broadcast_frame(DialogueTurnFrame, pending=False,
                                       drop_typeahead=self._survey_open and not survey_was_open)

    async def _exchange(self, turn: CallerTurnFrame, from_caller: bool) -> None:
        self._log.info("%s: → Rasa: %r", self, turn.loggable_text())
        request = asyncio.ensure_future(self._client.send(self._call_id, turn.text, self._metadata.as_dict()))
        try:
            reply = await self._reply_holding_the_line(request)
        except RasaUnavailable as exc:
            self._log.warning("%s: Rasa unavailable (%s)", self, exc)
            await self._on_rasa_unavailable(turn)
            return
        self._rasa_down = False
        self._record.bot_replied(to_caller=from_caller)
        await self._play_reply(reply)
        if from_caller:
            self.create_task(self._record_intent(turn, self._last_caller_turn()), name="record_intent")

    async def _reply_holding_the_line(self, request: asyncio.Future[BotReply]) -> BotReply:
        """Rasa's reply; a slow one gets 「请稍候」 first, and is still waited for: the caller hears the real outcome
        of the turn (a transfer done, or the dialogue's own apology), never a guess while the turn goes on."""
        try:
            if self._hold_after_s > 0:
                done, _ = await asyncio.wait({request}, timeout=self._hold_after_s)
                if not done:
                    await self._speak([HOLD_TEXT])
            return await request
        finally:
            request.cancel()  # no-op when done; a cancelled call must not leave the request running

    async def _play_reply(self, reply: BotReply) -> None:
        texts: list[str] = []
        await self._set_interruptible(True)  # every reply starts interruptible
        # The survey is open while the latest reply asks its question: a reply that does not ask it again closes
        # it, even without survey_answer, so the silence ladder is never left with no rung that ends the call.
        self._survey_open = False
        for item in reply.items:
            if item.get("text"):
                texts.append(item["text"])
                await self._push_text(item["text"])
            elif isinstance(item.get("custom"), dict):
                await self._on_event(item["custom"])
        if texts:
            self._last_prompt = texts
            self._record.add_bot_texts(texts)
            await self.push_frame(BotReplyTextFrame(texts=texts))

    async def _on_event(self, event: dict[str, Any]) -> None:
        kind = event_kind(event)
        if kind == "handoff":
            await self._hand_off(event)
        elif kind == "hangup":
            self._ending = True
            self._record.mark_bot_hangup()
            await self.push_frame(HangupFrame(reason="bot"))
        elif kind == "speech_rate":
            await self.broadcast_frame(SpeechRateFrame, rate=parse_speech_rate(event))
        elif kind == "expect":
            expect = parse_expect(event)
            await self.broadcast_frame(ExpectInputFrame, input=expect.input, max_length=expect.max_length,
                                       secure=expect.secure)
        elif kind == "interruptible":
            await self._set_interruptible(parse_interruptible(event))
        elif kind in DIALOGUE_FACT_EVENTS:
            # for the call record (the KPIs read them); the survey's question also steers the silence ladder
            if not self._record.note_dialogue_fact(event):
                self._log.warning("%s: ignoring %s with a value no record holds", self, kind)
            if kind == EVENT_SURVEY_OFFERED:
                self._survey_open = True
            elif kind == EVENT_SURVEY_ANSWER:
                self._survey_open = False
        else:
            self._log.warning("%s: ignoring unknown custom event %r", self, kind)

    async def _hand_off(self, event: dict[str, Any]) -> None:
        self._ending = True
        self._survey_open = False  # 「人工」 at the survey question: the survey is given up for the person
        self._record.mark_handoff(event)
        await self.push_frame(HandoffFrame(event=dict(event)))

    # -- failures and silences ---------------------------------------------------------------------------------

    async def _on_rasa_unavailable(self, turn: CallerTurnFrame) -> None:
        RASA_UNAVAILABLE_TURNS.inc()
        if turn.text == HUMAN_AGENT and (self._rasa_down or self._survey_open):
            # The caller took the offer while the dialogue is still down, or asked for a person at the survey (the
            # survey gives way to a person, as in the dialogue): transfer without it.
            await self._speak([DIRECT_HANDOFF_TEXT])
            await self._hand_off(fallback_handoff(self._call_id))
            return
        if self._survey_open:  # the caller's business is done: no apology offering the menu, a goodbye
            await self._end_after_survey()
            return
        self._rasa_down = True
        self._record.bot_replied(to_caller=False)
        await self.broadcast_frame(ExpectInputFrame, input=None)
        await self._speak([self._apology_text])

    async def _on_no_input(self, attempt: int) -> None:
        if self._ending:
            return
        self._log.info("%s: no input #%d", self, attempt)
        if self._survey_open and attempt >= LAST_RUNG:
            # The ladder arms no timer after its last rung: the call ends here, whatever the dialogue would say.
            await self._end_after_survey()
            return
        if self._survey_open:
            # The survey is optional: the dialogue retries (elderly callers, once) or thanks and hangs up. Not a
            # failed prompt either: the KPIs' no-input rate does not count it.
            await self._send_turn(CallerTurnFrame(text=SURVEY_NO_ANSWER, source="no_input"))
            return
        self._record.no_inputs += 1  # for the KPIs' no-input rate (bot/kpis.py)
        if attempt == 1 and self._last_prompt:
            await self._speak(self._last_prompt)
        elif attempt <= 2:
            await self._send_turn(CallerTurnFrame(text=KEYPAD_MENU, source="no_input"))
        elif self._third_silence_action == "hangup":
            self._ending = True
            await self._speak([NO_INPUT_GOODBYE_TEXT])
            self._record.mark_bot_hangup(BOT_HANGUP_NO_INPUT)  # not served: the 智能服务占比 does not count it
            await self.push_frame(HangupFrame(reason="no_input"))
        else:
            await self._send_turn(CallerTurnFrame(text=HUMAN_AGENT, source="no_input"))

    async def _end_after_survey(self) -> None:
        self._survey_open = False
        self._ending = True
        self._record.bot_replied(to_caller=False)
        await self._speak([SURVEY_GOODBYE_TEXT])
        self._record.mark_bot_hangup()
        await self.push_frame(HangupFrame(reason="bot"))

    async def _on_transfer_result(self, result: TransferResultFrame) -> None:
        if result.ok:
            self._log.info("%s: transfer done (%s)", self, result.detail)
            return
        self._log.warning("%s: transfer failed (%s)", self, result.detail)
        self._ending = False
        self._record.outcome = None
        await self._send_turn(CallerTurnFrame(text=TRANSFER_FAILED, source="transfer"))

    async def _speak(self, texts: list[str]) -> None:
        await self._set_interruptible(True)
        for text in texts:
            await self._push_text(text)
        self._record.add_bot_texts(texts)
        await self.push_frame(BotReplyTextFrame(texts=list(texts)))

    async def _set_interruptible(self, value: bool) -> None:
        """The dialogue's flag for the prompts pushed after it, in order with them (see PromptInterruptibleFrame)."""
        self._interruptible = value
        await self.push_frame(PromptInterruptibleFrame(value=value))

    async def _push_text(self, text: str) -> None:
        """One prompt for the TTS; a non-interruptible one keeps its synthesis and audio through a barge-in."""
        frame = TTSSpeakFrame(text=text, append_to_context=False)
        frame.interruptible = self._interruptible
        await self.push_frame(frame)

    def _last_caller_turn(self) -> dict[str, Any] | None:
        """The record's transcript entry of the caller turn just sent (bot texts may follow it)."""
        return next((t for t in reversed(self._record.transcript) if t.get("who") == "caller"), None)

    async def _record_intent(self, turn: CallerTurnFrame, noted: dict[str, Any] | None) -> None:
        """Best effort, after the reply: what Rasa's NLU made of `turn`, from its tracker, for the call record.

        The intent name joins `record.intents`; the transcript entry `noted` gets `nlu` (see `nlu_note`) for the
        trainers' review list (bot/nlu_review.py), except on a secure turn (a PIN: nothing about it is kept)."""
        try:
            tracker = await self._client.tracker(self._call_id)
        except RasaUnavailable:
            return
        parse = parse_data_of(tracker, turn.text, secure=turn.secure)
        name = ((parse or {}).get("intent") or {}).get("name")
        if not name:
            return
        self._record.intents.append(str(name))
        note = nlu_note(parse)
        if note is not None and noted is not None and not turn.secure:
            noted["nlu"] = note


def parse_data_of(tracker: dict[str, Any] | None, text: str, *, secure: bool = False) -> dict[str, Any] | None:
    """Rasa's parse of the message `text` from a tracker dump: the newest user event with that text, else the
    latest message when it is that text. Another turn may have been sent since (the tracker is read after the
    reply), so a latest message with other text is not taken; a secure turn's text is masked in the tracker store
    (dialogue/tracker_store.py), so for it the latest message is taken as it is."""
    tracker = tracker if isinstance(tracker, dict) else {}
    for event in reversed(tracker.get("events") or []):
        if isinstance(event, dict) and event.get("event") == "user" and event.get("text") == text \
                and isinstance(event.get("parse_data"), dict):
            return event["parse_data"]
    latest = tracker.get("latest_message")
    if isinstance(latest, dict) and (secure or latest.get("text") == text):
        return latest
    return None


def nlu_note(parse: dict[str, Any] | None) -> dict[str, Any] | None:
    """`{"intent", "confidence", "fallback"}` of one parse: the intent the classifier predicted and its confidence;
    `fallback` when the FallbackClassifier replaced it by nlu_fallback (then `intent` is the classifier's best guess
    from the ranking, the one a trainer confirms or corrects). None when the parse names no intent."""
    intent = (parse or {}).get("intent") or {}
    name = intent.get("name")
    if not isinstance(name, str) or not name:
        return None
    fallback = name == NLU_FALLBACK_INTENT
    predicted, confidence = name, intent.get("confidence")
    if fallback:
        ranked = [r for r in (parse or {}).get("intent_ranking") or []
                  if isinstance(r, dict) and isinstance(r.get("name"), str) and r["name"] != NLU_FALLBACK_INTENT]
        if ranked:
            predicted, confidence = ranked[0]["name"], ranked[0].get("confidence")
    confidence = float(confidence) if isinstance(confidence, (int, float)) and math.isfinite(confidence) else None
    return {"intent": predicted[:100], "confidence": None if confidence is None else round(confidence, 4),
            "fallback": fallback}
