"""The gateway's log stream: stdlib `logging` everywhere, one stream per process, `call=<id>` on every line.

The convention itself (`call_logger`, `call_context`, the `CallIdFilter`) is call_logging.py at the top level,
shared with the action server; this module re-exports it for bot/ and telephony/ and sets up the gateway's
stream. Code that does not know its call (pipecat processors and services, pipecat itself) logs plainly: the
call's pipeline runs in tasks created inside `call_context(call_id)` (bot/call.py). pipecat logs through loguru:
`configure_logging` routes loguru's records into stdlib logging at the same level, so a process has one stream
with one format.

Nothing secret goes through here in clear: keypad keys are logged as "dtmf key received", never the key (a PIN is
keyed), and caller numbers go through `mask_caller_number`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from call_logging import (  # noqa: F401 - re-exported: the convention, for bot/ and telephony/
    LOG_FORMAT,
    UNKNOWN_CALL,
    CallIdFilter,
    CallLoggerAdapter,
    call_context,
    call_logger,
)


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
