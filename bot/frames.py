"""Custom pipecat frames of the voice loop.

They carry the call contract's custom events (docs/ARCHITECTURE.md) through the per-call pipeline:
the Rasa bridge turns Rasa's `custom` events into these frames, the processors and services around it react.

Direction conventions:
- `HandoffFrame`, `HangupFrame` travel downstream in order after the texts of the same reply, so the output
  transport acts on them only once the audio before them has been played.
- `SpeechRateFrame`, `ExpectInputFrame`, `DialogueTurnFrame` are broadcast (both directions): the recognizer, turn taker, DTMF
  gatherer and no-input ladder sit upstream of the bridge, the TTS downstream.
- `PromptInterruptibleFrame` travels downstream in order with the texts and comes back upstream from the output
  transport when it is reached, so the turn taker and DTMF gatherer know about the prompt that is playing now,
  not the one Rasa sent last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipecat.frames.frames import ControlFrame, DataFrame, SystemFrame

from call_contract import SECURE_MASK, mask_secure

__all__ = ["SECURE_MASK"]  # call_observer and call_records read it from here


@dataclass(frozen=True)
class AsrDecodeNote:
    """What a final transcript was decoded with; rides in `TranscriptionFrame.result` (no words: secure turns).

    Parameters:
        level: the level of search limits (0: the model's own; higher: tightened under load).
        limits: the limits in words, e.g. "max-active 1000, beam 8.0", for call records.
    """

    level: int = 0
    limits: str = ""

    @property
    def tightened(self) -> bool:
        return self.level > 0


@dataclass
class CallerTurnFrame(DataFrame):
    """One complete caller turn, ready for Rasa: a final transcript or a keypad message.

    Parameters:
        text: what Rasa receives (the transcript, or `/dtmf{"digits":...}`, or `/human_agent`).
        source: "speech", "keypad" or "no_input".
        secure: the turn answers an `expect secure=true`; never log it, mask it in records.
        speech_ended_at: time.time() when the caller stopped speaking (speech turns), for latency metrics.
        transcribed_at: time.time() when the final transcript was ready (speech turns).
        asr_limits: the search limits, when some of the turn's speech was decoded under tightened ones (load).
    """

    text: str
    source: str = "speech"
    secure: bool = False
    speech_ended_at: float | None = None
    transcribed_at: float | None = None
    asr_limits: str | None = None

    def loggable_text(self) -> str:
        """The text as it may appear in logs and records: masked when secure."""
        return mask_secure(self.text, self.secure)

    def __str__(self) -> str:
        return f"{self.name}(source={self.source}, text={self.loggable_text()!r})"


@dataclass
class NoInputFrame(DataFrame):
    """The caller said and keyed nothing for the no-input timeout after the bot finished speaking.

    Parameters:
        attempt: 1, 2 or 3 — which rung of the no-input ladder this is.
    """

    attempt: int


@dataclass
class HandoffFrame(ControlFrame):
    """The contract's `handoff` event: transfer the call once the audio before this frame has been played.

    Parameters:
        event: the handoff event dict exactly as Rasa sent it (queue, priority, reason, context).
    """

    event: dict[str, Any] = field(default_factory=dict)
    interruptible: bool = field(default=False, init=False)


@dataclass
class HangupFrame(ControlFrame):
    """The contract's `hangup` event: hang up once the audio before this frame has been played."""

    reason: str = "bot"
    interruptible: bool = field(default=False, init=False)


@dataclass
class SpeechRateFrame(SystemFrame):
    """The contract's `speech_rate` event: TTS rate from now on; below 1.0 also means elderly timings.

    Parameters:
        rate: 1.0 normal, below 1.0 slower (elderly 0.8).
    """

    rate: float = 1.0

    @property
    def elderly(self) -> bool:
        return self.rate < 1.0


@dataclass
class ExpectInputFrame(SystemFrame):
    """The contract's `expect` event, or its end (`input=None`) once the expected turn has been sent.

    Parameters:
        input: "digits" while digits are expected, None when the expectation is over.
        max_length: how many digits end keypad gathering without `#`.
        secure: never log the next input, mask it in transcripts and records, prefer the keypad.
    """

    input: str | None = "digits"
    max_length: int = 0
    secure: bool = False

    @property
    def active(self) -> bool:
        return self.input is not None


@dataclass
class DialogueTurnFrame(SystemFrame):
    """A caller turn is with the dialogue (`pending=True`), or its reply is in (`pending=False`).

    Broadcast by the Rasa bridge around every request; `pending=False` comes after the reply's ExpectInputFrame, so
    the keypad gatherer knows what the next prompt expects before it applies keys typed ahead.

    Parameters:
        pending: the turn is with the dialogue (keys are held) or its reply is in (held keys answer its prompt).
        drop_typeahead: with `pending=False`: the reply opened the satisfaction survey, so keys held were typed
            before its question and are dropped, never taken as a rating.
    """

    pending: bool = False
    drop_typeahead: bool = False


@dataclass
class PromptInterruptibleFrame(ControlFrame):
    """The contract's `interruptible` event: may the caller barge into the prompts that follow.

    Every reply starts with one (True). Downstream it is queued behind the audio before it; the output transport
    pushes it back upstream once that audio has played. Never dropped by an interruption: losing a `True` would
    leave the caller unable to barge in for the rest of the call.
    """

    value: bool = True
    interruptible: bool = field(default=False, init=False)


@dataclass
class TransferResultFrame(SystemFrame):
    """The outcome of a transfer started by a HandoffFrame, as telephony reports it.

    Parameters:
        ok: the transfer succeeded (the bot leaves the call) or failed (the bot tells Rasa `/transfer_failed`).
        detail: telephony's short explanation, for logs and the call record.
    """

    ok: bool
    detail: str = ""


@dataclass
class BotReplyTextFrame(SystemFrame):
    """The texts of one Rasa reply, for consoles and records (the audio goes through the TTS)."""

    texts: list[str] = field(default_factory=list)
