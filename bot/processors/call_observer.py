"""Watches one call's pipeline: per-turn latencies (Prometheus + call record) and live events for consoles.

A pipecat observer, so it measures without sitting in the frame path. Times come from the pipeline clock
(`FramePushed.timestamp`), so queueing inside the observer does not distort them.

Console events (dicts handed to `on_event`): `partial` (interim transcript), `caller` (final caller turn),
`bot` (reply texts), `metrics` (one turn's latencies), `barge_in`. Secure input is masked in all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection

from bot import metrics
from bot.call_records import CallRecord
from bot.frames import SECURE_MASK, BotReplyTextFrame, CallerTurnFrame, ExpectInputFrame
from bot.metrics import TurnMetrics

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], None]
NS_PER_MS = 1_000_000


class CallObserver(BaseObserver):
    """Frames watched: VADUserStoppedSpeakingFrame, InterimTranscriptionFrame, CallerTurnFrame, TTSSpeakFrame,
    TTSAudioRawFrame, BotStartedSpeakingFrame, BotStoppedSpeakingFrame, BotReplyTextFrame, InterruptionFrame,
    ExpectInputFrame. The call record counts barge-ins here (prompts cut short, `_count_barge_in`); its no-input
    timeouts are counted by the Rasa bridge, which alone knows a silence at the optional survey is none."""

    def __init__(self, *, record: CallRecord, on_event: EventSink | None = None, **kwargs) -> None:
        super().__init__(observe_every_push=False, **kwargs)
        self._record = record
        self._on_event = on_event
        self._secure = False
        self._greeting_pending = True
        self._call_started_ns: int | None = None
        self._speech_end_ns: int | None = None
        self._turn: TurnMetrics | None = None
        self._turn_sent_ns: int | None = None
        self._turn_speech_end_ns: int | None = None
        self._tts_requested_ns: int | None = None
        self._bot_speaking = False
        self._stretch_interrupted = False

    async def on_push_frame(self, data: FramePushed) -> None:
        frame, ts = data.frame, data.timestamp
        if self._call_started_ns is None:
            self._call_started_ns = ts
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speech_end_ns = ts - int(frame.stop_secs * 1e9)
        elif isinstance(frame, InterimTranscriptionFrame):
            self._emit({"type": "partial", "text": SECURE_MASK if self._secure else frame.text})
        elif isinstance(frame, ExpectInputFrame):
            self._secure = frame.active and frame.secure
        elif isinstance(frame, CallerTurnFrame):
            self._start_turn(frame, ts)
        elif isinstance(frame, TTSSpeakFrame):
            self._on_tts_request(ts)
        elif isinstance(frame, TTSAudioRawFrame):
            self._on_tts_audio(ts)
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._on_bot_audio(ts)
        elif isinstance(frame, BotReplyTextFrame):
            self._emit({"type": "bot", "texts": frame.texts})
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        elif isinstance(frame, InterruptionFrame) and data.direction == FrameDirection.DOWNSTREAM:
            metrics.BARGE_INS.inc()
            self._count_barge_in()
            self._emit({"type": "barge_in"})

    def _start_turn(self, frame: CallerTurnFrame, ts: int) -> None:
        self._turn = TurnMetrics()
        self._turn_sent_ns = ts
        self._tts_requested_ns = None
        self._turn_speech_end_ns = None
        if frame.source == "speech":
            self._turn_speech_end_ns = self._speech_end_ns
            if frame.transcribed_at is not None and frame.speech_ended_at is not None:
                self._turn.stt_ms = max(0.0, (frame.transcribed_at - frame.speech_ended_at) * 1000)
        if frame.source in ("speech", "keypad"):
            self._emit({"type": "caller", "source": frame.source, "text": frame.loggable_text()})

    def _on_tts_request(self, ts: int) -> None:
        if self._turn is not None and self._tts_requested_ns is None and self._turn_sent_ns is not None:
            self._turn.rasa_ms = (ts - self._turn_sent_ns) / NS_PER_MS
        if self._tts_requested_ns is None:
            self._tts_requested_ns = ts

    def _on_tts_audio(self, ts: int) -> None:
        if self._turn is not None and self._tts_requested_ns is not None and self._turn.tts_first_audio_ms is None:
            self._turn.tts_first_audio_ms = (ts - self._tts_requested_ns) / NS_PER_MS

    def _count_barge_in(self) -> None:
        """The record counts prompts the caller cut short: an interruption while the bot speaks, once per stretch of
        bot speech (keys typed ahead through one prompt are one barge-in, not one per key)."""
        if self._bot_speaking and not self._stretch_interrupted:
            self._stretch_interrupted = True
            self._record.barge_ins += 1

    def _on_bot_audio(self, ts: int) -> None:
        self._bot_speaking, self._stretch_interrupted = True, False
        if self._greeting_pending and self._call_started_ns is not None:
            self._greeting_pending = False
            greeting_ms = (ts - self._call_started_ns) / NS_PER_MS
            metrics.GREETING_FIRST_AUDIO_SECONDS.observe(greeting_ms / 1000)
            self._emit({"type": "metrics", "greeting_first_audio_ms": round(greeting_ms, 1)})
            return
        if self._turn is None:
            return
        if self._turn_speech_end_ns is not None:
            self._turn.voice_to_voice_ms = (ts - self._turn_speech_end_ns) / NS_PER_MS
        self._finish_turn()

    def _finish_turn(self) -> None:
        turn, self._turn = self._turn, None
        if turn is None:
            return
        metrics.observe_turn(turn)
        self._record.turn_metrics.append(turn.as_dict())
        self._emit({"type": "metrics", **turn.as_dict()})

    def _emit(self, event: dict[str, Any]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # a console that went away must not disturb the call
            log.exception("call event sink failed")
