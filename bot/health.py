"""Health of the parts the gateway depends on.

- `rasa`, `action_server`: HTTP GET;
- `bank_store` (BANK_DB_URL) and `tracker_store` (TRACKER_DB_URL, Rasa's conversations): connect + `SELECT 1`;
- `lock_store`, only when REDIS_HOST is set: Redis `PING` at REDIS_HOST:REDIS_PORT (Rasa's lock store);
- `call_records_db`, only when CALL_RECORDS_DB_URL is set: connect + `SELECT 1`; the detail also counts the records
  waiting in this gateway's local spool (bot/records_db.py).

`/healthz` is green only when every part checked answers. Each probe has a short timeout (HEALTH_TIMEOUT_S) and
never raises: a dead part becomes a `PartHealth(ok=False, detail=...)` naming what went wrong. Database URLs are read
as the gateway's venv opens them (bot/databases.py: the Rasa venv's `postgresql://` is psycopg 3 here).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import redis.asyncio as aioredis
import sqlalchemy
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.engine import Engine

from bot.databases import gateway_db_url
from settings import Settings

PARTS = ("rasa", "action_server", "bank_store", "tracker_store", "lock_store", "call_records_db")


@dataclass(frozen=True)
class PartHealth:
    name: str
    ok: bool
    detail: str
    latency_ms: float


@dataclass(frozen=True)
class HealthReport:
    parts: tuple[PartHealth, ...]

    @property
    def ok(self) -> bool:
        return all(part.ok for part in self.parts)

    @property
    def failing(self) -> list[str]:
        return [part.name for part in self.parts if not part.ok]

    def as_json(self) -> dict:
        return {
            "status": "ok" if self.ok else "unavailable",
            "failing": self.failing,
            "parts": {part.name: {k: v for k, v in asdict(part).items() if k != "name"} for part in self.parts},
        }


def action_server_base_url(webhook_url: str) -> str:
    """The action server's root from its webhook URL (http://host:5055/webhook -> http://host:5055)."""
    parts = urlsplit(webhook_url)
    path = parts.path[: -len("/webhook")] if parts.path.endswith("/webhook") else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path.rstrip("/"), "", ""))


class HealthChecker:
    """Probes the parts concurrently. One per gateway process: it keeps the database engines."""

    def __init__(self, settings: Settings, session: aiohttp.ClientSession | None = None) -> None:
        self._settings = settings
        self._timeout_s = settings.gateway.health_timeout_s
        self._session = session
        self._owns_session = session is None
        self._engines: dict[str, Engine] = {}

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()

    async def check(self) -> HealthReport:
        settings = self._settings
        rasa_url = settings.rasa.url.rstrip("/")
        actions_url = action_server_base_url(settings.actions.url)
        probes = [
            self._timed("rasa", lambda: self._http_ok(f"{rasa_url}/")),
            self._timed("action_server", lambda: self._http_ok(f"{actions_url}/health")),
            self._timed("bank_store", lambda: self._select_one("bank_store", lambda: _connect_only_engine(
                settings.bank.db_url, self._timeout_s, "BANK_DB_URL", "has the action server seeded it?"))),
            self._timed("tracker_store", lambda: self._select_one("tracker_store", lambda: _connect_only_engine(
                settings.rasa.tracker_db_url, self._timeout_s, "TRACKER_DB_URL", "has Rasa started?"))),
        ]
        if settings.rasa.redis_host:
            probes.append(self._timed("lock_store", self._lock_store_ok))
        if settings.gateway.call_records_db_url.strip():
            probes.append(self._timed("call_records_db", self._call_records_db_ok))
        return HealthReport(parts=tuple(await asyncio.gather(*probes)))

    async def _timed(self, name: str, probe: Callable[[], Awaitable[str]]) -> PartHealth:
        started = time.perf_counter()
        try:
            detail = await asyncio.wait_for(probe(), timeout=self._timeout_s)
            ok = True
        except asyncio.TimeoutError:
            ok, detail = False, f"no answer within {self._timeout_s:g} s"
        except Exception as exc:  # a probe must never take the health endpoint down with it
            ok, detail = False, _describe(exc)
        return PartHealth(name, ok, detail, round((time.perf_counter() - started) * 1000, 1))

    async def _http_ok(self, url: str) -> str:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=self._timeout_s)) as resp:
            if resp.status >= 400:
                raise RuntimeError(f"HTTP {resp.status} from {url}")
            return f"HTTP {resp.status}"

    async def _select_one(self, part: str, make_engine: Callable[[], Engine]) -> str:
        engine = self._engines.get(part)
        if engine is None:
            engine = self._engines[part] = make_engine()
        # SQLAlchemy is synchronous: keep the event loop free while the database answers.
        await asyncio.to_thread(_select_one, engine)
        return "SELECT 1 ok"

    async def _lock_store_ok(self) -> str:
        """A Redis PING on a connection of its own (no pool to go stale across a Redis restart), no retries: the
        probe's timeout is the whole budget."""
        client = aioredis.Redis(host=self._settings.rasa.redis_host, port=self._settings.rasa.redis_port,
                                socket_timeout=self._timeout_s, socket_connect_timeout=self._timeout_s,
                                retry=Retry(NoBackoff(), 0))
        try:
            if not await client.ping():
                raise RuntimeError("PING not answered with PONG")
        finally:
            await client.aclose()
        return "PING ok"

    async def _call_records_db_ok(self) -> str:
        from bot.records_db import DatabaseSink, records_engine, spool_backlog

        detail = await self._select_one("call_records_db", lambda: records_engine(
            self._settings.gateway.call_records_db_url, connect_timeout_s=self._timeout_s))
        spool = Path(self._settings.gateway.call_records_dir) / DatabaseSink.SPOOL_FOLDER
        waiting = await asyncio.to_thread(spool_backlog, spool)
        return f"{detail}; {waiting} records waiting in the local spool" if waiting else detail


def _connect_only_engine(db_url: str, timeout_s: float, setting: str, missing_hint: str) -> Engine:
    """An engine that checks a store without creating it: SQLite would silently create a missing file."""
    url = gateway_db_url(db_url, setting)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:"):
            raise ValueError(f"{setting} is an in-memory SQLite database, which no other process can reach")
        if not Path(database).is_file():
            raise FileNotFoundError(f"SQLite file {database} does not exist ({missing_hint})")
        return sqlalchemy.create_engine(url, connect_args={"timeout": timeout_s}, poolclass=sqlalchemy.pool.NullPool)
    return sqlalchemy.create_engine(url, pool_pre_ping=True, pool_size=1, max_overflow=0,
                                    connect_args={"connect_timeout": max(1, int(timeout_s))})


def _select_one(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT 1")).scalar_one()


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]
