"""Per-call logging: every telephony log line about a call carries `call=<id>`, so one grep finds a whole call.

    log = call_logger(logging.getLogger(__name__), call.id)
    log.info("answered (%s)", codec)        # → "call=sip-5f0c…e1 answered (PCMU)"

The id also travels as `record.call_id`, for handlers that format or ship structured logs.
Nothing secret goes through here in clear: keypad keys are logged as "dtmf key received", never the key (a PIN is
keyed), and caller numbers go through `mask_caller_number`.
"""

from __future__ import annotations

import logging
from typing import Any, MutableMapping


UNKNOWN_CALL = "-"


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
