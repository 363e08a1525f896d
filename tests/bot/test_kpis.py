"""The KPI definitions (bot/kpis.py, docs/KPIS.md) on synthetic call records: what counts, and the edges."""

from __future__ import annotations

import math

import pytest

from bot.kpi_period import BadPeriod, parse_period
from bot.kpis import REPEAT_WINDOW_S, Period, compute_kpis, nearest_rank

DAY = 86400.0
T0 = 1_790_000_000.0  # 2026-09-21, any fixed instant: the computation never reads the clock
PERIOD = Period(T0, T0 + DAY)
LATER = T0 + 30 * DAY  # every 24 h window is over


def call(n: int, outcome: str = "served_by_bot", *, start: float | None = None, duration: float = 60.0,
         **fields) -> dict:
    started = T0 + 3600 + n * 60 if start is None else start
    record = {"call_id": f"sip-{n:032x}", "caller_number": "138****0001", "started_at": started,
              "ended_at": started + duration, "outcome": outcome, "channel": "sip", "caller_key": f"key{n}",
              "intents": [], "completed_tasks": [], "transcript": [], "turn_metrics": []}
    record.update(fields)
    return record


def kpis(records, period=PERIOD, now=LATER, **options):
    return compute_kpis(records, period, now=now, **options)


def test_an_empty_period_gives_no_ratio_and_empty_charts():
    result = kpis([])
    assert result.calls == 0 and result.service_share is None and result.resolution_rate is None
    assert result.voice_to_voice_ms.n == 0 and result.voice_to_voice_ms.percentiles == {}
    assert result.green_channel.reached_agent.n == 0 and result.satisfaction.satisfied_share is None
    assert result.barge_in_rate is None and result.no_input_rate is None
    # T0 is not on the hour: a partial hour at each end
    assert len(result.outcomes_over_time) == 25 and not any(b.served_by_bot for b in result.outcomes_over_time)
    data = result.as_json()
    assert data["service_share"] is None and data["period"] == {"from": "2026-09-21T14:13:20Z",
                                                                "to": "2026-09-22T14:13:20Z"}


def test_service_share_is_the_calls_the_bot_served_out_of_the_answered_ones():
    records = [call(1, completed_tasks=["check_balance"]), call(2, bot_hangup="goodbye"),
               call(3, "handoff", handoff_reason="nlu_fallback"), call(4, "abandoned")]
    result = kpis(records)
    assert (result.calls, result.answered, result.served_by_bot, result.handoffs, result.abandoned) == (4, 3, 2, 1, 1)
    assert result.bot_served == 2
    assert result.service_share == pytest.approx(2 / 3)


def test_callers_who_gave_up_are_not_served_by_the_bot():
    """Issue 10: "served by the bot" used to count callers who hung up after any reply. Only a completed task or
    the dialogue's own goodbye counts; the no-input hang-up and a hang-up after an apology or 没听清 do not."""
    records = [
        call(1, completed_tasks=["check_balance"]),  # the caller hung up once the balance was read: served
        call(2, bot_hangup="goodbye"),  # 再见 → the dialogue's farewell: served
        call(3, bot_hangup="no_input"),  # silence through the ladder: not served
        call(4, transcript=[{"who": "caller", "text": "啊?"}, {"who": "bot", "text": "抱歉,我没听清。"}]),  # gave up
        call(5, bot_hangup="no_input", completed_tasks=["check_balance"]),  # a task done before the silence: served
        call(6, "handoff", handoff_reason="human_agent", completed_tasks=["check_balance"]),  # a person: never
    ]
    result = kpis(records)
    assert (result.answered, result.served_by_bot, result.bot_served) == (6, 5, 3)
    assert result.service_share == pytest.approx(3 / 6)
    assert result.as_json()["bot_served"] == 3


def test_a_call_is_resolved_only_with_a_completed_task_no_handoff_and_no_repeat():
    records = [
        call(1, completed_tasks=["check_balance"]),  # resolved
        call(2),  # the caller hung up after a reply, no task done: served, not resolved
        call(3, "handoff", handoff_reason="human_agent", completed_tasks=["check_balance"]),  # a person took over
        call(4, "handoff", handoff_reason="green_channel"),  # the elderly's fast lane: not attempted by the bot
        call(5, "abandoned"),  # never reached the bot
    ]
    result = kpis(records)
    assert (result.attempted, result.resolved) == (3, 1)
    assert result.resolution_rate == pytest.approx(1 / 3)
    assert result.service_share == pytest.approx(1 / 4)  # call 2 gave up: no task, no goodbye


def test_no_answered_call_gives_no_ratio_rather_than_zero():
    result = kpis([call(1, "abandoned"), call(2, "abandoned")])
    assert result.calls == 2 and result.answered == 0
    assert result.service_share is None and result.resolution_rate is None


@pytest.mark.parametrize("gap_s, resolved", [(23 * 3600 + 59 * 60, 0), (24 * 3600 + 60, 1), (REPEAT_WINDOW_S, 0)])
def test_a_repeat_call_within_24_hours_after_the_end_counts_against_resolution(gap_s, resolved):
    first = call(1, completed_tasks=["transfer_money"], caller_key="same")
    ended = first["ended_at"]
    again = call(2, start=ended + gap_s, caller_key="same")  # may fall after the period: still looked at
    result = kpis([first, again], period=Period(T0, T0 + 2 * DAY), now=ended + 3 * DAY)
    assert result.resolved == resolved
    assert result.repeat_calls == 1 - resolved


def test_a_repeat_after_the_period_counts_and_calls_without_a_number_never_match():
    first = call(1, completed_tasks=["check_balance"], caller_key="same")
    after_period = call(2, start=PERIOD.end + 3600, caller_key="same")
    no_number = [call(3, completed_tasks=["check_balance"], caller_key=""), call(4, caller_key="")]
    result = kpis([first, after_period, *no_number])
    assert result.calls == 3  # the later call is only there for the repeat rule
    assert result.repeat_calls == 1 and result.resolved == 1


def test_resolution_whose_24_hours_are_not_over_is_counted_as_open():
    record = call(1, completed_tasks=["check_balance"])
    assert kpis([record], now=record["ended_at"] + 3600).window_open == 1
    assert kpis([record], now=record["ended_at"] + REPEAT_WINDOW_S + 1).window_open == 0


@pytest.mark.parametrize("door", ["console", "web"])
def test_the_developer_doors_are_left_out_unless_asked_for(door):
    """The text console and the browser voice page / `make call` (bot/call_ids.py DEVELOPER_DOORS) are testers."""
    records = [call(1, completed_tasks=["check_balance"]), call(2, channel=door, completed_tasks=["check_balance"])]
    assert kpis(records).calls == 1 and kpis(records).by_channel == {"sip": 1}
    assert kpis(records, include_console=True).by_channel == {"sip": 1, door: 1}


def test_containment_counts_answered_calls_only():
    records = [call(1, intents=["check_balance"]), call(2, "abandoned", intents=["check_balance"]),
               call(3, "handoff", handoff_reason="human_agent", intents=["check_balance"])]
    (row,) = kpis(records).containment
    assert (row.calls, row.contained, row.containment) == (2, 1, 0.5)  # the abandoned call is contained by nobody


def test_handoffs_no_agent_answered_are_shown_beside_the_time_to_agent():
    records = [call(1, "handoff", handoff_reason="green_channel", time_to_agent_s=4.0),
               call(2, "handoff", handoff_reason="green_channel"),
               call(3, "handoff", handoff_reason="green_channel")]
    green = kpis(records).green_channel
    assert (green.handoffs, green.reached_agent.n, green.unreached) == (3, 1, 2)
    assert green.unreached_share == pytest.approx(2 / 3)
    data = kpis(records).as_json()["green_channel"]
    assert data["unreached"] == 2 and data["unreached_share"] == pytest.approx(2 / 3)


def test_console_calls_are_left_out_unless_asked_for():
    console = call(2, start=T0 + 7200, channel="console", caller_key="key1")
    records = [call(1, completed_tasks=["check_balance"]), console]
    result = kpis(records)
    assert result.calls == 1 and result.resolved == 1  # the console call is no repeat either
    assert result.by_channel == {"sip": 1}
    with_console = kpis(records, include_console=True)
    assert with_console.calls == 2 and with_console.by_channel == {"sip": 1, "console": 1}
    assert with_console.resolved == 0  # now it is a repeat call of the same caller


@pytest.mark.parametrize("damaged", [
    None, "text", 42, [], {}, {"outcome": "served_by_bot"},  # no start time
    {"started_at": "yesterday", "outcome": "served_by_bot"},
    {"started_at": True, "outcome": "served_by_bot"},
    {"started_at": float("nan"), "outcome": "served_by_bot"},
    {"started_at": -5.0, "outcome": "served_by_bot"},
    {"started_at": T0 + 10, "outcome": "exploded"},
    {"started_at": T0 + 10, "outcome": ["handoff"]},
])
def test_damaged_records_are_skipped_and_counted(damaged):
    result = kpis([call(1, completed_tasks=["check_balance"]), damaged])
    assert result.calls == 1 and result.skipped == 1 and result.resolved == 1


def test_wrongly_typed_fields_are_ignored_not_fatal():
    record = call(1, intents="check_balance", completed_tasks={"x": 1}, turn_metrics=[None, {"voice_to_voice_ms": "9"},
                  {"voice_to_voice_ms": math.inf}, {"voice_to_voice_ms": 420}], barge_ins="3", no_inputs=-2,
                  survey_score=True, elderly="yes", transcript="...", ended_at=T0 - 100)
    result = kpis([record])
    assert result.calls == 1 and result.skipped == 0
    assert result.containment == [] and result.resolved == 0
    assert result.voice_to_voice_ms.n == 1 and result.barge_ins == 0 and result.no_inputs == 0
    assert result.satisfaction.answered == 0 and result.elderly.handoffs == 0


def test_the_same_record_twice_is_one_call():
    record = call(1, completed_tasks=["check_balance"], caller_key="same")
    result = kpis([record, dict(record)])
    assert result.calls == 1 and result.resolved == 1


def test_containment_per_intent():
    records = [
        call(1, intents=["check_balance", "check_balance"], completed_tasks=["check_balance"]),
        call(2, "handoff", intents=["check_balance", "human_agent"], handoff_reason="human_agent"),
        call(3, intents=["<script>alert(1)</script>"]),
    ]
    rows = {row.intent: row for row in kpis(records).containment}
    assert (rows["check_balance"].calls, rows["check_balance"].contained, rows["check_balance"].resolved) == (2, 1, 1)
    assert rows["check_balance"].containment == 0.5
    assert rows["human_agent"].containment == 0.0
    assert rows["<script>alert(1)</script>"].calls == 1  # kept as data: the page sets it as text


def test_outcomes_over_time_fall_in_their_buckets():
    start = PERIOD.start - PERIOD.start % 3600
    records = [call(1, start=PERIOD.start), call(2, "handoff", start=PERIOD.start + 1, handoff_reason="x"),
               call(3, "abandoned", start=start + 5 * 3600 + 5), call(4, start=PERIOD.end - 1)]
    result = kpis(records)
    assert result.bucket_s == 3600
    buckets = result.outcomes_over_time
    assert buckets[0].start == start and (buckets[0].served_by_bot, buckets[0].handoff) == (1, 1)
    assert buckets[5].abandoned == 1 and buckets[-1].served_by_bot == 1
    assert sum(b.served_by_bot + b.handoff + b.abandoned for b in buckets) == 4
    assert kpis([], period=Period(T0, T0 + 10 * DAY)).bucket_s == DAY
    assert kpis([], period=Period(T0, T0 + 100 * DAY)).bucket_s == 7 * DAY


def test_time_to_agent_for_the_green_channel_and_the_elderly():
    records = [call(n, "handoff", handoff_reason="green_channel", handoff_queue="elderly_priority",
                    time_to_agent_s=float(n)) for n in range(1, 11)]
    records += [call(20, "handoff", handoff_reason="human_agent", handoff_queue="general", elderly=True,
                     time_to_agent_s=30.0),
                call(21, "handoff", handoff_reason="green_channel", time_to_agent_s=None),  # no agent answered
                call(22, "handoff", handoff_reason="human_agent", handoff_queue="general", time_to_agent_s=99.0)]
    result = kpis(records)
    assert result.green_channel.handoffs == 11 and result.green_channel.reached_agent.n == 10
    assert result.green_channel.reached_agent.percentiles == {"p50": 5.0, "p90": 9.0}
    assert result.elderly.handoffs == 11 and result.elderly.reached_agent.max == 30.0


def test_a_cdr_fills_a_time_to_agent_the_record_lacks():
    record = call(1, "handoff", handoff_reason="green_channel")
    cdrs = [{"call_id": record["call_id"], "time_to_agent_s": 4.5}, "junk", {"call_id": 7}]
    assert kpis([record], cdrs=cdrs).green_channel.reached_agent.percentiles["p50"] == 4.5


def test_satisfaction():
    records = [call(1, survey_offered=True, survey_score=1, elderly=True),
               call(2, survey_offered=True, survey_score=1), call(3, survey_offered=True, survey_score=3),
               call(4, survey_offered=True, survey_score=None), call(5, survey_offered=True, survey_score=7),
               call(6)]
    s = kpis(records).satisfaction
    assert (s.offered, s.answered, s.scores) == (5, 3, {"1": 2, "2": 0, "3": 1})
    assert s.satisfied_share == pytest.approx(2 / 3) and s.response_rate == pytest.approx(3 / 5)
    assert s.elderly_satisfied_share == 1.0


def test_latency_percentiles_are_nearest_rank_over_every_turn():
    records = [call(1, turn_metrics=[{"voice_to_voice_ms": float(ms)} for ms in range(100, 1100, 100)]),
               call(2, turn_metrics=[{"voice_to_voice_ms": None}, {"stt_ms": 5.0}])]
    spread = kpis(records).voice_to_voice_ms
    assert spread.n == 10 and spread.max == 1000.0
    assert spread.percentiles == {"p50": 500.0, "p90": 900.0, "p95": 1000.0, "p99": 1000.0}
    assert nearest_rank([1.0], 99) == 1.0 and nearest_rank([1.0, 2.0], 1) == 1.0


def test_barge_in_and_no_input_rates():
    turns = [{"who": "bot", "text": "a"}, {"who": "caller", "text": "b"}, {"who": "bot", "text": "c"},
             {"who": "bot", "text": "d"}, {"who": "caller", "text": "e"}]
    records = [call(1, transcript=turns, barge_ins=1, no_inputs=2), call(2, transcript=turns[:1])]
    result = kpis(records)
    assert (result.bot_prompts, result.barge_ins, result.calls_with_barge_in) == (4, 1, 1)
    assert result.barge_in_rate == pytest.approx(1 / 4)
    assert (result.caller_turns, result.no_inputs, result.calls_with_no_input) == (2, 2, 1)
    assert result.no_input_rate == pytest.approx(2 / 4)


def test_the_period_is_half_open():
    records = [call(1, start=PERIOD.start), call(2, start=PERIOD.end), call(3, start=PERIOD.start - 1)]
    assert kpis(records).calls == 1


@pytest.mark.parametrize("start, end, message", [
    ("yesterday", "", "ISO 8601"), ("2026-11-02", "2026-11-01", "after"), ("2026-11-01", "2026-11-01", "after"),
    ("2020-01-01", "2026-01-01", "366 days"), ("1969-12-31", "1970-01-02", "1970"), ("２０２６-11-01", "", "ISO"),
    ("2026-11-01" + "0" * 100, "", "ISO"), ("2026-13-01", "", "ISO"),
])
def test_bad_periods_are_refused_with_a_reason(start, end, message):
    with pytest.raises(BadPeriod, match=message):
        parse_period(start, end, now=T0, default_days=7)


def test_periods_read_dates_times_and_offsets_as_utc_by_default():
    offset = parse_period("2026-11-01", "2026-11-01T09:00+08:00", now=T0, default_days=7)
    assert offset.end - offset.start == 3600  # 09:00 in Beijing is 01:00 UTC
    naive = parse_period("2026-11-01T00:00", "2026-11-02T00:00Z", now=T0, default_days=7)
    assert naive.end - naive.start == DAY
    default = parse_period("", "", now=T0, default_days=7)
    assert (default.start, default.end) == (T0 - 7 * DAY, T0)
