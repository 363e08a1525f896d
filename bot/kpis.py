"""The portal's KPIs from call records: one pure computation, the one place each KPI is defined (docs/KPIS.md).

    result = compute_kpis(records, Period(start, end), now=time.time(), cdrs=cdrs)
    result.service_share, result.resolution_rate, result.as_json()

No I/O: records come in as the dicts the call records hold (bot/call_records.py CallRecord.to_json; files or
PostgreSQL, bot/kpi_sources.py reads them), CDRs (bot/cdr.py) optionally fill a record's time to agent. A record that is
not a dict, has no usable `started_at`, or whose fields have the wrong types is skipped and counted in `skipped`:
one damaged line never takes the dashboard down.

Which calls: those that started in the period [start, end), minus the developers' doors' (bot/call_ids.py
DEVELOPER_DOORS: the web text console and the browser voice page / `make call`) unless `include_console`. The
repeat-call rule looks at calls after the period too, so give it the records that started up to the period's end
plus the longest call plus REPEAT_WINDOW_S (kpi_sources does).

Definitions (docs/KPIS.md says why):
- answered: the bot answered the caller (outcome served_by_bot or handoff); abandoned calls never reached the bot.
- 智能服务占比 = bot_served / answered. bot_served: answered calls with no person involved that the bot really
  served: a completed task (`completed_tasks` non-empty), or the dialogue's own goodbye ended the call
  (`bot_hangup` "goodbye"). Not the no-input hang-up, not a caller who hung up after an apology or a 没听清.
- 智能交互解决率 = resolved / attempted. attempted: answered calls less green-channel handoffs (the bank's
  fast lane to a person for the elderly: the bot is meant not to serve them). resolved: an attempted call with a
  completed task (`completed_tasks` non-empty), not handed off, and no call from the same caller (`caller_key`)
  starting within 24 h after it ended.
- containment per intent: for each intent recognised in an answered call, the share of those calls not handed
  off.
- time to agent: `time_to_agent_s` (our answer to the agent answering) of handoffs that reached an agent, for the
  green channel (reason green_channel) and for elderly callers (`elderly` or the elderly_priority queue); the
  handoffs no agent answered are counted beside the percentiles (`unreached`), never hidden.
- satisfaction: survey answers 1 满意 / 2 一般 / 3 不满意; satisfied share = 1s / answers.
- latency: every turn's `voice_to_voice_ms`; barge-ins per bot prompt; no-inputs per time the bot waited for input.
Percentiles are nearest-rank (a value that was measured, never an interpolation).
"""

from __future__ import annotations

import math
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any, Iterable

from bot.call_ids import DEVELOPER_DOORS
from bot.call_records import BOT_HANGUP_GOODBYE, OUTCOME_ABANDONED, OUTCOME_HANDOFF, OUTCOME_SERVED, OUTCOMES
from call_contract import QUEUE_ELDERLY, REASON_GREEN_CHANNEL, SURVEY_SATISFIED, SURVEY_SCORES

REPEAT_WINDOW_S = 24 * 3600.0
LATENCY_PERCENTILES = (50, 90, 95, 99)
TIME_TO_AGENT_PERCENTILES = (50, 90)
MAX_INTENTS_SHOWN = 30
MAX_INTENTS_PER_CALL = 50  # a record with thousands (damaged, forged) costs no more than a real call
MAX_WORD_CHARS = 64  # channels, reasons, queues, intents: short names; longer is not one of ours
BUCKET_HOUR_S, BUCKET_DAY_S, BUCKET_WEEK_S = 3600, 86400, 7 * 86400


@dataclass(frozen=True)
class Period:
    """[start, end) in epoch seconds (UTC)."""

    start: float
    end: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.end)) or self.end <= self.start:
            raise ValueError("a period needs finite bounds with start before end")

    def holds(self, when: float) -> bool:
        return self.start <= when < self.end

    def as_json(self) -> dict[str, str]:
        return {"from": _iso(self.start), "to": _iso(self.end)}


@dataclass(frozen=True, slots=True)
class Call:
    """The fields of one call record the KPIs use, checked and typed (`from_record`): a year of a bank's calls is
    held as these, never as the records (transcripts are counted as they are read, then dropped)."""

    call_id: str
    started_at: float
    ended_at: float
    channel: str
    caller_key: str
    outcome: str
    bot_hangup: str
    handoff_reason: str
    handoff_queue: str
    time_to_agent_s: float | None
    intents: tuple[str, ...]
    completed_tasks: tuple[str, ...]
    elderly: bool
    survey_offered: bool
    survey_score: int | None
    voice_to_voice_ms: tuple[float, ...]
    caller_turns: int
    bot_prompts: int
    barge_ins: int
    no_inputs: int

    @property
    def answered(self) -> bool:
        return self.outcome in (OUTCOME_SERVED, OUTCOME_HANDOFF)

    @property
    def handed_off(self) -> bool:
        return self.outcome == OUTCOME_HANDOFF

    @property
    def bot_served(self) -> bool:
        """The 智能服务占比's numerator: no person, and the caller really served (a task done, or the dialogue's
        goodbye), not a give-up after an apology nor the no-input hang-up."""
        return self.outcome == OUTCOME_SERVED and (bool(self.completed_tasks) or self.bot_hangup == BOT_HANGUP_GOODBYE)

    @property
    def green_channel(self) -> bool:
        return self.handed_off and self.handoff_reason == REASON_GREEN_CHANNEL

    @property
    def elderly_caller(self) -> bool:
        return self.elderly or self.handoff_queue == QUEUE_ELDERLY


class DamagedRecord(ValueError):
    """A record the KPIs cannot use (wrong shape, no start time, unknown outcome)."""


def call_from_record(record: Any) -> Call:
    """The KPI view of one record dict; raises DamagedRecord."""
    if not isinstance(record, dict):
        raise DamagedRecord("not an object")
    started = _number(record.get("started_at"))
    if started is None:
        raise DamagedRecord("no start time")
    ended = _number(record.get("ended_at"))
    outcome = record.get("outcome")
    if outcome not in OUTCOMES:
        raise DamagedRecord(f"unknown outcome {outcome!r}"[:80])
    transcript = record.get("transcript") if isinstance(record.get("transcript"), list) else []
    turns = [turn for turn in transcript if isinstance(turn, dict)]
    score = record.get("survey_score")
    return Call(
        call_id=_text(record.get("call_id")),
        started_at=started,
        ended_at=ended if ended is not None and ended >= started else started,
        channel=_word(record.get("channel")),
        caller_key=_text(record.get("caller_key")),
        outcome=sys.intern(outcome),
        bot_hangup=_word(record.get("bot_hangup")),
        handoff_reason=_word(record.get("handoff_reason")),
        handoff_queue=_word(record.get("handoff_queue")),
        time_to_agent_s=_number(record.get("time_to_agent_s")),
        intents=_words(record.get("intents")),
        completed_tasks=_words(record.get("completed_tasks")),
        elderly=record.get("elderly") is True,
        survey_offered=record.get("survey_offered") is True,
        survey_score=score if type(score) is int and score in SURVEY_SCORES else None,
        voice_to_voice_ms=tuple(ms for turn in _dicts(record.get("turn_metrics"))
                                if (ms := _number(turn.get("voice_to_voice_ms"))) is not None),
        caller_turns=sum(turn.get("who") == "caller" for turn in turns),
        bot_prompts=sum(turn.get("who") == "bot" for turn in turns),
        barge_ins=_count(record.get("barge_ins")),
        no_inputs=_count(record.get("no_inputs")),
    )


# ---- the result -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Spread:
    """Nearest-rank percentiles of some samples (keys "p50", "p90", ...); empty when there are none."""

    n: int
    percentiles: dict[str, float]
    max: float | None

    @classmethod
    def of(cls, values: Iterable[float], percentiles: Iterable[int]) -> "Spread":
        ordered = sorted(values)
        if not ordered:
            return cls(0, {}, None)
        return cls(len(ordered), {f"p{p}": round(nearest_rank(ordered, p), 3) for p in percentiles},
                   round(ordered[-1], 3))


@dataclass(frozen=True)
class IntentContainment:
    intent: str
    calls: int
    contained: int  # not handed off
    resolved: int

    @property
    def containment(self) -> float | None:
        return ratio(self.contained, self.calls)


@dataclass(frozen=True)
class Bucket:
    start: float
    served_by_bot: int = 0
    handoff: int = 0
    abandoned: int = 0
    resolved: int = 0


@dataclass(frozen=True)
class TimeToAgent:
    handoffs: int  # handed off in the period
    reached_agent: Spread  # time_to_agent_s of those an agent answered (reached_agent.n of them)

    @property
    def unreached(self) -> int:
        """Handoffs no agent answered (or whose answer was not measured): beside the percentiles, never hidden."""
        return self.handoffs - self.reached_agent.n

    @property
    def unreached_share(self) -> float | None:
        return ratio(self.unreached, self.handoffs)


@dataclass(frozen=True)
class Satisfaction:
    offered: int
    answered: int
    scores: dict[str, int]  # "1" 满意, "2" 一般, "3" 不满意 -> answers
    elderly_answered: int
    elderly_satisfied: int

    @property
    def satisfied_share(self) -> float | None:
        return ratio(self.scores.get(str(SURVEY_SATISFIED), 0), self.answered)

    @property
    def response_rate(self) -> float | None:
        return ratio(self.answered, self.offered)

    @property
    def elderly_satisfied_share(self) -> float | None:
        return ratio(self.elderly_satisfied, self.elderly_answered)


@dataclass(frozen=True)
class KpiResult:
    period: Period
    include_console: bool
    calls: int
    skipped: int  # damaged records
    answered: int
    served_by_bot: int  # outcome served_by_bot: no person, whether or not the caller was served
    bot_served: int  # the 智能服务占比's numerator (Call.bot_served)
    handoffs: int
    abandoned: int
    attempted: int  # the resolution rate's denominator
    resolved: int
    repeat_calls: int  # attempted calls followed by a call from the same caller within 24 h
    window_open: int  # resolved calls whose 24 h have not all passed yet (`now`): they may still be repeated
    by_channel: dict[str, int]
    containment: list[IntentContainment]
    bucket_s: int
    outcomes_over_time: list[Bucket]
    green_channel: TimeToAgent
    elderly: TimeToAgent
    satisfaction: Satisfaction
    voice_to_voice_ms: Spread
    bot_prompts: int
    barge_ins: int
    calls_with_barge_in: int
    caller_turns: int
    no_inputs: int
    calls_with_no_input: int

    @property
    def service_share(self) -> float | None:
        """智能服务占比."""
        return ratio(self.bot_served, self.answered)

    @property
    def resolution_rate(self) -> float | None:
        """智能交互解决率."""
        return ratio(self.resolved, self.attempted)

    @property
    def barge_in_rate(self) -> float | None:
        """Barge-ins per bot prompt."""
        return ratio(self.barge_ins, self.bot_prompts)

    @property
    def no_input_rate(self) -> float | None:
        """No-input timeouts per time the bot waited for the caller (a caller turn or a timeout)."""
        return ratio(self.no_inputs, self.caller_turns + self.no_inputs)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["period"] = self.period.as_json()
        data.update(service_share=self.service_share, resolution_rate=self.resolution_rate,
                    barge_in_rate=self.barge_in_rate, no_input_rate=self.no_input_rate)
        data["containment"] = [{**asdict(row), "containment": row.containment} for row in self.containment]
        data["outcomes_over_time"] = [{**asdict(bucket), "start": _iso(bucket.start)}
                                      for bucket in self.outcomes_over_time]
        for name in ("green_channel", "elderly"):
            data[name].update(unreached=getattr(self, name).unreached,
                              unreached_share=getattr(self, name).unreached_share)
        data["satisfaction"].update(satisfied_share=self.satisfaction.satisfied_share,
                                    response_rate=self.satisfaction.response_rate,
                                    elderly_satisfied_share=self.satisfaction.elderly_satisfied_share)
        return data


# ---- the computation ------------------------------------------------------------------------------------------

def compute_kpis(records: Iterable[Any], period: Period, *, now: float, include_console: bool = False,
                 cdrs: Iterable[Any] = (), bucket_s: int | None = None) -> KpiResult:
    """The KPIs of the calls that started in `period`. `records` should reach REPEAT_WINDOW_S past its end (for the
    repeat rule); `now` says which 24 h windows are still open; `cdrs` fill a record's missing time to agent."""
    agent_times = _cdr_times_to_agent(cdrs)
    calls, later_calls, skipped = [], [], 0
    seen: set[str] = set()
    for record in records:
        try:
            call = call_from_record(record)
        except DamagedRecord:
            skipped += 1
            continue
        if call.call_id:
            if call.call_id in seen:  # the same record twice (a file copied, a replay): one call
                continue
            seen.add(call.call_id)
        if call.channel in DEVELOPER_DOORS and not include_console:
            continue
        if call.time_to_agent_s is None and call.call_id in agent_times and call.handed_off:
            call = _with_time_to_agent(call, agent_times[call.call_id])
        (calls if period.holds(call.started_at) else later_calls).append(call)
    starts_by_caller = _starts_by_caller([*calls, *later_calls])
    step = bucket_s or bucket_size(period)

    answered = [call for call in calls if call.answered]
    attempted = [call for call in answered if not call.green_channel]
    repeated = {call.call_id for call in attempted if _repeated(call, starts_by_caller)}
    resolved = [call for call in attempted if resolved_call(call, call.call_id in repeated)]
    resolved_ids = {id(call) for call in resolved}
    return KpiResult(
        period=period,
        include_console=include_console,
        calls=len(calls),
        skipped=skipped,
        answered=len(answered),
        served_by_bot=sum(call.outcome == OUTCOME_SERVED for call in calls),
        bot_served=sum(call.bot_served for call in answered),
        handoffs=sum(call.handed_off for call in calls),
        abandoned=sum(call.outcome == OUTCOME_ABANDONED for call in calls),
        attempted=len(attempted),
        resolved=len(resolved),
        repeat_calls=len(repeated),
        window_open=sum(call.ended_at + REPEAT_WINDOW_S > now for call in resolved),
        by_channel=dict(Counter(call.channel or "unknown" for call in calls)),
        containment=_containment(answered, resolved_ids),
        bucket_s=step,
        outcomes_over_time=_buckets(calls, resolved_ids, period, step),
        green_channel=_time_to_agent([call for call in calls if call.green_channel]),
        elderly=_time_to_agent([call for call in calls if call.handed_off and call.elderly_caller]),
        satisfaction=_satisfaction(calls),
        voice_to_voice_ms=Spread.of((ms for call in calls for ms in call.voice_to_voice_ms), LATENCY_PERCENTILES),
        bot_prompts=sum(call.bot_prompts for call in calls),
        barge_ins=sum(call.barge_ins for call in calls),
        calls_with_barge_in=sum(call.barge_ins > 0 for call in calls),
        caller_turns=sum(call.caller_turns for call in calls),
        no_inputs=sum(call.no_inputs for call in calls),
        calls_with_no_input=sum(call.no_inputs > 0 for call in calls),
    )


def resolved_call(call: Call, repeated: bool) -> bool:
    """The resolution rule: the caller's task was completed, no person took over, and they did not call again."""
    return bool(call.completed_tasks) and not call.handed_off and not repeated


def bucket_size(period: Period) -> int:
    """Hours up to two days, days up to about two months, weeks beyond: a chart of tens of bars, not thousands."""
    span = period.end - period.start
    if span <= 2 * BUCKET_DAY_S:
        return BUCKET_HOUR_S
    if span <= 62 * BUCKET_DAY_S:
        return BUCKET_DAY_S
    return BUCKET_WEEK_S


def nearest_rank(ordered: list[float], percentile: float) -> float:
    """The nearest-rank percentile of sorted, non-empty values."""
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole > 0 else None


def _starts_by_caller(calls: list[Call]) -> dict[str, list[float]]:
    starts: dict[str, list[float]] = defaultdict(list)
    for call in calls:
        if call.caller_key:  # no number: unknown callers never match each other
            starts[call.caller_key].append(call.started_at)
    return starts


def _repeated(call: Call, starts_by_caller: dict[str, list[float]]) -> bool:
    """Another call from the same caller started after this one ended, within 24 h of that end."""
    return any(call.ended_at < start <= call.ended_at + REPEAT_WINDOW_S
               for start in starts_by_caller.get(call.caller_key, ()))


def _containment(calls: list[Call], resolved_ids: set[int]) -> list[IntentContainment]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for call in calls:
        for intent in dict.fromkeys(call.intents):  # each intent once per call, in order
            row = counts[intent]
            row[0] += 1
            row[1] += not call.handed_off
            row[2] += id(call) in resolved_ids
    rows = [IntentContainment(intent, *row) for intent, row in counts.items()]
    rows.sort(key=lambda row: (-row.calls, row.intent))
    return rows[:MAX_INTENTS_SHOWN]


def _buckets(calls: list[Call], resolved_ids: set[int], period: Period, step: int) -> list[Bucket]:
    first = math.floor(period.start / step) * step
    counts: dict[float, Counter] = {}
    start = first
    while start < period.end:
        counts[start] = Counter()
        start += step
    for call in calls:
        bucket = counts[first + math.floor((call.started_at - first) / step) * step]
        bucket[call.outcome] += 1
        bucket["resolved"] += id(call) in resolved_ids
    return [Bucket(start, served_by_bot=c[OUTCOME_SERVED], handoff=c[OUTCOME_HANDOFF],
                   abandoned=c[OUTCOME_ABANDONED], resolved=c["resolved"]) for start, c in counts.items()]


def _time_to_agent(handoffs: list[Call]) -> TimeToAgent:
    return TimeToAgent(len(handoffs), Spread.of((call.time_to_agent_s for call in handoffs
                                                 if call.time_to_agent_s is not None), TIME_TO_AGENT_PERCENTILES))


def _satisfaction(calls: list[Call]) -> Satisfaction:
    answers = [call for call in calls if call.survey_score is not None]
    elderly = [call for call in answers if call.elderly_caller]
    return Satisfaction(
        offered=sum(call.survey_offered or call.survey_score is not None for call in calls),
        answered=len(answers),
        scores={str(score): sum(call.survey_score == score for call in answers) for score in SURVEY_SCORES},
        elderly_answered=len(elderly),
        elderly_satisfied=sum(call.survey_score == SURVEY_SATISFIED for call in elderly),
    )


def _cdr_times_to_agent(cdrs: Iterable[Any]) -> dict[str, float]:
    times = {}
    for cdr in cdrs:
        if isinstance(cdr, dict) and isinstance(cdr.get("call_id"), str):
            seconds = _number(cdr.get("time_to_agent_s"))
            if seconds is not None:
                times[cdr["call_id"]] = seconds
    return times


def _with_time_to_agent(call: Call, seconds: float) -> Call:
    return replace(call, time_to_agent_s=seconds)


def _number(value: Any) -> float | None:
    """A finite, non-negative number; None for anything else (bool, NaN, a string)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def _count(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _word(value: Any) -> str:
    """A short name shared by many records (a channel, a reason), kept once in memory; "" for anything else."""
    return sys.intern(value) if isinstance(value, str) and len(value) <= MAX_WORD_CHARS else ""


def _words(value: Any) -> tuple[str, ...]:
    """A list of names (intents, tasks): the usable ones, each kept once in memory, at most MAX_INTENTS_PER_CALL."""
    if not isinstance(value, list):
        return ()
    return tuple(word for word in map(_word, value[:MAX_INTENTS_PER_CALL]) if word)


def _dicts(value: Any) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
