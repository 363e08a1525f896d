"""Call records for the web text console's calls (channel "console"), so what testers do there is on the books
(and left out of the KPIs by default, bot/kpis.py).

A console call has no hang-up of its own: the browser may simply go away. Its record is written when the dialogue
ends the call (a hangup or a handoff event), when it has been idle for IDLE_S (found on any later console request;
it ended when it was last used, not when it was found), when more than MAX_OPEN calls are open (the oldest first: a
flood of new calls cannot grow memory), and at shutdown. The record is a bot/call_records.py CallRecord like any
other: the caller number masked, secure turns `****`, long digit runs masked, the caller key a keyed hash.

Secure input: the console page says when it sends a PIN (`secure`), but a page is the client's to change. So the
server remembers what the bot's last reply asked for (`expect` with `secure`): the next input is masked when either
says so (`expects_secure`).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from bot.call_ids import DOOR_CONSOLE
from bot.call_records import CallRecord, CallRecordWriter
from bot.call_log import call_logger
from bot.caller_keys import CallerKeys
from bot.rasa_client import BotReply
from call_contract import DIALOGUE_FACT_EVENTS, parse_expect
from settings import Settings

log = logging.getLogger(__name__)

IDLE_S = 30 * 60.0
MAX_OPEN = 1000


@dataclass
class _OpenCall:
    record: CallRecord
    last_used: float
    secure_next: bool = False  # the bot's last reply asked for secure input (a PIN)


class ConsoleRecords:
    """The open console calls' records, each written once. `clock` lets tests step time."""

    def __init__(self, settings: Settings, writer: CallRecordWriter | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._writer = writer
        self._clock = clock
        self._open: OrderedDict[str, _OpenCall] = OrderedDict()
        self._caller_keys = CallerKeys(settings.gateway)

    def __len__(self) -> int:
        return len(self._open)

    def start(self, call_id: str, caller: str) -> None:
        self.sweep()
        record = CallRecord(call_id=call_id, caller_number=caller, channel=DOOR_CONSOLE,
                            caller_key=self._caller_keys.key(caller))
        self._open[call_id] = _OpenCall(record, self._clock())
        while len(self._open) > MAX_OPEN:
            oldest = next(iter(self._open))
            self.finish(oldest, "console_evicted")

    def turn(self, call_id: str, *, kind: str, text: str, secure: bool, reply: BotReply,
             intent: str | None) -> None:
        """One exchange: the caller's input (none for the call's start), the bot's reply and what it ended."""
        if kind != "call_start":
            self.sweep()
        entry = self._open.get(call_id)
        if entry is None:
            return
        record = entry.record
        entry.last_used = self._clock()
        self._open.move_to_end(call_id)
        if kind != "call_start":
            record.add_caller_turn(text, source="keypad" if kind == "dtmf" else "text",
                                   secure=secure or entry.secure_next)
            if intent:
                record.intents.append(intent)
        expects = [event for event in reply.events if event.get("event") == "expect"]
        entry.secure_next = bool(expects) and parse_expect(expects[-1]).secure
        record.add_bot_texts(reply.texts)
        record.bot_replied(to_caller=kind != "call_start")
        ended = _note_events(record, reply.events)
        if ended:
            self.finish(call_id, ended)

    def sweep(self) -> None:
        """Writes the records of calls idle for IDLE_S."""
        now = self._clock()
        for call_id, entry in list(self._open.items()):
            if now - entry.last_used >= IDLE_S:
                self.finish(call_id, "console_idle", at=entry.last_used)

    def expects_secure(self, call_id: str) -> bool:
        """Whether the bot's last reply in this call asked for secure input: the next input is masked whatever the
        page says."""
        entry = self._open.get(call_id)
        return entry is not None and entry.secure_next

    def finish(self, call_id: str, cause: str, *, at: float | None = None) -> None:
        entry = self._open.pop(call_id, None)
        if entry is None:
            return
        record = entry.record
        record.finish(cause, at=at)
        if self._writer is None:
            return
        try:
            self._writer.write(record)
        except (OSError, ValueError):  # a full disk: logged, the console goes on
            call_logger(log, call_id).exception("cannot write the console call's record")

    def close(self) -> None:
        for call_id in list(self._open):
            self.finish(call_id, "shutdown")


def _note_events(record: CallRecord, events: list[dict[str, Any]]) -> str | None:
    """The reply's events into the record, as the voice loop's Rasa bridge files them; the cause when they end
    the call."""
    ended = None
    for event in events:
        kind = event.get("event")
        if kind == "handoff":
            record.mark_handoff(event)
            ended = "handoff"
        elif kind == "hangup":
            record.mark_bot_hangup()
            ended = ended or "bot_hangup"
        elif kind in DIALOGUE_FACT_EVENTS:
            record.note_dialogue_fact(event)
    return ended
