"""The KPI computation in a process of its own: the dashboard's figures never run on the gateway's event loop.

Reading a year of call records and computing the KPIs is CPU work in Python: in a thread it holds the GIL and
stalls every call's audio for seconds. So the dashboard (bot/web/dashboard.py `KpiWorker`) starts
`python -m bot.kpi_worker` for each computation (fork+exec: a fresh interpreter, never a fork of the gateway's
threads), writes one request as JSON on its stdin and reads one answer as JSON on its stdout:

    request: {"source": {"db_url": "postgresql+psycopg://...", "folder": ""}} (bot/kpi_sources.py RecordSource; on
             stdin, so a password never shows in `ps`), plus "start", "end" (epoch seconds), "now",
             "include_console", "bucket_s"
    answer:  {"kpis": <KpiResult.as_json()>, "peak_rss_kb": <the worker's peak memory>}
             {"error": "unreadable", "kind": "OperationalError"}    (a database down, a folder unreadable)
             {"error": "too_large"}     (the period's calls need more than MAX_MEMORY_BYTES: a shorter period)

This module imports the KPI code and its sources only: nothing of pipecat or the voice layer (tests check it), so
the worker starts in a fraction of a second and holds only the records' reduced fields.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

from bot.kpi_sources import NoRecords, RecordSource, kpis_from
from bot.kpis import KpiResult, Period, compute_kpis

MAX_REQUEST_BYTES = 64 * 1024
# The worker's address space: about 1 KB of reduced fields per call, so some 1.5 million calls (75 days of a
# 20 000-call day). Beyond, MemoryError: a clear answer, never the host's memory.
MAX_MEMORY_BYTES = 2 * 1024 ** 3


def compute(request: dict[str, Any]) -> KpiResult:
    """The KPIs a request asks for; a source with no records yet is a quiet period. Raises what the source raises."""
    period = Period(float(request["start"]), float(request["end"]))
    options = {"now": float(request["now"]), "include_console": request.get("include_console") is True,
               "bucket_s": request.get("bucket_s")}
    source = request["source"]
    try:
        return kpis_from(RecordSource(db_url=str(source.get("db_url") or ""), folder=str(source.get("folder") or "")),
                         period, **options)
    except NoRecords:
        return compute_kpis([], period, **options)


def answer(request: dict[str, Any]) -> dict[str, Any]:
    try:
        result = compute(request).as_json()
    except MemoryError:
        return {"error": "too_large"}
    except Exception as error:  # noqa: BLE001 - the gateway logs the kind; the message may hold a URL's password
        return {"error": "unreadable", "kind": type(error).__name__}
    return {"kpis": result, "peak_rss_kb": peak_rss_kb()}


def peak_rss_kb() -> int | None:
    """This process's peak resident memory (VmHWM: unlike getrusage's ru_maxrss, not inherited from the gateway
    across fork+exec); None where /proc is not Linux's."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def main() -> int:
    try:
        resource.setrlimit(resource.RLIMIT_AS, (MAX_MEMORY_BYTES, MAX_MEMORY_BYTES))
    except (ValueError, OSError):  # a lower hard limit already: that one holds
        pass
    raw = sys.stdin.buffer.read(MAX_REQUEST_BYTES + 1)
    if len(raw) > MAX_REQUEST_BYTES:
        print(json.dumps({"error": "bad_request", "kind": "too large"}))
        return 2
    print(json.dumps(answer(json.loads(raw)), ensure_ascii=False, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
