"""Turn taking for a phone caller: end of turn, barge-in and backchannels.

`TurnTaker` sits after the recognizer. It gathers the caller's transcripts into one `CallerTurnFrame` per turn,
decides when the turn is over (Silero VAD pause + Smart Turn, with a silence fallback that is longer in elderly
mode), and decides when the caller's speech interrupts the bot:
- the caller says something while the bot speaks → interruption (InterruptionFrame both ways: the TTS stops, the
  output transport flushes and telephony's `on_clear` drops what it had queued);
- backchannels while the bot speaks (嗯, 对, 好的, 哦 …) are ignored: they neither interrupt nor become a turn;
- while a prompt is not interruptible (the dialogue's `interruptible: false`), caller speech is ignored.
The transcript is needed to tell a backchannel from a barge-in, so barge-in fires on the first interim
transcript that is not a backchannel rather than on raw voice activity.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

from pipecat.audio.turn.base_turn_analyzer import BaseTurnAnalyzer, EndOfTurnState
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor, FrameProcessorSetup

from bot.frames import AsrDecodeNote, CallerTurnFrame, ExpectInputFrame, PromptInterruptibleFrame, SpeechRateFrame

log = logging.getLogger(__name__)

BACKCHANNELS = frozenset(
    {"嗯", "嗯嗯", "恩", "对", "对对", "对对对", "好", "好的", "好好", "哦", "噢", "喔", "啊", "是", "是的", "行",
     "呃", "唉", "诶", "欸", "ok", "okay", "嗯哼", "对的", "明白", "知道了", "好的好的"}
)
_PUNCTUATION = re.compile(r"[\s，。！？、,.!?~…]+")


def is_backchannel(text: str) -> bool:
    """True for short listener noises (嗯, 对, 好的 …) that acknowledge the bot without taking the turn."""
    compact = _PUNCTUATION.sub("", text.lower())
    if not compact:
        return True
    # Vosk spaces Chinese characters apart; a run of backchannels ("嗯 好 的") is still a backchannel.
    words = [w for w in _PUNCTUATION.split(text.lower()) if w]
    return compact in BACKCHANNELS or all(w in BACKCHANNELS for w in words) or _all_backchannel_chars(compact)


def _all_backchannel_chars(compact: str) -> bool:
    return len(compact) <= 3 and all(ch in "嗯恩对好哦噢喔啊是行呃唉诶欸的" for ch in compact)


class TurnTaker(FrameProcessor):
    """Frames in: InputAudioRawFrame, VADUserStarted/StoppedSpeakingFrame, Interim/TranscriptionFrame,
    BotStarted/StoppedSpeakingFrame (upstream), SpeechRateFrame, ExpectInputFrame, PromptInterruptibleFrame.

    Frames out: CallerTurnFrame (one per caller turn), InterruptionFrame (barge-in), the VAD frames (for the
    no-input ladder). Audio and transcripts are consumed here.
    """

    def __init__(
        self,
        *,
        end_of_turn_s: float = 0.3,
        end_of_turn_elderly_s: float = 1.2,
        transcript_wait_s: float = 1.5,
        turn_analyzer: BaseTurnAnalyzer | None = None,
        **kwargs,
    ) -> None:
        """
        Args:
            end_of_turn_s: silence after the VAD pause before the turn ends when Smart Turn says the caller is not
                done (or there is no Smart Turn).
            end_of_turn_elderly_s: the same in elderly mode.
            transcript_wait_s: how long to wait for the recognizer's final transcript after the turn ended.
            turn_analyzer: pipecat's Smart Turn (LocalSmartTurnAnalyzerV3), one per call; None = silence only.
        """
        super().__init__(**kwargs)
        self._end_of_turn_s = end_of_turn_s
        self._end_of_turn_elderly_s = end_of_turn_elderly_s
        self._transcript_wait_s = transcript_wait_s
        self._turn_analyzer = turn_analyzer
        self._elderly = False
        self._secure = False
        self._bot_speaking = False
        self._interruptible = True
        self._caller_speaking = False
        self._segments: list[str] = []
        self._tightest = AsrDecodeNote()
        self._barged_in = False
        self._started_over_bot = False
        self._speech_ended_at: float | None = None
        self._transcribed_at: float | None = None
        self._transcript_arrived = asyncio.Event()
        self._end_task: asyncio.Task | None = None

    async def setup(self, setup: FrameProcessorSetup) -> None:
        await super().setup(setup)
        if self._turn_analyzer is not None:
            self._turn_analyzer.set_sample_rate(setup.audio_in_sample_rate)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self._feed_turn_analyzer(frame)
            return
        if isinstance(frame, (EndFrame, CancelFrame)):
            await self._cancel_end_task()
        if isinstance(frame, VADUserStartedSpeakingFrame):
            await self._on_speech_started()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._on_speech_stopped(frame)
        elif isinstance(frame, InterimTranscriptionFrame):
            await self._on_transcript(frame.text, final=False)
            return
        elif isinstance(frame, TranscriptionFrame):
            await self._on_transcript(frame.text, final=True, note=frame.result)
            return
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        elif isinstance(frame, SpeechRateFrame):
            self._elderly = frame.elderly
        elif isinstance(frame, ExpectInputFrame):
            self._secure = frame.active and frame.secure
        elif isinstance(frame, PromptInterruptibleFrame):
            self._interruptible = frame.value
        await self.push_frame(frame, direction)

    # -- speech activity ---------------------------------------------------------------------------------------

    def _feed_turn_analyzer(self, frame: InputAudioRawFrame) -> None:
        if self._turn_analyzer is not None:
            self._turn_analyzer.append_audio(frame.audio, self._caller_speaking)

    async def _on_speech_started(self) -> None:
        self._caller_speaking = True
        if self._bot_speaking and not self._segments:
            self._started_over_bot = True
        # The caller went on talking: the pending end of turn was premature.
        await self._cancel_end_task()

    def _on_speech_stopped(self, frame: VADUserStoppedSpeakingFrame) -> None:
        self._caller_speaking = False
        self._speech_ended_at = frame.timestamp - frame.stop_secs
        if self._end_task is None:
            self._end_task = self.create_task(self._end_turn_when_done(), name="end_of_turn")

    async def _cancel_end_task(self) -> None:
        if self._end_task is not None:
            task, self._end_task = self._end_task, None
            await self.cancel_task(task)

    # -- transcripts and barge-in ------------------------------------------------------------------------------

    async def _on_transcript(self, text: str, *, final: bool, note: object = None) -> None:
        text = text.strip()
        if not text:
            return
        over_bot = self._bot_speaking or (self._started_over_bot and final)
        if over_bot and not self._barged_in:
            if is_backchannel(text) or not self._interruptible:
                if final:
                    why = "backchannel" if self._interruptible else "prompt not interruptible"
                    log.debug("%s: ignoring caller speech over the bot (%s)", self, why)
                return
            if self._bot_speaking:
                await self._barge_in()
        if final:
            self._segments.append(text)
            self._transcribed_at = time.time()
            if isinstance(note, AsrDecodeNote) and note.level > self._tightest.level:
                self._tightest = note
            self._transcript_arrived.set()

    async def _barge_in(self) -> None:
        log.debug("%s: barge-in", self)
        self._barged_in = True
        self._bot_speaking = False
        await self.broadcast_interruption()

    # -- end of turn -------------------------------------------------------------------------------------------

    async def _end_turn_when_done(self) -> None:
        # The silence fallback counts from the VAD pause, so Smart Turn's own inference time is not added to it.
        deadline = time.monotonic() + (self._end_of_turn_elderly_s if self._elderly else self._end_of_turn_s)
        if not await self._turn_is_complete():
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        if not self._segments:
            # The recognizer finalizes on the VAD pause; give it a moment to deliver.
            try:
                await asyncio.wait_for(self._transcript_arrived.wait(), timeout=self._transcript_wait_s)
            except asyncio.TimeoutError:
                pass
        self._end_task = None
        await self._emit_turn()

    async def _turn_is_complete(self) -> bool:
        if self._turn_analyzer is None:
            return False
        try:
            state, _ = await self._turn_analyzer.analyze_end_of_turn()
        except Exception as exc:  # a broken model must not cost the caller their turn
            log.warning("%s: Smart Turn failed (%r), falling back to silence timing", self, exc)
            return False
        return state == EndOfTurnState.COMPLETE

    async def _emit_turn(self) -> None:
        text = " ".join(self._segments).strip()
        speech_ended_at, transcribed_at = self._speech_ended_at, self._transcribed_at
        tightest = self._tightest
        self._reset_turn()
        if not text:
            return
        await self.push_frame(
            CallerTurnFrame(
                text=text,
                source="speech",
                secure=self._secure,
                speech_ended_at=speech_ended_at,
                transcribed_at=transcribed_at,
                asr_limits=tightest.limits if tightest.tightened else None,
            )
        )

    def _reset_turn(self) -> None:
        self._segments = []
        self._tightest = AsrDecodeNote()  # the tightest search limits any of the turn's segments was decoded with
        self._barged_in = False
        self._started_over_bot = False
        self._transcript_arrived = asyncio.Event()
        if self._turn_analyzer is not None:
            self._turn_analyzer.clear()
