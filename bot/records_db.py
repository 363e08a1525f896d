"""Call records and CDRs in PostgreSQL, shared by every gateway of a cluster (CALL_RECORDS_DB_URL).

Two tables, created if missing (SQLAlchemy Core), with the same columns: `call_records` (the voice loop's records,
bot/call_records.py) and `call_detail_records` (the doors' CDRs, bot/cdr.py).

- `id`: the document's own id (UUID hex), the primary key: a batch replayed after an outage is not stored twice;
- `call_id`, `door`, `caller`, `outcome` (indexed), copied from the document, at most 200 characters each (the
  document keeps the whole value): `caller` is the masked number the document holds (`caller_number` of a call
  record, `caller` of a CDR), never more; a call record's `door` comes from its call id;
- `started_at`, `ended_at` (`timestamptz`, indexed); `door` is indexed with `started_at`, as a dashboard asks;
- `recorded_at`: when the database took the document;
- `document` (`JSONB`): the whole document as the JSON Lines file holds it, except what PostgreSQL cannot hold: NUL
  characters (they read `\\x00`) and NaN/Infinity (null).

`DatabaseSink` writes them (its docstring says how nothing is lost while PostgreSQL is down); `read_documents`
reads them back for `make report` and the KPI dashboard (a period at a time, by `started_at`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import psycopg
import sqlalchemy
from sqlalchemy import Column, DateTime, Index, MetaData, String, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from bot.call_ids import door_of
from bot.databases import gateway_db_url, is_postgres
from bot.record_sinks import KIND_CALLS, KIND_CDR, KINDS, RecordSink, postgres_document

log = logging.getLogger(__name__)

MAX_COLUMN_CHARS = 200  # a b-tree entry must stay far below PostgreSQL's ~2.7 kB limit; the document has it all
CONNECT_TIMEOUT_S = 3
STATEMENT_TIMEOUT_MS = 60_000
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
IDLE_POLL_S = 5.0  # a spool left by another process sharing the folder is picked up within this
BATCH_ROWS = 500
BATCH_CHARS = 8_000_000
_SCHEMA_LOCK_KEY = 0x1C0_CA11  # pg_advisory_xact_lock: two gateways starting together create the tables once

metadata = MetaData()


def _table(name: str) -> Table:
    return Table(
        name, metadata,
        Column("id", String(32), primary_key=True),
        Column("call_id", Text, index=True),
        Column("door", Text),  # indexed with started_at (below): a door alone or a door over a period
        Column("started_at", DateTime(timezone=True), index=True),
        Column("ended_at", DateTime(timezone=True), index=True),
        Column("caller", Text, index=True),
        Column("outcome", Text, index=True),
        Column("recorded_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
        Column("document", JSONB, nullable=False),
    )


TABLES: dict[str, Table] = {KIND_CALLS: _table("call_records"), KIND_CDR: _table("call_detail_records")}
Index("ix_call_detail_records_door_started_at", TABLES[KIND_CDR].c.door, TABLES[KIND_CDR].c.started_at)
Index("ix_call_records_door_started_at", TABLES[KIND_CALLS].c.door, TABLES[KIND_CALLS].c.started_at)


def records_engine(db_url: str, *, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> Engine:
    """An engine on the records database (never connects by itself). ValueError unless it is PostgreSQL."""
    url = gateway_db_url(db_url, "CALL_RECORDS_DB_URL")
    if not is_postgres(url):
        raise ValueError(f"CALL_RECORDS_DB_URL must be a PostgreSQL URL (postgresql+psycopg://...), not "
                         f"{url.get_backend_name()}: leave it empty for JSON Lines files")
    options = f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"
    return sqlalchemy.create_engine(url, pool_pre_ping=True, pool_size=1, max_overflow=1,
                                    connect_args={"connect_timeout": max(1, round(connect_timeout_s)),
                                                  "options": options})


def create_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
        metadata.create_all(conn, checkfirst=True)


def row_for(kind: str, record_id: str, document: dict[str, Any]) -> dict[str, Any]:
    """The table row of a (PostgreSQL-clean) document: its indexed columns and the document itself."""
    call_id = _column_text(document.get("call_id"))
    if kind == KIND_CALLS:
        door = door_of(call_id) if call_id else None
        caller = document.get("caller_number")
        started, ended = _from_epoch(document.get("started_at")), _from_epoch(document.get("ended_at"))
    else:
        door = document.get("door")
        caller = document.get("caller")
        started, ended = _from_iso(document.get("started_at")), _from_iso(document.get("ended_at"))
    return {"id": record_id, "call_id": call_id, "door": _column_text(door), "started_at": started,
            "ended_at": ended, "caller": _column_text(caller), "outcome": _column_text(document.get("outcome")),
            "document": document}


def read_documents(engine: Engine, kind: str, *, started_from: datetime | None = None,
                   started_before: datetime | None = None) -> Iterator[dict[str, Any]]:
    """The stored documents of `kind`, in the order the calls ended, streamed (a cluster's year fits no list);
    with `started_from` / `started_before`, only calls that started in [from, before) (the dashboard's period)."""
    table = TABLES[kind]
    query = sqlalchemy.select(table.c.document).order_by(table.c.ended_at, table.c.id)
    if started_from is not None:
        query = query.where(table.c.started_at >= started_from)
    if started_before is not None:
        query = query.where(table.c.started_at < started_before)
    with engine.connect() as conn:
        for (document,) in conn.execution_options(stream_results=True, yield_per=1000).execute(query):
            if isinstance(document, dict):
                yield document


def tables_exist(engine: Engine) -> bool:
    inspector = sqlalchemy.inspect(engine)
    return all(inspector.has_table(table.name) for table in TABLES.values())


def _column_text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)[:MAX_COLUMN_CHARS]


def _from_epoch(value: Any) -> datetime | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _from_iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class Spool:
    """JSON lines waiting for the database, in one local folder.

    `pending-<kind>.jsonl` is appended to; the worker renames it to `claimed-<kind>-<uuid>.jsonl` before
    inserting it and deletes that once the database has every line. Appends and renames hold an flock on
    `.lock`, so processes sharing the folder never lose a line between them; a claimed file left by a process that
    died is picked up by whichever sink looks next (ids make that harmless). `rejected-<kind>.jsonl` keeps the
    documents the database refused, for a person to look at. An append cut short (a full disk) leaves part of a line
    with no newline; the next append starts a new line first, so only the cut line is rejected."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    def append(self, kind: str, line: str) -> Path:
        path = self.directory / f"pending-{kind}.jsonl"
        with self._locked():
            _append_line(path, line)
        return path

    def claim(self) -> list[tuple[str, Path]]:
        """Every spool file now waiting: the pending ones renamed to claimed files, and claimed ones left over."""
        if not self.directory.is_dir():
            return []
        with self._locked():
            for kind in KINDS:
                pending = self.directory / f"pending-{kind}.jsonl"
                if pending.exists():
                    # a unique name: a rename onto another process's claimed file would replace it
                    pending.rename(self.directory / f"claimed-{kind}-{uuid.uuid4().hex}.jsonl")
        claimed = []
        for path in sorted(self.directory.glob("claimed-*.jsonl"), key=_mtime):
            kind = path.name.split("-")[1]
            if kind in KINDS:
                claimed.append((kind, path))
        return claimed

    def reject(self, kind: str, line: str, reason: str) -> None:
        entry = json.dumps({"reason": reason[:500], "line": line}, ensure_ascii=False)
        with self._locked():
            _append_line(self.directory / f"rejected-{kind}.jsonl", entry)

    def _locked(self):
        return _FolderLock(self.directory, self._lock)


def _append_line(path: Path, line: str) -> None:
    """`line` as a line of its own at the end of `path`. An append cut short (the disk full, a crash) leaves a part
    of a line with no newline: the next line starts on a new line, so the cut one is rejected alone and the good
    one after it is not joined onto it and rejected with it. The caller holds the folder's lock."""
    data = (line + "\n").encode("utf-8")
    with path.open("a+b") as out:
        if out.seek(0, os.SEEK_END) > 0:
            out.seek(-1, os.SEEK_END)
            if out.read(1) != b"\n":
                data = b"\n" + data
        out.write(data)  # "a": the write goes to the end whatever the position


def spool_backlog(directory: Path) -> int:
    """Documents waiting in a spool folder (pending and claimed lines)."""
    waiting = 0
    if not directory.is_dir():
        return 0
    for path in [*directory.glob("pending-*.jsonl"), *directory.glob("claimed-*.jsonl")]:
        try:
            with path.open("rb") as data:
                waiting += sum(chunk.count(b"\n") for chunk in iter(lambda: data.read(1 << 20), b""))
        except FileNotFoundError:  # claimed and inserted meanwhile
            continue
    return waiting


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


class _FolderLock:
    def __init__(self, directory: Path, lock: threading.Lock) -> None:
        self._directory, self._lock, self._fd = directory, lock, -1

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self._directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            if self._fd >= 0:
                os.close(self._fd)
            self._lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            os.close(self._fd)  # releases the flock
        finally:
            self._lock.release()


class _DatabaseDown(Exception):
    """The database did not answer: the documents stay where they are and the worker tries again later."""


class DatabaseSink(RecordSink):
    """Call records and CDRs into PostgreSQL, through a local spool, without ever making a call wait or fail.

    How nothing is lost (spool first, then retry):
    - `write` appends the document, with an id of its own, to the local spool `<CALL_RECORDS_DIR>/db-spool/`
      (`pending-calls.jsonl`, `pending-cdr.jsonl`): the one local append the JSON Lines sink costs too. It never
      waits for the database and never raises.
    - One worker thread moves the spool into PostgreSQL in batches (`INSERT ... ON CONFLICT (id) DO NOTHING`) and
      deletes each spool file once the database has all of it.
    - While the database is down or restarting, documents stay in the spool and the worker retries, 0.5 s at first,
      doubling up to 30 s (a `flush` retries at once). A gateway that stopped with documents spooled sends them at
      its next start, so they also survive a gateway restart or crash.
    - A document whose values the database refuses as such (none should: documents are cleaned for PostgreSQL first)
      goes to `db-spool/rejected-<kind>.jsonl` with the reason and is logged at ERROR, so one bad document cannot
      hold up the rest. Any other refusal (tables dropped, rights missing) is the database's state, retried like an
      outage.
    - Only when the spool itself cannot be written (a full disk) is a document kept in memory for the worker: it
      still reaches a live database, but would be lost with the process (logged at ERROR).
    """

    SPOOL_FOLDER = "db-spool"

    def __init__(self, db_url: str, spool_dir: str | os.PathLike[str], *,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.engine = records_engine(db_url, connect_timeout_s=connect_timeout_s)
        self.spool = Spool(Path(spool_dir))
        self._memory: list[tuple[str, str]] = []  # (kind, line) the spool could not take
        self._state = threading.Condition()
        self._written = 0  # documents taken by write()
        self._settled = -1  # every document up to this count is in the database
        self._work = threading.Event()  # something was written
        self._kick = threading.Event()  # try now, even while backing off (flush, close)
        self._closing = False
        self._schema_ready = False
        self._down_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="call-records-db", daemon=True)
        self._work.set()  # a spool left by an earlier run goes first
        self._thread.start()

    def write(self, kind: str, document: dict[str, Any], *, call_id: str, when: float) -> None:
        try:
            line = json.dumps({"id": uuid.uuid4().hex, "document": postgres_document(document)},
                              ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as error:  # not JSON at all: a bug upstream, but never the call's problem
            log.error("call=%s %s document not serialisable, not stored: %s", call_id, kind, error)
            return None
        try:
            self.spool.append(kind, line)
        except Exception as error:  # OSError (a full disk) above all; whatever it is, the call must not see it
            log.error("call=%s %s document not spooled (%s): kept in memory until the database takes it",
                      call_id, kind, error)
            with self._state:
                self._memory.append((kind, line))
        with self._state:
            self._written += 1
        self._work.set()
        return None

    def flush(self, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._state:
            target = self._written
        self._kick.set()
        self._work.set()
        with self._state:
            while self._settled < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._state.wait(min(remaining, 0.5))
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        self._closing = True
        self._kick.set()
        self._work.set()
        self._thread.join(timeout_s)
        with self._state:
            left = list(self._memory)
        if left:
            log.error("%d call documents neither spooled nor in the database at close: lost", len(left))
        self.engine.dispose()

    @property
    def database_down(self) -> bool:
        return self._down_since is not None

    # The worker thread.

    def _run(self) -> None:
        backoff = 0.0
        while True:
            if backoff:
                self._kick.wait(backoff)
            else:
                self._work.wait(IDLE_POLL_S)
            closing = self._closing
            self._work.clear()
            self._kick.clear()
            with self._state:
                target = self._written
            try:
                done = self._move_spool()
            except Exception:  # the worker must outlive anything: a bug here would silently stop the records
                log.exception("call-records worker: unexpected error; the spool is kept and retried")
                done = False
            if done:
                backoff = 0.0
                with self._state:
                    self._settled = max(self._settled, target)
                    self._state.notify_all()
            else:
                backoff = min(max(backoff * 2, RETRY_FIRST_S), RETRY_MAX_S)
            if closing:
                return

    def _move_spool(self) -> bool:
        """One pass: every spooled (and in-memory) document into the database. False when the database is down."""
        try:
            if not self._schema_ready:
                create_tables(self.engine)
                self._schema_ready = True
            for kind, path in self.spool.claim():
                self._insert_file(kind, path)
            self._insert_memory()
        except (_DatabaseDown, SQLAlchemyError) as error:
            self._schema_ready = False  # cheap to check again, and a database rebuilt meanwhile needs its tables
            if self._down_since is None:
                self._down_since = time.monotonic()
                reason = str(error) if isinstance(error, _DatabaseDown) else _describe(error)
                log.warning("call-records database unavailable (%s): records wait in %s and are retried",
                            reason, self.spool.directory)
            return False
        if self._down_since is not None:
            log.warning("call-records database back after %.1f s: spooled records sent",
                        time.monotonic() - self._down_since)
            self._down_since = None
        return True

    def _insert_file(self, kind: str, path: Path) -> None:
        try:
            # Split on "\n" only: a document may hold U+2028 and its kin, which str.splitlines() splits on. A line
            # cut mid-character by a crash is replaced into invalid JSON and rejected alone.
            lines = path.read_bytes().decode("utf-8", "replace").split("\n")
        except FileNotFoundError:  # another process sharing the folder finished it
            return
        except OSError as error:
            log.error("spool file %s unreadable (%s): left for a person to look at", path, error)
            path.rename(path.with_name(f"unreadable-{path.name}"))
            return
        self._reject(kind, self._insert(kind, lines))
        path.unlink(missing_ok=True)

    def _insert_memory(self) -> None:
        with self._state:
            waiting, self._memory = self._memory, []
        try:
            for kind in KINDS:
                self._reject(kind, self._insert(kind, [line for line_kind, line in waiting if line_kind == kind]))
        except BaseException:
            with self._state:
                self._memory[:0] = waiting  # all back: the ids make a second insert of the sent ones harmless
            raise

    def _insert(self, kind: str, lines: list[str]) -> list[tuple[str, dict[str, Any] | None, str]]:
        """Every line into the database; raises _DatabaseDown (nothing rejected yet: the next pass does it all
        again) or returns the (line, row, reason) the database refused or that were damaged."""
        refused: list[tuple[str, dict[str, Any] | None, str]] = []
        batch: list[tuple[str, dict[str, Any]]] = []
        size = 0
        for line in lines:
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                row = row_for(kind, str(entry["id"]), entry["document"])
            except (ValueError, KeyError, TypeError, AttributeError) as error:  # a line cut by a crash mid-append
                refused.append((line, None, f"damaged spool line: {error}"))
                continue
            batch.append((line, row))
            size += len(line)
            if len(batch) >= BATCH_ROWS or size >= BATCH_CHARS:
                refused += self._insert_batch(kind, batch)
                batch, size = [], 0
        if batch:
            refused += self._insert_batch(kind, batch)
        return refused

    def _insert_batch(self, kind: str, batch: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict, str]]:
        statement = pg_insert(TABLES[kind]).on_conflict_do_nothing(index_elements=["id"])
        try:
            with self.engine.begin() as conn:
                conn.execute(statement, [row for _, row in batch])
            return []
        except SQLAlchemyError as error:
            if not _refused_as_data(error):
                raise _DatabaseDown(_describe(error)) from error
        refused = []
        for line, row in batch:  # something in the batch is refused as such: find it, send the rest
            try:
                with self.engine.begin() as conn:
                    conn.execute(statement, [row])
            except SQLAlchemyError as error:
                if not _refused_as_data(error):
                    raise _DatabaseDown(_describe(error)) from error
                refused.append((line, row, _describe(error)))
        return refused

    def _reject(self, kind: str, refused: list[tuple[str, dict[str, Any] | None, str]]) -> None:
        for line, row, reason in refused:
            call_id = row.get("call_id") if row else None
            log.error("call=%s %s document not stored (%s): kept in %s", call_id, kind, reason,
                      self.spool.directory / f"rejected-{kind}.jsonl")
            self.spool.reject(kind, line, reason)


def _refused_as_data(error: SQLAlchemyError) -> bool:
    """The database answered and refused these values (retrying cannot help). Anything else (no connection, a
    restart, missing tables or rights) is the database's state: the documents wait and are retried."""
    if isinstance(error, (DataError, IntegrityError)):
        return True
    return isinstance(getattr(error, "orig", None), psycopg.errors.ProgramLimitExceeded)


def _describe(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]
