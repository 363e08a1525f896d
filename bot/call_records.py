"""Call records: one JSON line per call under settings.gateway.call_records_dir.

A record holds the masked caller number, the transcript with secure input masked, the intents Rasa recognised,
the per-turn latencies and the outcome:
- `served_by_bot`: the bot hung up after serving, or the caller hung up after the bot had answered them;
- `handoff` (+ `reason`, `queue`): the bot transferred the call to an agent;
- `abandoned`: the caller hung up before the bot had answered anything, or while waiting for an answer.
Each caller turn but a secure one gets `nlu` once Rasa has answered it: `{"intent", "confidence", "fallback"}`
(bot/processors/rasa_bridge.py `nlu_note`), which the trainers' review list reads (bot/nlu_review.py).
PINs and card numbers never reach a record: secure turns are stored as `****`, every run of 6 or more digits in a
caller's turn (a card or account number said aloud or keyed, a PIN said outside a secure prompt; separators such as
spaces, dashes, commas, 、 and 。 between the digits, full-width and spoken Chinese digits included) is stored as
`****` by bot/masking.py mask_long_digits, the screen-pop's rule too, and digits in any caller number are masked
except the first three and last four. Shorter numbers (an amount, the last four digits of a card) are kept.

Records go where `bot.record_sinks.record_sink` says: JSON Lines files by default, PostgreSQL when
CALL_RECORDS_DB_URL is set.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from call_contract import (
    EVENT_ELDERLY,
    EVENT_SURVEY_ANSWER,
    EVENT_SURVEY_OFFERED,
    EVENT_TASK_COMPLETED,
    SECURE_MASK,
    event_kind,
    parse_elderly,
    parse_survey_score,
    parse_task_completed,
)
from bot.masking import mask_caller_number, mask_long_digits
from bot.record_sinks import KIND_CALLS, SinkWriter

OUTCOME_SERVED = "served_by_bot"
OUTCOME_HANDOFF = "handoff"
OUTCOME_ABANDONED = "abandoned"
OUTCOMES = (OUTCOME_SERVED, OUTCOME_HANDOFF, OUTCOME_ABANDONED)
BOT_HANGUP_GOODBYE = "goodbye"  # the dialogue's `hangup` event (after its farewell)
BOT_HANGUP_NO_INPUT = "no_input"  # the no-input ladder's last step


@dataclass
class CallRecord:
    """Everything the voice loop remembers about one call; secure input is masked before it gets here, and
    `add_caller_turn` masks long digit runs as it files a turn."""

    call_id: str
    caller_number: str
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    asr_available: bool = True
    transcript: list[dict[str, Any]] = field(default_factory=list)
    intents: list[str] = field(default_factory=list)
    turn_metrics: list[dict[str, Any]] = field(default_factory=list)
    tightened_turns: int = 0  # caller turns recognised under tightened search limits (load; bot/services/vosk/load.py)
    outcome: str | None = None
    handoff_reason: str | None = None
    handoff_queue: str | None = None
    time_to_agent_s: float | None = None  # telephony's: our answer to the agent answering (SIP: the NOTIFY 200)
    end_cause: str | None = None
    # For the KPIs (bot/kpis.py, docs/KPIS.md): the door the call came by (bot/call_ids.py; "console" for the text
    # console); the caller's keyed hash (bot/caller_keys.py: repeat calls match, the number is not stored; "" for
    # none); barge-ins (the caller's speech or a key cutting a prompt short) and no-input timeouts.
    channel: str = ""
    caller_key: str = ""
    barge_ins: int = 0
    no_inputs: int = 0
    # Dialogue facts for the KPIs (call_contract.py's events): the business tasks completed (`task_completed`,
    # each once, in order), whether the bank knows the caller as elderly (光银岁月), and the satisfaction survey:
    # asked, and the caller's 1-3 rating (1 满意, 2 一般, 3 不满意; None when not asked or not answered).
    completed_tasks: list[str] = field(default_factory=list)
    elderly: bool = False
    survey_offered: bool = False
    survey_score: int | None = None
    # Why the bot hung up, when it did: "goodbye" (the dialogue's own farewell, the call's business done) or
    # "no_input" (the caller stayed silent through the no-input ladder). None: the caller or the line ended the call.
    # The 智能服务占比 counts the first, never the second (bot/kpis.py).
    bot_hangup: str | None = None
    bot_answered: bool = False
    awaiting_bot: bool = False

    def add_caller_turn(self, text: str, *, source: str, secure: bool, asr_limits: str | None = None) -> None:
        """`asr_limits`: the tightened search limits some of the turn was decoded with under load, else None.
        A secure turn is stored as `****`; any other has its runs of 6+ digits masked (card numbers, a PIN said)."""
        turn = {"t": round(time.time() - self.started_at, 3), "who": "caller", "source": source,
                "text": SECURE_MASK if secure else mask_long_digits(text)}
        if asr_limits:
            turn["asr_limits"] = asr_limits
            self.tightened_turns += 1
        self.transcript.append(turn)
        self.awaiting_bot = True

    def add_bot_texts(self, texts: list[str]) -> None:
        if texts:
            self.transcript.append({"t": round(time.time() - self.started_at, 3), "who": "bot", "text": " ".join(texts)})

    def bot_replied(self, *, to_caller: bool) -> None:
        self.awaiting_bot = False
        if to_caller:
            self.bot_answered = True

    def mark_handoff(self, event: dict[str, Any]) -> None:
        self.outcome = OUTCOME_HANDOFF
        self.handoff_reason = str(event.get("reason") or "unknown")
        self.handoff_queue = str(event.get("queue") or "general")

    def agent_answered(self, time_to_agent_s: float | None) -> None:
        """The transfer reached an agent (bot/call_session.py CallSession.transfer_finished)."""
        if time_to_agent_s is not None:
            self.time_to_agent_s = round(time_to_agent_s, 3)

    def note_dialogue_fact(self, event: dict[str, Any]) -> bool:
        """One of the dialogue's facts (call_contract.DIALOGUE_FACT_EVENTS) into the record, whoever carried the
        reply (the voice loop's Rasa bridge, the web console). False when the event is no fact or names a task the
        KPIs do not know: the record is left as it was."""
        kind = event_kind(event)
        if kind == EVENT_TASK_COMPLETED:
            task = parse_task_completed(event)
            if task is None:
                return False
            if task not in self.completed_tasks:  # each task once, in the order first completed
                self.completed_tasks.append(task)
        elif kind == EVENT_ELDERLY:
            self.elderly = self.elderly or parse_elderly(event)
        elif kind == EVENT_SURVEY_OFFERED:
            self.survey_offered = True
        elif kind == EVENT_SURVEY_ANSWER:
            self.survey_score = parse_survey_score(event)
        else:
            return False
        return True

    def mark_bot_hangup(self, why: str = BOT_HANGUP_GOODBYE) -> None:
        if self.outcome is None:
            self.outcome = OUTCOME_SERVED
            self.bot_hangup = why

    def finish(self, cause: str, *, at: float | None = None) -> None:
        """Closes the record (at `at`, default now: a console call found idle ended when it was last used); an
        outcome not yet decided is worked out from how far the call got."""
        self.ended_at = time.time() if at is None else at
        self.end_cause = cause
        if self.outcome is None:
            served = self.bot_answered and not self.awaiting_bot
            self.outcome = OUTCOME_SERVED if served else OUTCOME_ABANDONED

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["caller_number"] = mask_caller_number(self.caller_number)
        data.pop("bot_answered")
        data.pop("awaiting_bot")
        return data


class CallRecordWriter(SinkWriter):
    """Hands finished records to its sink (bot/record_sinks.py): in a folder, `<dir>/calls-YYYYMMDD.jsonl`, one file
    a UTC day."""

    def write(self, record: CallRecord) -> Path | None:
        """The file the record went to (None: not a file sink). Raises OSError when a file cannot be written.
        Text from Rasa or a peer may hold lone surrogates (valid JSON escapes, not UTF-8): each string is written
        with them as `\\xNN` / `\\udNNN`, like the CDR, so the call still gets its line."""
        return self.sink.write(KIND_CALLS, record.to_json(), call_id=record.call_id,
                               when=record.ended_at or time.time())
