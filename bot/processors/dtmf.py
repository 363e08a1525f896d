"""Keypad input: gathers DTMF keys into the contract's `/dtmf{"digits":...}` message.

Gathering ends on `#`, on the expected maximum length, or after the inter-digit timeout. When no digits are
expected, the human key (0 by default) asks for an agent (`/human_agent`), `*` asks for the keypad menu and any
other single key is a menu choice, sent at once. Inside an entry, `*` cancels it: the keys gathered so far are
dropped unsent and the dialogue gets the menu key, so it leaves the task and reads the menu. A key pressed during an interruptible prompt stops the prompt.

Type-ahead, as bank IVRs do it: keys pressed while a turn is with the dialogue are held, never sent, logged or
recorded, until its reply is in; then they answer the prompt that reply brings. A caller who keys card and PIN
in one go (`1234135790#`) is verified: 4 digits answer the card prompt, the rest wait for the PIN prompt and are
sent as secure input. Keys held after a digits entry whose reply expects no digits are dropped, never used as
menu keys: they may be a PIN. Keys held when the reply opens the satisfaction survey are dropped too: typed before
its question, they are no rating. Inside a digits entry every digit, 0 included, is a digit.
"""

from __future__ import annotations

import asyncio
import logging

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InputDTMFFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from bot.frames import CallerTurnFrame, DialogueTurnFrame, ExpectInputFrame, PromptInterruptibleFrame
from call_contract import END_KEY, HUMAN_AGENT, MENU_KEY, dtmf_message
from call_contract import human_key as contract_human_key

log = logging.getLogger(__name__)
# Digits expected without a max_length (the dialogue did not say): a card or account number fits.
DEFAULT_MAX_DIGITS = 19
# Keys held while the dialogue answers: a card number and a PIN fit; a stuck key or a flood does not grow memory.
MAX_TYPEAHEAD_KEYS = 32


class DTMFGatherer(FrameProcessor):
    """Frames in: InputDTMFFrame, ExpectInputFrame, DialogueTurnFrame, PromptInterruptibleFrame,
    BotStarted/StoppedSpeakingFrame.

    Frames out: CallerTurnFrame(source="keypad"), InterruptionFrame (a key during an interruptible prompt).
    InputDTMFFrame is forwarded so the no-input ladder sees the caller is active.
    """

    def __init__(self, *, interdigit_timeout_s: float = 3.0, human_key: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._interdigit_timeout_s = interdigit_timeout_s
        self._human_key = human_key or contract_human_key()
        self._expect: ExpectInputFrame | None = None
        self._digits = ""
        self._timeout_task: asyncio.Task | None = None
        self._bot_speaking = False
        self._interruptible = True
        self._awaiting_reply = False  # a turn is with the dialogue: keys are held (type-ahead)
        self._typeahead: list[str] = []
        self._held_after_entry = False  # the pending turn was a digits entry: held keys may be a PIN
        self._end_key_optional = False  # the last entry ended on max length: a `#` right after it closes it

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputDTMFFrame):
            await self._on_key(frame.button.value)
        elif isinstance(frame, ExpectInputFrame):
            self._expect = frame if frame.active else None
        elif isinstance(frame, DialogueTurnFrame):
            await self._on_dialogue_turn(frame.pending, drop_typeahead=frame.drop_typeahead)
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
        if self._interruptible and (self._bot_speaking or (not self._digits and not self._typeahead)):
            self._bot_speaking = False
            await self.broadcast_interruption()
        if self._awaiting_reply and not self._digits:
            self._hold(key)
            return
        await self._apply_key(key)

    async def _apply_key(self, key: str) -> None:
        end_key_optional, self._end_key_optional = self._end_key_optional, False
        if key == END_KEY and end_key_optional and not self._digits:
            return  # the `#` of an entry already sent on max length
        if key == MENU_KEY and (self._expect is not None or self._digits):
            await self._cancel_entry()
            return
        if self._expect is None and not self._digits:
            await self._on_menu_key(key)
            return
        if key == END_KEY:
            await self._flush()
            return
        self._digits += key
        if len(self._digits) >= self._max_length():
            await self._flush()
            self._end_key_optional = True
        else:
            await self._restart_timeout()

    def _hold(self, key: str) -> None:
        """A key pressed while the dialogue answers: kept for the next prompt, never logged by value."""
        if len(self._typeahead) >= MAX_TYPEAHEAD_KEYS:
            return
        if not self._typeahead:
            log.debug("%s: keys typed ahead are held until the reply is in", self)
        self._typeahead.append(key)

    async def _on_dialogue_turn(self, pending: bool, *, drop_typeahead: bool = False) -> None:
        if pending:
            self._awaiting_reply = True
            return
        self._awaiting_reply = False
        held, self._typeahead = self._typeahead, []
        after_entry, self._held_after_entry = self._held_after_entry, False
        if not held:
            return
        if drop_typeahead:
            # The reply asks the satisfaction survey's question: keys typed before it answered something else.
            log.debug("%s: %d keys typed ahead dropped: they came before the survey question", self, len(held))
            return
        if after_entry and self._expect is None:
            # The prompt wants no digits (or the dialogue moved on): these keys may be a PIN, never menu keys.
            log.debug("%s: %d keys typed ahead dropped: the reply expects no digits", self, len(held))
            return
        if self._interruptible:
            await self.broadcast_interruption()  # the caller has answered the prompt this reply brings
        for index, key in enumerate(held):
            await self._apply_key(key)
            if self._awaiting_reply:  # that key completed a turn: the rest wait for the next reply
                self._typeahead = held[index + 1:]
                return

    async def _on_menu_key(self, key: str) -> None:
        if key == END_KEY:
            return
        text = HUMAN_AGENT if key == self._human_key else dtmf_message(key)
        self._awaiting_reply = True  # until the bridge says the reply is in
        self._held_after_entry = False
        await self.push_frame(CallerTurnFrame(text=text, source="keypad"))

    async def _cancel_entry(self) -> None:
        """`*` inside an entry: the digits so far are dropped, never sent or logged (they may be half a PIN)."""
        await self._cancel_timeout()
        self._digits, self._expect = "", None
        self._awaiting_reply = True  # until the bridge says the reply (the menu) is in
        self._held_after_entry = False  # keys typed after `*` answer the menu
        log.debug("%s: entry cancelled with %s", self, MENU_KEY)
        await self.push_frame(CallerTurnFrame(text=dtmf_message(MENU_KEY), source="keypad"))

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
        # The expectation is used up by this entry; until the reply is in, further keys are held, so a PIN keyed
        # right after a card number can never be gathered under the card prompt's (non-secure) expectation.
        self._expect = None
        self._awaiting_reply = True
        self._held_after_entry = True
        log.debug("%s: keypad input gathered (%d keys)", self, len(digits))
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
