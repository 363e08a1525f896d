"""The logging convention of every process (the gateway, the action server, the benches): `call=<id>` on every line.

    log = logging.getLogger(__name__)                       # every module
    log = call_logger(logging.getLogger(__name__), call.id) # code that knows its call (doors, the SIP core)
    log.info("answered (%s)", codec)                        # → "call=sip-5f0c…e1 answered (PCMU)"

Code that does not know its call logs plainly. The call's work runs inside `call_context(call_id)`: the gateway
enters it for a call's pipeline (bot/call.py), the action server for each action it runs (actions/log_context.py).
Tasks and `asyncio.to_thread` inherit the context, and the `CallIdFilter` on the process's handler prefixes
`call=<id>` (`call=-` outside any call) to every record that does not name its call already.

The id also travels as `record.call_id`, for handlers that format or ship structured logs. An id is written as
`safe_call_id` makes it: a peer-chosen id with a line break or a control character cannot forge a log line.

Standard library only, because both virtual environments import it (like call_contract.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, MutableMapping

UNKNOWN_CALL = "-"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

MAX_CALL_ID_CHARS = 128  # as CallInfo allows; a uuid4 id with its door prefix is 40

# The call whose task is running; tasks created inside `call_context` (the call's pipeline) inherit it.
_current_call: ContextVar[str] = ContextVar("current_call", default=UNKNOWN_CALL)


def safe_call_id(call_id: object) -> str:
    """`call_id` as a log line may show it: printable, no spaces, at most MAX_CALL_ID_CHARS; empty is unknown."""
    text = "".join(c if c.isprintable() and not c.isspace() else "?" for c in str(call_id or "")[:MAX_CALL_ID_CHARS])
    return text or UNKNOWN_CALL


class CallLoggerAdapter(logging.LoggerAdapter):
    """Prefixes `call=<id> ` to every message and sets `record.call_id`."""

    @property
    def call_id(self) -> str:
        return safe_call_id((self.extra or {}).get("call_id"))

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("call_id", self.call_id)
        kwargs["extra"] = extra
        return f"call={self.call_id} {msg}", kwargs


def call_logger(logger: logging.Logger, call_id: str | None) -> CallLoggerAdapter:
    """`logger` bound to one call; a call without an id yet logs as `call=-`."""
    return CallLoggerAdapter(logger, {"call_id": safe_call_id(call_id)})


@contextmanager
def call_context(call_id: str) -> Iterator[None]:
    """Lines logged inside the block, and by every task created inside it, belong to `call_id`."""
    token = enter_call(call_id)
    try:
        yield
    finally:
        leave_call(token)


def enter_call(call_id: object) -> Token[str]:
    """`call_context` in two halves, for a framework's before/after hooks (the action server's middleware)."""
    return _current_call.set(safe_call_id(call_id))


def leave_call(token: Token[str]) -> None:
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


def add_call_ids_to_handlers(logger: logging.Logger | None = None) -> None:
    """Puts a CallIdFilter on each handler of `logger` (the root by default) that has none: for a process whose
    logging was set up by someone else (rasa_sdk configures the action server's)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, CallIdFilter) for f in handler.filters):
            handler.addFilter(CallIdFilter())
