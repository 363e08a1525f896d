"""Where the KPIs' records come from (bot/kpi_sources.py): which day files are read, and what counts as skipped."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bot.kpi_sources import LONGEST_CALL_S, kpis_from_files, reading_window
from bot.kpis import REPEAT_WINDOW_S, Period
from settings import SipSettings

DAY = 86400.0
START = 1_790_035_200.0  # 2026-09-22T00:00Z
PERIOD = Period(START, START + DAY)


def record(n: int, started: float, duration: float, **fields) -> dict:
    return {"call_id": f"sip-{n:032x}", "started_at": started, "ended_at": started + duration,
            "outcome": "served_by_bot", "channel": "sip", "caller_key": "same", **fields}


def file_by_end_day(folder: Path, records: list, extra_lines: dict[str, list[str]] | None = None) -> None:
    """As the gateway files them: `calls-YYYYMMDD.jsonl` by the UTC day each call ended."""
    lines: dict[str, list[str]] = dict(extra_lines or {})
    for r in records:
        day = time.strftime("%Y%m%d", time.gmtime(r["ended_at"]))
        lines.setdefault(day, []).append(json.dumps(r))
    for day, day_lines in lines.items():
        (folder / f"calls-{day}.jsonl").write_text("\n".join(day_lines) + "\n", encoding="utf-8")


def test_the_longest_call_comes_from_the_sip_settings():
    assert LONGEST_CALL_S >= SipSettings().max_call_s
    assert reading_window(PERIOD)[1] >= PERIOD.end + SipSettings().max_call_s + REPEAT_WINDOW_S


def test_a_repeat_of_a_call_that_ended_after_the_period_is_found(tmp_path):
    """A call started a minute before the period's end and lasted 50 min; its caller rang again 23 h 50 min after it
    ended, i.e. more than 24 h after the period's end: still a repeat."""
    last = record(1, PERIOD.end - 60, 3000, completed_tasks=["check_balance"])
    again = record(2, last["ended_at"] + 23 * 3600 + 50 * 60, 60)
    file_by_end_day(tmp_path, [last, again])
    result = kpis_from_files(tmp_path, PERIOD, now=PERIOD.end + 5 * DAY)
    assert result.calls == 1 and result.repeat_calls == 1 and result.resolved == 0


def test_damaged_lines_of_the_look_ahead_days_are_not_the_periods(tmp_path):
    inside = record(1, START + 3600, 60, completed_tasks=["check_balance"])
    file_by_end_day(tmp_path, [inside], {"20260924": ['{"started_at": 1'], "20260925": ["not json"]})
    (tmp_path / "calls-20260922.jsonl").write_text(json.dumps(inside) + "\n{cut by a crash\n", encoding="utf-8")
    result = kpis_from_files(tmp_path, PERIOD, now=PERIOD.end + 5 * DAY)
    assert result.calls == 1 and result.skipped == 1  # the period's own damaged line only
