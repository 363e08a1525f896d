"""The action server's half of the logging convention (call_logging.py): every line an action run logs names its
call, the conversation id Rasa sends with it (the gateway's call id).

Actions, the bank behind them and rasa_sdk itself log plainly. A request middleware on rasa_sdk's Sanic app enters
the call of each /webhook request before its action runs and leaves it after, so the lines logged while the action
runs, in its task or in the threads it hands bank work to (`asyncio.to_thread` copies the context), are written as
`call=<id> ...`; the rest (start-up, health checks) as `call=-`.
"""

from __future__ import annotations

import json
import logging
import zlib
from typing import Any

from call_logging import UNKNOWN_CALL, add_call_ids_to_handlers, enter_call, leave_call

RASA_SDK_APP = "rasa_sdk"  # the name rasa_sdk.endpoint.create_app gives its Sanic app
WEBHOOK_PATH = "/webhook"
# rasa_sdk gives these handlers of their own and stops them propagating to the root's
SANIC_LOGGERS = ("sanic.root", "sanic.error", "sanic.access")


def install_on_action_server() -> bool:
    """Hooks the running action server (call once, when rasa_sdk imports the actions). False when no action server
    is being built in this process (a test importing the actions), which is not an error."""
    from sanic import Sanic
    from sanic.exceptions import SanicException

    try:
        app = Sanic.get_app(RASA_SDK_APP)
    except SanicException:
        return False
    for logger in (None, *SANIC_LOGGERS):
        add_call_ids_to_handlers(logging.getLogger(logger) if logger else None)
    app.register_middleware(enter_call_of_request, "request")
    app.register_middleware(leave_call_of_request, "response")
    return True


async def enter_call_of_request(request: Any) -> None:
    request.ctx.call_log_token = enter_call(sender_of(request.path, request.headers, request.body))


async def leave_call_of_request(request: Any, response: Any) -> None:
    token = getattr(request.ctx, "call_log_token", None)
    if token is not None:
        request.ctx.call_log_token = None
        leave_call(token)


def sender_of(path: str, headers: Any, body: bytes | None) -> str:
    """The conversation id of an action call (`-` for other requests and for bodies that are not an action call).

    Read as rasa_sdk's webhook reads it (JSON, deflated when Rasa compresses action calls); a body it will refuse
    only loses its call id here, the webhook answers it.
    """
    if path != WEBHOOK_PATH or not body:
        return UNKNOWN_CALL
    try:
        if headers.get("Content-Encoding") == "deflate":
            body = zlib.decompress(body)
        action_call = json.loads(body)
    except (ValueError, zlib.error, RecursionError):  # RecursionError: JSON nested thousands deep
        return UNKNOWN_CALL
    if not isinstance(action_call, dict):
        return UNKNOWN_CALL
    return str(action_call.get("sender_id") or UNKNOWN_CALL)
