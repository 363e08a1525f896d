"""The KPI dashboard: `GET /dashboard` (the page) and `GET /api/kpis?from=&to=&include_console=&bucket=` (JSON).

The figures are bot/kpis.py's (the one place each KPI is defined; docs/KPIS.md), over the call records of the period:
the JSON Lines files of this host, or PostgreSQL when CALL_RECORDS_DB_URL is set (bot/kpi_sources.py). Reading and
computing a year of records is seconds of CPU in Python, which in a thread would hold the GIL and stall the calls'
audio; so it runs in a worker process (bot/kpi_worker.py, one at a time: `KpiWorker`). While it computes, another
request gets 503 with Retry-After (no queue: a flood of requests costs nothing). A computation over
WORKER_TIMEOUT_S is killed and one over the worker's memory limit stops: a 503 asking for a shorter period (the
host's memory and CPU are never the price of a year's query). Each answer is kept CACHE_TTL_S for the same query:
a reload, a second browser, a client that gave up and asks again get it at once.

Query: `from`, `to` ISO 8601 (bot/kpi_period.py; default the last 7 days), `include_console` (0/1, default 0: the
developers' doors' calls, the text console's and the voice page's, are left out), `bucket` (hour/day/week, default from the period's length). Anything else
wrong gets a 400 `{"error": ...}`; a records database that does not answer a 503.

Who may see it: the consoles' rule (bot/web/access.py): loopback peers only unless CONSOLE_TOKEN is set, then the
token: the page takes `?token=` once and swaps it for the consoles' session cookie; the API takes that session, or
the token as `Authorization: Bearer` (scripts), never in the address (it would end up in logs and history). The
page is static HTML with the project's own script and style sheet (bot/web/static/dashboard.*; charts are SVG
drawn by that script, no CDN), under a Content-Security-Policy allowing nothing but them and fetches to this
origin; every text from the records is set as text, never HTML.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from bot.kpi_period import BadPeriod, parse_period
from bot.kpi_sources import RecordSource
from bot.kpis import BUCKET_DAY_S, BUCKET_HOUR_S, BUCKET_WEEK_S, Period
from bot.web.access import ACCESS_KEY, Refused, console_access
from bot.web.console import BadRequest
from settings import REPO_ROOT, GatewaySettings, Settings

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
DASHBOARD_SETTINGS_KEY: web.AppKey[Settings] = web.AppKey("dashboard_settings", Settings)
DASHBOARD_REQUESTS = Counter("ivr_dashboard_requests_total", "KPI dashboard API requests", ["result"])

DEFAULT_DAYS = 7
CACHE_TTL_S = 30.0
CACHE_ENTRIES = 64
WORKER_TIMEOUT_S = 120.0
RETRY_AFTER_S = 5
MAX_ANSWER_BYTES = 16 * 1024 * 1024
MAX_BUCKETS = 1000
BUCKETS = {"hour": BUCKET_HOUR_S, "day": BUCKET_DAY_S, "week": BUCKET_WEEK_S}
FLAGS = {"": False, "0": False, "false": False, "1": True, "true": True}
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
}
ASSETS = {"dashboard.js": "application/javascript", "dashboard.css": "text/css"}


class Busy(Exception):
    """The worker is computing another request's KPIs."""


class Unreadable(Exception):
    """The worker could not read the records (a database down, a folder unreadable)."""


class TooLarge(Exception):
    """The period holds more calls than one computation may take (the worker's memory or time limit)."""


class KpiWorker:
    """The KPIs in a child process (bot/kpi_worker.py), one computation at a time, each answer cached briefly by its
    query. `clock` lets tests step the cache's time."""

    def __init__(self, gateway: GatewaySettings, *, timeout_s: float = WORKER_TIMEOUT_S, ttl_s: float = CACHE_TTL_S,
                 clock=time.monotonic) -> None:
        self._source = dataclasses.asdict(RecordSource.of(gateway))
        self._timeout_s = timeout_s
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: OrderedDict[tuple, tuple[float, dict[str, Any]]] = OrderedDict()
        self._running = False
        self.last_peak_rss_kb: int | None = None

    @property
    def busy(self) -> bool:
        return self._running

    def cached(self, key: tuple) -> dict[str, Any] | None:
        entry = self._cache.get(key)
        if entry is None or entry[0] <= self._clock():
            self._cache.pop(key, None)
            return None
        return entry[1]

    async def kpis(self, key: tuple, period: Period, *, now: float, include_console: bool,
                   bucket_s: int | None) -> dict[str, Any]:
        """The KPIs as JSON: from the cache, else computed now. Raises Busy, TooLarge or Unreadable."""
        hit = self.cached(key)
        if hit is not None:
            return hit
        if self._running:
            raise Busy()
        self._running = True
        try:
            answer = await self._run({"source": self._source, "start": period.start, "end": period.end, "now": now,
                                      "include_console": include_console, "bucket_s": bucket_s})
        finally:
            self._running = False
        if answer.get("error") == "too_large":
            raise TooLarge()
        if "kpis" not in answer:
            raise Unreadable(str(answer.get("kind") or answer.get("error") or "no answer"))
        self.last_peak_rss_kb = answer.get("peak_rss_kb")
        self._cache[key] = (self._clock() + self._ttl_s, answer["kpis"])
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return answer["kpis"]

    async def _run(self, request: dict[str, Any]) -> dict[str, Any]:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.kpi_worker", cwd=str(REPO_ROOT), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, limit=MAX_ANSWER_BYTES)
        try:
            out, _ = await asyncio.wait_for(child.communicate(json.dumps(request).encode()), self._timeout_s)
        except asyncio.TimeoutError:
            raise TooLarge() from None
        finally:  # a timeout, or the gateway shutting down: the child never outlives the request
            if child.returncode is None:
                child.kill()
                await child.wait()
        try:
            answer = json.loads(out)
        except ValueError:
            raise Unreadable(f"the worker ended with {child.returncode} and no answer") from None
        return answer if isinstance(answer, dict) else {}


WORKER_KEY: web.AppKey[KpiWorker] = web.AppKey("dashboard_worker", KpiWorker)


def add_dashboard_routes(app: web.Application, settings: Settings) -> None:
    app[DASHBOARD_SETTINGS_KEY] = settings
    app[WORKER_KEY] = KpiWorker(settings.gateway)
    console_access(app, settings.gateway)
    app.router.add_get("/dashboard", dashboard_page)
    app.router.add_get("/dashboard/static/{name}", dashboard_asset)
    app.router.add_get("/api/kpis", kpis_api)


async def dashboard_page(request: web.Request) -> web.StreamResponse:
    return await request.app[ACCESS_KEY].page(
        request, lambda: web.FileResponse(STATIC_DIR / "dashboard.html", headers={**HEADERS,
                                                                                   "Content-Type": "text/html"}))


async def dashboard_asset(request: web.Request) -> web.StreamResponse:
    """The page's own script and style sheet (nothing else from the folder: no listing, no other file)."""
    request.app[ACCESS_KEY].check_peer(request)
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC_DIR / name, headers={**HEADERS, "Cache-Control": "no-cache",
                                                        "Content-Type": ASSETS[name]})


async def kpis_api(request: web.Request) -> web.Response:
    _check_access(request)
    now = time.time()
    try:
        period, include_console, bucket_s = _query(request, now)
    except BadRequest:
        DASHBOARD_REQUESTS.labels("bad_request").inc()
        raise
    key = tuple(request.query.get(name, "").strip().lower() for name in ("from", "to", "include_console", "bucket"))
    try:
        kpis = await request.app[WORKER_KEY].kpis(key, period, now=now, include_console=include_console,
                                                  bucket_s=bucket_s)
    except Busy:
        DASHBOARD_REQUESTS.labels("busy").inc()
        return web.json_response({"error": "the KPIs of another request are being computed; try again shortly"},
                                 status=503, headers={**HEADERS, "Retry-After": str(RETRY_AFTER_S)})
    except TooLarge:
        DASHBOARD_REQUESTS.labels("too_large").inc()
        return web.json_response({"error": "the period holds too many calls to compute at once; choose a shorter "
                                           "period"}, status=503, headers=HEADERS)
    except Unreadable as error:  # a records database that is down or wrong: say so, never a stack trace
        DASHBOARD_REQUESTS.labels("unavailable").inc()
        log.warning("KPIs not computed: call records unreadable (%s)", error)
        return web.json_response({"error": "the call records cannot be read right now; see the gateway's log"},
                                 status=503, headers=HEADERS)
    DASHBOARD_REQUESTS.labels("ok").inc()
    return web.json_response(kpis, headers=HEADERS)


def _check_access(request: web.Request) -> None:
    try:
        request.app[ACCESS_KEY].check_session_or_bearer(
            request, "the KPI API needs the console token (CONSOLE_TOKEN): open /dashboard?token=… "
                     "or send Authorization: Bearer")
    except Refused:
        DASHBOARD_REQUESTS.labels("refused").inc()
        raise


def _query(request: web.Request, now: float) -> tuple[Period, bool, int | None]:
    query = request.query
    try:
        period = parse_period(query.get("from", ""), query.get("to", ""), now=now, default_days=DEFAULT_DAYS)
    except BadPeriod as error:
        raise BadRequest(str(error)) from None
    flag = query.get("include_console", "").strip().lower()
    if flag not in FLAGS:
        raise BadRequest("include_console must be 0 or 1")
    bucket = query.get("bucket", "").strip().lower()
    if bucket and bucket not in BUCKETS:
        raise BadRequest("bucket must be hour, day or week")
    bucket_s = BUCKETS.get(bucket)
    if bucket_s and (period.end - period.start) / bucket_s > MAX_BUCKETS:
        raise BadRequest(f"too many {bucket}s in the period for one chart (at most {MAX_BUCKETS})")
    return period, FLAGS[flag], bucket_s
