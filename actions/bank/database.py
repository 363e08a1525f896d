"""Engine construction for the bank store: SQLite by default (file or memory), any SQLAlchemy URL otherwise.

SQLite needs two fixes to be a safe bank store: pysqlite's own transaction handling is disabled so that every
writing transaction starts with `BEGIN IMMEDIATE` (the reads and writes of one request are serialised, so a check
followed by an update cannot race another process), and foreign keys are switched on. Read-only transactions
(engines from `read_only`) start with a plain `BEGIN`, so readers do not queue behind each other.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_TIMEOUT_S = 5  # writes hold the lock for milliseconds; waiting longer only hides a stuck writer
CONNECT_TIMEOUT_S = 3
READ_ONLY_OPTION = "bank_read_only"

log = logging.getLogger(__name__)


def build_engine(db_url: str) -> Engine:
    """An engine for `db_url`; for a SQLite file its parent folder is created. Never connects, so never fails on a
    store that is down: that shows at the first transaction, as BankUnavailable."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    options: dict = {}
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        # a dead database must fail within the action server's time budget, not hang the caller
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return create_engine(url, future=True, pool_pre_ping=True, **options)


def read_only(engine: Engine) -> Engine:
    """The same engine (same pool), marked for transactions that only read."""
    return engine.execution_options(**{READ_ONLY_OPTION: True})


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:")
    options: dict = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}}
    if in_memory:
        options["poolclass"] = StaticPool  # one shared connection, or every checkout would see an empty database
    else:
        _make_folder_of(Path(database).expanduser())
    engine = create_engine(url, future=True, **options)
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _make_folder_of(database: Path) -> None:
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # not fatal here: opening the file fails next, and the store reports itself unavailable like any dead store
        log.error("bank store folder %s cannot be created: %s", database.parent, exc.strerror or type(exc).__name__)


def _on_sqlite_connect(dbapi_connection, _connection_record) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, see _on_sqlite_begin
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _on_sqlite_begin(connection) -> None:
    reading = connection.get_execution_options().get(READ_ONLY_OPTION, False)
    connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")
