"""The one store every bank domain works on: the engine, one transaction per call, schema setup and seed, health.

Also the conventions of what is stored: datetimes are naive and in bank time (`bank_now`), and the rows a caller
is told about get a digits-only reference number (`reference_number`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, time, timedelta, timezone

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError
from sqlalchemy.orm import Session

import settings as app_settings
from actions.bank.database import build_engine, read_only
from actions.bank.errors import BankUnavailable
from actions.bank.models import Base, Customer
from actions.bank.seed import seed_bank

log = logging.getLogger(__name__)

BANK_TZ = timezone(timedelta(hours=8), "China Standard Time")  # the bank day; China has no daylight saving
# First digit of a reference number, so a reference read back on the phone tells what it is for.
REFERENCE_PREFIX = {"card_loss": "1", "transfer": "2", "repayment": "3", "work_order": "8"}
# PostgreSQL advisory lock taken while the bank's tables are made and seeded (any fixed number; "bank" in ASCII).
SCHEMA_LOCK_KEY = 0x62616E6B


def bank_now(now: datetime | None = None) -> datetime:
    """`now` (default: the current time) as a naive datetime in bank time, the way the database stores it."""
    if now is None:
        now = datetime.now(BANK_TZ)
    if now.tzinfo is not None:
        now = now.astimezone(BANK_TZ).replace(tzinfo=None)
    return now


def end_of_bank_day(now: datetime) -> datetime:
    """Midnight after `now` (bank time): when a day's limits and lock-outs end."""
    return datetime.combine(now.date() + timedelta(days=1), time.min)


def reference_number(kind: str, created_at: datetime, row_id: int) -> str:
    """A digits-only reference: kind digit + yymmdd + row id (at least 5 digits), e.g. "1261126" + "00042"."""
    return f"{REFERENCE_PREFIX[kind]}{created_at:%y%m%d}{row_id:05d}"


class BankStore:
    """One database for all the bank domains. Thread-safe; the tables are created and seeded at first use."""

    def __init__(self, db_url: str, config: app_settings.BankSettings) -> None:
        self.config = config
        self._engine = build_engine(db_url)
        self._read_engine = read_only(self._engine)
        self._ready = False
        self._ready_lock = threading.Lock()

    @contextmanager
    def transaction(self, read_only: bool = False) -> Iterator[Session]:
        """One database transaction; database failures surface as BankUnavailable (IntegrityError passes).

        Read-only transactions do not queue behind writers (see `database.read_only`).
        """
        self._ensure_ready()
        try:
            with Session(self._read_engine if read_only else self._engine, future=True) as session, session.begin():
                yield session
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            log.error("bank store failed: %s", exc.__class__.__name__)
            raise BankUnavailable("the bank database is not available") from exc

    def prepare(self) -> bool:
        """Create and seed the store now rather than at the first request; False (logged) if it is down."""
        try:
            self._ensure_ready()
            return True
        except BankUnavailable:
            return False

    def ping(self) -> bool:
        """Whether the database answers `SELECT 1`; never raises."""
        try:
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError as exc:
            log.warning("bank store does not answer: %s", type(exc).__name__)
            return False

    def reset(self) -> None:
        """Drop every bank table and seed again, e.g. after a demo reported the test cards lost. Sandbox only.

        One transaction under the schema lock: an action server starting meanwhile sees the old bank or the new one.
        """
        with self._ready_lock:
            self._ready = False
            try:
                self._create_and_seed(drop_first=True)
            except SQLAlchemyError as exc:
                raise BankUnavailable("the bank database is not available") from exc
            self._ready = True
        log.warning("the sandbox bank was reset to its seed data")

    def close(self) -> None:
        """Release the database connections (tests, shutdown)."""
        self._engine.dispose()

    def _ensure_ready(self) -> None:
        """Create the tables and seed an empty bank, once per process (and safely if processes race)."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            try:
                try:
                    self._create_and_seed()
                except (IntegrityError, ProgrammingError):
                    # Engines without a schema lock (neither PostgreSQL nor SQLite): another process created or
                    # seeded at the same moment; check again.
                    self._create_and_seed()
            except SQLAlchemyError as exc:
                raise BankUnavailable("the bank database is not available") from exc
            self._ready = True

    def _create_and_seed(self, drop_first: bool = False) -> None:
        """Tables and seed in one transaction, under the schema lock: action servers starting together on one
        PostgreSQL (whose DDL is transactional) take turns, so the later ones find the bank made and seeded
        instead of failing on a half-made one. SQLite's writing transaction (BEGIN IMMEDIATE) is the lock there."""
        with Session(self._engine, future=True) as session, session.begin():
            connection = session.connection()
            if connection.dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            if drop_first:
                Base.metadata.drop_all(connection)
            Base.metadata.create_all(connection)
            if session.scalars(select(Customer.id).limit(1)).first() is None:
                seed_bank(session, self.config.pin_salt_rounds)
                log.info("seeded the sandbox bank")
