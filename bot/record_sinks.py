"""Where finished calls' documents go: the one writer interface, whatever keeps them.

Two kinds of document are written at the end of a call: the voice loop's call record (`KIND_CALLS`,
bot/call_records.py) and the door's CDR (`KIND_CDR`, bot/cdr.py). Both writers hand their JSON document to a
`RecordSink`:

- `JsonlSink` (the single-host default): one JSON line per document appended to `<dir>/<kind>-YYYYMMDD.jsonl`
  (UTC day), i.e. `calls-*.jsonl` and `cdr-*.jsonl` under CALL_RECORDS_DIR;
- `bot.records_db.DatabaseSink` when CALL_RECORDS_DB_URL is set: PostgreSQL shared by every gateway, with a local
  spool so that a database that is down loses nothing (see its docstring).

`record_sink(settings)` is the one place the sink is chosen; the writers' `from_settings` use it, so every door and
the voice loop of a process share one sink.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Self

from settings import Settings

KIND_CALLS = "calls"
KIND_CDR = "cdr"
KINDS = (KIND_CALLS, KIND_CDR)

log = logging.getLogger(__name__)


class RecordSink(ABC):
    """Takes finished calls' documents. `write` is called from the event loop at the end of a call."""

    @abstractmethod
    def write(self, kind: str, document: dict[str, Any], *, call_id: str, when: float) -> Path | None:
        """Keeps `document` (a JSON-ready dict) of `kind`; `when` is the call's end (epoch seconds).
        The file it went to, or None when it did not go to a file of its own."""

    def flush(self, timeout_s: float = 10.0) -> bool:
        """True once everything written so far is where it belongs (nothing to wait for by default)."""
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Releases what the sink holds; a sink is not written to after close."""


class JsonlSink(RecordSink):
    """JSON lines in `<directory>/<kind>-YYYYMMDD.jsonl`; one file per UTC day keeps rotation trivial.

    Raises OSError (a full disk, a directory that cannot be made): the caller decides whether that is logged."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()

    def path_for(self, kind: str, when: float) -> Path:
        return self.directory / time.strftime(f"{kind}-%Y%m%d.jsonl", time.gmtime(when))

    def write(self, kind: str, document: dict[str, Any], *, call_id: str, when: float) -> Path:
        path = self.path_for(kind, when)
        line = json_line(document)
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
        return path


def json_line(document: Any) -> str:
    """One line of JSON for `document`, every string made UTF-8-encodable first (`printable_text`)."""
    return json.dumps(printable_document(document), ensure_ascii=False, separators=(",", ":"))


def printable_text(text: str) -> str:
    """UTF-8-encodable text: undecodable bytes (lone surrogates from `surrogateescape`) become `\\xNN`,
    any other lone surrogate `\\udNNN`."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def printable_document(value: Any) -> Any:
    """`value` with every string (keys too) through `printable_text`. Done per string, before JSON encoding: on
    the encoded line a `\\xNN` would sit inside a JSON string as an invalid escape and spoil the whole line."""
    if isinstance(value, str):
        return printable_text(value)
    if isinstance(value, dict):
        return {printable_text(str(key)): printable_document(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_document(item) for item in value]
    return value


def postgres_document(value: Any) -> Any:
    """`printable_document`, plus what PostgreSQL's JSONB refuses and JSON Lines allow: NUL characters (`\\u0000`)
    become the text `\\x00`, and numbers that are not finite (NaN, Infinity) become null."""
    if isinstance(value, str):
        return printable_text(value).replace("\x00", "\\x00")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {postgres_document(str(key)): postgres_document(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [postgres_document(item) for item in value]
    if value is None or isinstance(value, (bool, int)):
        return value
    return postgres_document(str(value))


_sinks: dict[tuple[str, str], RecordSink] = {}
_sinks_lock = threading.Lock()


def record_sink(settings: Settings) -> RecordSink:
    """The process's sink for these settings: PostgreSQL when `settings.gateway.call_records_db_url` is set, else
    JSON Lines under `call_records_dir`. One per (URL, folder), shared by every writer of the process and closed at
    exit. Raises ValueError for a records URL that is not a PostgreSQL URL: a gateway must not start writing its
    calls nowhere."""
    gateway = settings.gateway
    db_url = (gateway.call_records_db_url or "").strip()
    key = (db_url, str(gateway.call_records_dir))
    with _sinks_lock:
        sink = _sinks.get(key)
        if sink is None:
            if db_url:
                from bot.records_db import DatabaseSink  # SQLAlchemy and the worker thread only when asked for

                sink = DatabaseSink(db_url, Path(gateway.call_records_dir) / DatabaseSink.SPOOL_FOLDER)
            else:
                sink = JsonlSink(gateway.call_records_dir)
            _sinks[key] = sink
        return sink


class SinkWriter:
    """What the call-record and CDR writers share: a sink, from a folder (JSON Lines), a `RecordSink`, or the
    process's sink for its settings (`from_settings`: files, or the database when one is set)."""

    def __init__(self, target: str | os.PathLike[str] | RecordSink) -> None:
        self.sink = target if isinstance(target, RecordSink) else JsonlSink(target)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(record_sink(settings))


def close_record_sinks(timeout_s: float = 5.0) -> None:
    """Closes every sink `record_sink` made (at exit; tests). A database sink gets `timeout_s` to hand over what
    it holds; its spool keeps the rest for the next start."""
    with _sinks_lock:
        sinks = list(_sinks.values())
        _sinks.clear()
    for sink in sinks:
        try:
            sink.close(timeout_s)
        except Exception:  # at exit: one sink's trouble must not keep the others from closing
            log.exception("closing the call-record sink failed")


atexit.register(close_record_sinks)
