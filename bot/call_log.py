"""The logging convention: stdlib `logging` everywhere, one stream per process, `call=<id>` on every line.

    log = logging.getLogger(__name__)                       # every module of bot/ and telephony/
    log = call_logger(logging.getLogger(__name__), call.id) # code that knows its call (doors, the SIP core)
    log.info("answered (%s)", codec)                        # → "call=sip-5f0c…e1 answered (PCMU)"

Code that does not know its call (pipecat processors and services, pipecat itself) logs plainly: the call's
pipeline runs in tasks created inside `call_context(call_id)` (bot/call.py), tasks inherit the context, and the
`CallIdFilter` on the process's handler prefixes `call=<id>` (`call=-` outside any call) to every record that
does not name its call already. pipecat logs through loguru: `configure_logging` routes loguru's records into
stdlib logging at the same level, so a process has one stream with one format.

The id also travels as `record.call_id`, for handlers that format or ship structured logs.
Nothing secret goes through here in clear: keypad keys are logged as "dtmf key received", never the key (a PIN is
keyed), and caller numbers go through `mask_caller_number`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, MutableMapping

UNKNOWN_CALL = "-"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The call whose task is running; tasks created inside `call_context` (the call's pipeline) inherit it.
_current_call: ContextVar[str] = ContextVar("current_call", default=UNKNOWN_CALL)


class CallLoggerAdapter(logging.LoggerAdapter):
    """Prefixes `call=<id> ` to every message and sets `record.call_id`."""

    @property
    def call_id(self) -> str:
        return str((self.extra or {}).get("call_id", UNKNOWN_CALL))

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("call_id", self.call_id)
        kwargs["extra"] = extra
        return f"call={self.call_id} {msg}", kwargs


def call_logger(logger: logging.Logger, call_id: str | None) -> CallLoggerAdapter:
    """`logger` bound to one call; a call without an id yet logs as `call=-`."""
    return CallLoggerAdapter(logger, {"call_id": call_id or UNKNOWN_CALL})


@contextmanager
def call_context(call_id: str) -> Iterator[None]:
    """Lines logged inside the block, and by every task created inside it, belong to `call_id`."""
    token = _current_call.set(call_id)
    try:
        yield
    finally:
        _current_call.reset(token)


def current_call_id() -> str:
    """The call of the running task (`-` outside any call)."""
    return _current_call.get()


class CallIdFilter(logging.Filter):
    """For a handler: a record that does not name its call gets `call=<id>` of the task that logged it.

    On the handler, not a logger, because a logger's filters never see records propagated from its children.
    Records from `call_logger` already carry their id and prefix and are left alone (idempotent).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "call_id", None) is None:
            record.call_id = current_call_id()
            prefix = f"call={record.call_id} "
            # the message is %-formatted with its args later: a `%` in an id must survive that
            record.msg = (prefix.replace("%", "%%") if record.args else prefix) + str(record.msg)
        return True


def configure_logging(level: str) -> None:
    """A process's one log stream (the gateway, the benches): stderr, LOG_FORMAT, `call=<id>` on every line,
    pipecat's loguru records included, all at `level` (e.g. "INFO", "DEBUG")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(CallIdFilter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    route_loguru_to_logging(level)


def route_loguru_to_logging(level: str) -> int:
    """Replaces loguru's sinks (pipecat's default: stderr at DEBUG, every frame and TTS text) by one that hands
    each record at `level` or above to the stdlib logger of the same name. Returns loguru's id of that sink."""
    from loguru import logger as loguru_logger  # only the voice venv has loguru; imported where it is needed

    loguru_logger.remove()
    return loguru_logger.add(_to_logging, level=level.upper(), format="{message}")


def _to_logging(message: Any) -> None:
    """A loguru sink: the record, unformatted, into stdlib logging (handlers, filters and levels apply there)."""
    raw = message.record
    logger = logging.getLogger(raw["name"] or "loguru")
    level = raw["level"].no
    if not logger.isEnabledFor(level):
        return
    exc = raw["exception"]
    record = logger.makeRecord(logger.name, level, raw["file"].path, raw["line"], raw["message"], (),
                               (exc.type, exc.value, exc.traceback) if exc else None, raw["function"])
    record.levelname = raw["level"].name  # loguru's TRACE and SUCCESS have no stdlib name
    logger.handle(record)
