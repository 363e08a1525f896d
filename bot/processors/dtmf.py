"""Keypad input: gathers DTMF keys into the contract's `/dtmf{"digits":...}` message.

Gathering ends on `#`, on the expected maximum length, or after the inter-digit timeout. When no digits are
expected, the human key (0 by default) asks for an agent (`/human_agent`), `*` asks for the keypad menu and any
other single key is a menu choice, sent at once. A key pressed during an interruptible prompt stops the prompt.
"""

from __future__ import annotations

import asyncio

from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InputDTMFFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from bot.frames import CallerTurnFrame, ExpectInputFrame, PromptInterruptibleFrame
from bot.rasa_client import dtmf_message

HUMAN_AGENT_MESSAGE = "/human_agent"
END_KEY = "#"
MENU_KEY = "*"
# Digits expected without a max_length (the dialogue did not say): a card or account number fits.
DEFAULT_MAX_DIGITS = 19


class DTMFGatherer(FrameProcessor):
    """Frames in: InputDTMFFrame, ExpectInputFrame, PromptInterruptibleFrame, BotStarted/StoppedSpeakingFrame.

    Frames out: CallerTurnFrame(source="keypad"), InterruptionFrame (a key during an interruptible prompt).
    InputDTMFFrame is forwarded so the no-input ladder sees the caller is active.
    """

    def __init__(self, *, interdigit_timeout_s: float = 3.0, human_key: str = "0", **kwargs) -> None:
        super().__init__(**kwargs)
        self._interdigit_timeout_s = interdigit_timeout_s
        self._human_key = human_key
        self._expect: ExpectInputFrame | None = None
        self._digits = ""
        self._timeout_task: asyncio.Task | None = None
        self._bot_speaking = False
        self._interruptible = True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputDTMFFrame):
            await self._on_key(frame.button.value)
        elif isinstance(frame, ExpectInputFrame):
            self._expect = frame if frame.active else None
        elif isinstance(frame, PromptInterruptibleFrame):
            self._interruptible = frame.value
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        elif isinstance(frame, (EndFrame, CancelFrame)):
            await self._cancel_timeout()
        await self.push_frame(frame, direction)

    async def _on_key(self, key: str) -> None:
        # The first key of an entry also stops a prompt that is queued but not yet playing: the caller has
        # answered already (a key pressed as a reply starts would otherwise wait behind all of it).
        if self._interruptible and (self._bot_speaking or not self._digits):
            self._bot_speaking = False
            await self.broadcast_interruption()
        if self._expect is None and not self._digits:
            await self._on_menu_key(key)
            return
        if key == END_KEY:
            await self._flush()
            return
        self._digits += key
        if len(self._digits) >= self._max_length():
            await self._flush()
        else:
            await self._restart_timeout()

    async def _on_menu_key(self, key: str) -> None:
        if key == END_KEY:
            return
        text = HUMAN_AGENT_MESSAGE if key == self._human_key else dtmf_message(key)
        await self.push_frame(CallerTurnFrame(text=text, source="keypad"))

    def _max_length(self) -> int:
        if self._expect is not None and self._expect.max_length > 0:
            return self._expect.max_length
        return DEFAULT_MAX_DIGITS

    async def _flush(self) -> None:
        await self._cancel_timeout()
        digits, self._digits = self._digits, ""
        if not digits:
            return
        secure = self._expect is not None and self._expect.secure
        # Never the digits themselves: a PIN keyed before its `expect secure` arrives is not marked secure.
        logger.debug(f"{self}: keypad input gathered ({len(digits)} keys)")
        await self.push_frame(CallerTurnFrame(text=dtmf_message(digits), source="keypad", secure=secure))

    async def _restart_timeout(self) -> None:
        await self._cancel_timeout()
        self._timeout_task = self.create_task(self._timeout_handler(), name="interdigit_timeout")

    async def _timeout_handler(self) -> None:
        await asyncio.sleep(self._interdigit_timeout_s)
        self._timeout_task = None
        await self._flush()

    async def _cancel_timeout(self) -> None:
        if self._timeout_task is not None:
            task, self._timeout_task = self._timeout_task, None
            if task is not asyncio.current_task():
                await self.cancel_task(task)
