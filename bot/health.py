"""Health of the parts the gateway depends on: the Rasa server, the action server and the bank store.

`/healthz` is green only when all three answer. Each probe has a short timeout and never raises:
a dead part becomes a `PartHealth(ok=False, detail=...)` naming what went wrong.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import sqlalchemy
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from settings import Settings

PARTS = ("rasa", "action_server", "bank_store")


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
    """Probes the three parts concurrently. One per gateway process: it keeps the bank-store engine."""

    def __init__(self, settings: Settings, session: aiohttp.ClientSession | None = None) -> None:
        self._settings = settings
        self._timeout_s = settings.gateway.health_timeout_s
        self._session = session
        self._owns_session = session is None
        self._engine: Engine | None = None

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        if self._engine is not None:
            self._engine.dispose()

    async def check(self) -> HealthReport:
        rasa_url = self._settings.rasa.url.rstrip("/")
        actions_url = action_server_base_url(self._settings.actions.url)
        probes = (
            self._timed("rasa", lambda: self._http_ok(f"{rasa_url}/")),
            self._timed("action_server", lambda: self._http_ok(f"{actions_url}/health")),
            self._timed("bank_store", self._bank_store_ok),
        )
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

    async def _bank_store_ok(self) -> str:
        engine = self._bank_engine()
        # SQLAlchemy is synchronous: keep the event loop free while the database answers.
        await asyncio.to_thread(_select_one, engine)
        return "SELECT 1 ok"

    def _bank_engine(self) -> Engine:
        if self._engine is None:
            self._engine = _connect_only_engine(self._settings.bank.db_url, self._timeout_s)
        return self._engine


def _connect_only_engine(db_url: str, timeout_s: float) -> Engine:
    """An engine that checks the store without creating it: SQLite would silently create a missing file."""
    try:
        url = make_url(db_url)
    except ArgumentError as exc:
        raise ValueError(f"BANK_DB_URL is not a database URL: {exc}") from exc
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:"):
            raise ValueError("the bank store is an in-memory SQLite database, which no other process can reach")
        if not Path(database).is_file():
            raise FileNotFoundError(f"SQLite file {database} does not exist (has the action server seeded it?)")
        return sqlalchemy.create_engine(url, connect_args={"timeout": timeout_s}, poolclass=sqlalchemy.pool.NullPool)
    return sqlalchemy.create_engine(url, pool_pre_ping=True, pool_size=1, max_overflow=0,
                                    connect_args={"connect_timeout": max(1, int(timeout_s))})


def _select_one(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT 1")).scalar_one()


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]
