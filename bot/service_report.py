"""The portal's KPIs as text, from the call records the gateway writes (`make report`).

    python -m bot.service_report [--dir var/calls | --db postgresql+psycopg://...] [--from 2026-11-01 --to 2026-12-01]
                                 [--include-console]

Read from PostgreSQL when CALL_RECORDS_DB_URL is set (every gateway of a cluster writes there), else from the
JSON Lines files in CALL_RECORDS_DIR; `--dir` or `--db` choose explicitly. The figures are the same either way, and
the same as the dashboard's (`/dashboard`, `/api/kpis`): every KPI is defined once, in bot/kpis.py, and explained in
docs/KPIS.md. The period is [from, to) in UTC (dates or ISO 8601 times); by default the last 30 days.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bot.kpi_period import BadPeriod, parse_period
from bot.kpi_sources import NoRecords, RecordSource, kpis_from_database, kpis_from_files
from bot.kpis import KpiResult, Period, Spread
from settings import get_settings

DEFAULT_DAYS = 30


def figures_from_files(folder: Path, period: Period, *, now: float | None = None,
                       include_console: bool = False) -> KpiResult:
    return kpis_from_files(folder, period, now=time.time() if now is None else now, include_console=include_console)


def figures_from_database(db_url: str, period: Period, *, now: float | None = None,
                          include_console: bool = False) -> KpiResult | None:
    """None when no gateway has written there yet. Raises ValueError for a URL that is not PostgreSQL,
    sqlalchemy's errors when the database does not answer."""
    try:
        return kpis_from_database(db_url, period, now=time.time() if now is None else now,
                                  include_console=include_console)
    except NoRecords:
        return None


def render(kpis: KpiResult) -> str:
    satisfaction = kpis.satisfaction
    return "\n".join([
        f"period {kpis.period.as_json()['from']} .. {kpis.period.as_json()['to']}"
        f"{' (console calls included)' if kpis.include_console else ''}",
        f"calls={kpis.calls} answered={kpis.answered} served_by_bot={kpis.served_by_bot} handoffs={kpis.handoffs} "
        f"abandoned={kpis.abandoned} damaged records skipped={kpis.skipped}",
        f"智能服务占比 (bot service share): {_percent(kpis.service_share)} "
        f"({kpis.bot_served}/{kpis.answered}: a task done or the dialogue's goodbye, no person)",
        f"智能交互解决率 (bot resolution rate): {_percent(kpis.resolution_rate)} "
        f"({kpis.resolved}/{kpis.attempted}; repeat calls within 24 h: {kpis.repeat_calls}; "
        f"24 h not yet over: {kpis.window_open})",
        f"green channel time to agent: {_spread(kpis.green_channel.reached_agent, 's')} "
        f"(handoffs {kpis.green_channel.handoffs})",
        f"elderly time to agent: {_spread(kpis.elderly.reached_agent, 's')} (handoffs {kpis.elderly.handoffs})",
        f"satisfaction: {_percent(satisfaction.satisfied_share)} satisfied of {satisfaction.answered} answers "
        f"(offered {satisfaction.offered}; elderly {_percent(satisfaction.elderly_satisfied_share)})",
        f"voice-to-voice latency: {_spread(kpis.voice_to_voice_ms, 'ms')}",
        f"barge-ins: {_percent(kpis.barge_in_rate, 'no prompts')} of bot prompts; "
        f"no-input: {_percent(kpis.no_input_rate, 'no turns')} of waits for the caller",
        "containment per intent: " + (", ".join(f"{row.intent} {_percent(row.containment)} ({row.calls})"
                                               for row in kpis.containment[:10]) or "n/a (no intents)"),
    ])


def _percent(value: float | None, none: str = "no calls") -> str:
    return f"n/a ({none})" if value is None else f"{value:.1%}"


def _spread(spread: Spread, unit: str) -> str:
    if not spread.n:
        return "n/a (no samples)"
    shown = " ".join(f"{name}={value:.1f}{unit}" for name, value in spread.percentiles.items())
    return f"n={spread.n} {shown} max={spread.max:.1f}{unit}"


def main(argv: list[str] | None = None) -> int:
    settings = get_settings().gateway
    parser = argparse.ArgumentParser(prog="python -m bot.service_report", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dir", help="folder with calls-*.jsonl and cdr-*.jsonl "
                                      "(default: CALL_RECORDS_DIR, when CALL_RECORDS_DB_URL is empty)")
    source.add_argument("--db", help="the records database's URL (default: CALL_RECORDS_DB_URL)")
    parser.add_argument("--from", dest="start", default="", help="period start, UTC (default: 30 days ago)")
    parser.add_argument("--to", dest="end", default="", help="period end, excluded (default: now)")
    parser.add_argument("--include-console", action="store_true",
                        help="count the developers' doors too (the text console, the voice page / make call)")
    args = parser.parse_args(argv)
    now = time.time()
    try:
        period = parse_period(args.start, args.end, now=now, default_days=DEFAULT_DAYS)
    except BadPeriod as error:
        print(f"bad period: {error}", file=sys.stderr)
        return 2
    source = RecordSource.of(settings, folder=args.dir, db_url=args.db)
    if source.db_url:
        try:
            figures = figures_from_database(source.db_url, period, now=now, include_console=args.include_console)
        except Exception as error:  # a dead or wrong database: say so in one line, not a stack trace
            print(f"cannot read the call records database: {_one_line(error)}", file=sys.stderr)
            return 1
        if figures is None:
            print("no call records yet: the database has no call-record tables (make a few calls first)",
                  file=sys.stderr)
            return 1
    else:
        folder = Path(source.folder)
        if not folder.is_dir():
            print(f"no call records yet: {folder} does not exist (make a few calls first)", file=sys.stderr)
            return 1
        figures = figures_from_files(folder, period, now=now, include_console=args.include_console)
    print(render(figures))
    return 0


def _one_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


if __name__ == "__main__":
    sys.exit(main())
