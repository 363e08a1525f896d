"""The no-input ladder: a caller who says and keys nothing is never left in silence.

After the bot finishes speaking, the ladder waits the no-input timeout (7 s; 12 s in elderly mode). Each expiry
pushes a `NoInputFrame` with the rung number; the Rasa bridge acts on it (1st: repeat the last prompt, 2nd: the
keypad menu, 3rd: handoff or polite hang-up; while the dialogue's satisfaction survey is open, every rung is
`/survey_no_answer` to the dialogue instead). Any caller activity disarms the timer; a real caller turn resets
the ladder to its first rung.
"""

from __future__ import annotations

import asyncio

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InputDTMFFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from bot.frames import CallerTurnFrame, NoInputFrame, SpeechRateFrame

LAST_RUNG = 3


class NoInputLadder(FrameProcessor):
    """Frames in: BotStarted/StoppedSpeakingFrame (upstream), VADUserStarted/StoppedSpeakingFrame, InputDTMFFrame,
    CallerTurnFrame, SpeechRateFrame. The Rasa bridge ignores rungs that fire while the call is ending.

    Frames out: NoInputFrame(attempt=1..3) downstream, to the Rasa bridge.
    """

    def __init__(self, *, timeout_s: float = 7.0, elderly_timeout_s: float = 12.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self._timeout_s = timeout_s
        self._elderly_timeout_s = elderly_timeout_s
        self._elderly = False
        self._attempts = 0
        self._bot_speaking = False
        self._caller_speaking = False
        self._timer: asyncio.Task | None = None

    @property
    def current_timeout_s(self) -> float:
        return self._elderly_timeout_s if self._elderly else self._timeout_s

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
            await self._disarm()
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
            await self._arm()
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            self._caller_speaking = True
            await self._disarm()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._caller_speaking = False
            await self._arm()  # a noise that never became a turn must not stop the ladder
        elif isinstance(frame, InputDTMFFrame):
            await self._arm()  # restart: a key that leads nowhere (a lone '#') must not end the ladder
        elif isinstance(frame, CallerTurnFrame):
            self._attempts = 0
            await self._disarm()
        elif isinstance(frame, SpeechRateFrame):
            self._elderly = frame.elderly
        elif isinstance(frame, (EndFrame, CancelFrame)):
            await self._disarm()
        await self.push_frame(frame, direction)

    async def _arm(self) -> None:
        await self._disarm()
        if self._bot_speaking or self._caller_speaking or self._attempts >= LAST_RUNG:
            return
        self._timer = self.create_task(self._expire(), name="no_input_timer")

    async def _disarm(self) -> None:
        if self._timer is not None:
            task, self._timer = self._timer, None
            if task is not asyncio.current_task():
                await self.cancel_task(task)

    async def _expire(self) -> None:
        await asyncio.sleep(self.current_timeout_s)
        self._timer = None
        self._attempts += 1
        await self.push_frame(NoInputFrame(attempt=self._attempts))
