"""Where the KPIs' records come from: the JSON Lines files of one host, or PostgreSQL for a cluster.

    result = kpis_for(settings.gateway, period, now=time.time())            # the gateway's own choice
    result = kpis_from(RecordSource.of(settings.gateway), period, now=...)   # the same, the choice kept
    result = kpis_from_files(Path("var/calls"), period, now=...)            # `make report --dir`
    result = kpis_from_database("postgresql+psycopg://...", period, now=...) # `make report --db`

Blocking I/O and CPU (files, a database, the computation): the dashboard runs these in its worker process
(bot/kpi_worker.py), never in the gateway's event loop. Records are streamed, one at a time, and each is cut down to
the fields the KPIs use as it is read (bot/kpis.py `Call`; transcripts are counted, then dropped). Only the records
the period needs are read: calls that started in it, or after it early enough to be a repeat of one of its calls (a
call of the period can end up to the longest call after the period, and its 24 h run from there; bot/kpis.py).
Files are `calls-YYYYMMDD.jsonl` by the UTC day a call ended, so the days read run from the period's first day to
the day the last call that matters can have ended. A damaged line in a day of the period is handed on as None,
which the KPIs count as skipped; one in a look-ahead day is dropped (it is not the period's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import chain
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from bot.kpis import REPEAT_WINDOW_S, KpiResult, Period, compute_kpis
from settings import GatewaySettings, SipSettings

# A call's record is filed on the day it ended, up to the longest call (SIP_MAX_CALL_S) after it started; the margin
# covers a call whose cleanup ran late.
LONGEST_CALL_S = SipSettings().max_call_s + 600.0


class NoRecords(LookupError):
    """There are no call records to read at all (no folder, no tables): not the same as a quiet period."""


def reading_window(period: Period, longest_call_s: float = LONGEST_CALL_S) -> tuple[float, float]:
    """Start times of the records the KPIs of `period` need: [start, end + longest call + 24 h]."""
    return period.start, period.end + longest_call_s + REPEAT_WINDOW_S


@dataclass(frozen=True)
class RecordSource:
    """Where the call records are: a PostgreSQL URL, else a folder of JSON Lines files. The one place the choice is
    made (the dashboard's worker and `make report` both take it from here)."""

    db_url: str = ""
    folder: str = ""

    @classmethod
    def of(cls, gateway: GatewaySettings, *, folder: str | None = None, db_url: str | None = None) -> "RecordSource":
        """`db_url` or `folder` when given (`make report --db/--dir`); else PostgreSQL when CALL_RECORDS_DB_URL is
        set, else CALL_RECORDS_DIR."""
        if db_url:
            return cls(db_url=db_url)
        if folder:
            return cls(folder=folder)
        configured = gateway.call_records_db_url.strip()
        return cls(db_url=configured) if configured else cls(folder=gateway.call_records_dir)


def kpis_from(source: RecordSource, period: Period, *, now: float, include_console: bool = False,
              bucket_s: int | None = None) -> KpiResult:
    """Raises NoRecords, ValueError (a URL that is not PostgreSQL) or sqlalchemy's errors (a database that does not
    answer)."""
    if source.db_url:
        return kpis_from_database(source.db_url, period, now=now, include_console=include_console, bucket_s=bucket_s)
    return kpis_from_files(Path(source.folder), period, now=now, include_console=include_console, bucket_s=bucket_s)


def kpis_for(gateway: GatewaySettings, period: Period, *, now: float, include_console: bool = False,
             bucket_s: int | None = None) -> KpiResult:
    """From the gateway's own source (`RecordSource.of`)."""
    return kpis_from(RecordSource.of(gateway), period, now=now, include_console=include_console, bucket_s=bucket_s)


def kpis_from_files(folder: Path, period: Period, *, now: float, include_console: bool = False,
                    bucket_s: int | None = None) -> KpiResult:
    if not folder.is_dir():
        raise NoRecords(f"{folder} does not exist")
    first, last = reading_window(period)
    period_days = _day_files(folder, "calls", first, period.end + LONGEST_CALL_S)
    look_ahead = [path for path in _day_files(folder, "calls", first, last + LONGEST_CALL_S) if path not in period_days]
    records = chain(read_jsonl(period_days), (r for r in read_jsonl(look_ahead) if r is not None))
    calls = _started_within(records, first, last)
    cdrs = read_jsonl(_day_files(folder, "cdr", first, last + LONGEST_CALL_S))
    return compute_kpis(calls, period, now=now, include_console=include_console, cdrs=cdrs, bucket_s=bucket_s)


def kpis_from_database(db_url: str, period: Period, *, now: float, include_console: bool = False,
                       bucket_s: int | None = None) -> KpiResult:
    from bot.record_sinks import KIND_CALLS, KIND_CDR
    from bot.records_db import read_documents, records_engine, tables_exist

    engine = records_engine(db_url)
    try:
        if not tables_exist(engine):
            raise NoRecords("the database has no call-record tables")
        first, last = (datetime.fromtimestamp(when, timezone.utc) for when in reading_window(period))
        calls = read_documents(engine, KIND_CALLS, started_from=first, started_before=last)
        cdrs = read_documents(engine, KIND_CDR, started_from=first, started_before=last)
        return compute_kpis(calls, period, now=now, include_console=include_console, cdrs=list(cdrs),
                            bucket_s=bucket_s)
    finally:
        engine.dispose()


def read_jsonl(paths: list[Path]) -> Iterator[Any]:
    """Each line's JSON value; None for a damaged line (cut by a crash, not JSON), which is not fatal."""
    for path in paths:
        try:
            lines = path.open(encoding="utf-8", errors="replace")
        except FileNotFoundError:  # removed since it was listed (a retention job)
            continue
        with lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except (json.JSONDecodeError, RecursionError):
                    yield None
                except MemoryError:  # one absurd line (a forged record of gigabytes) is one damaged line
                    yield None


def _started_within(records: Iterator[Any], first: float, last: float) -> Iterator[Any]:
    """Records that started in [first, last); anything unreadable goes on, for the KPIs to count as skipped."""
    for record in records:
        started = record.get("started_at") if isinstance(record, dict) else None
        if isinstance(started, (int, float)) and not isinstance(started, bool):
            if not first <= started <= last:
                continue
        yield record


def _day_files(folder: Path, kind: str, first: float, last: float) -> list[Path]:
    """`<kind>-YYYYMMDD.jsonl` of each UTC day from `first`'s to `last`'s that exists."""
    day = datetime.fromtimestamp(first, timezone.utc).date()
    end = datetime.fromtimestamp(last, timezone.utc).date()
    paths = []
    while day <= end:
        path = folder / f"{kind}-{day:%Y%m%d}.jsonl"
        if path.is_file():
            paths.append(path)
        day += timedelta(days=1)
    return paths
