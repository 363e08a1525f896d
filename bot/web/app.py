"""The gateway's aiohttp application factory.

`create_app(settings)` serves:
    GET /healthz    200 when Rasa, the action server and the bank store answer; 503 naming the failing parts
    GET /metrics    Prometheus text format of the process's default registry (voice loop, telephony, console)
    GET /console    the text console and its JSON API (bot/web/console.py)
    the voice page, when `bot.web.voice.add_voice_routes` is importable
Telephony adds its doors (SIP, /media WebSocket, AudioSocket) through `extra_setup`; see telephony/gateway.py.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Callable, Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, generate_latest

from bot.health import HealthChecker
from bot.web.access import Refused, require_safe_binding
from bot.web.console import BadRequest, add_console_routes
from settings import Settings, get_settings

log = logging.getLogger(__name__)

AppSetup = Callable[[web.Application], None]
SETTINGS_KEY: web.AppKey[Settings] = web.AppKey("settings", Settings)
HEALTH_KEY: web.AppKey[HealthChecker] = web.AppKey("health_checker", HealthChecker)

HEALTH_FAILURES = Counter("ivr_gateway_health_failures_total", "Parts found failing by /healthz", ["part"])


def create_app(settings: Settings | None = None, *, extra_setup: Iterable[AppSetup] = ()) -> web.Application:
    """Builds the gateway app. Each `extra_setup(app)` may add routes, on_startup hooks or cleanup contexts.

    Raises `bot.web.access.UnsafeBinding` when the settings bind beyond loopback without real tokens."""
    settings = settings or get_settings()
    require_safe_binding(settings)
    app = web.Application(middlewares=[json_errors_middleware], client_max_size=256 * 1024)
    app[SETTINGS_KEY] = settings
    app.cleanup_ctx.append(_health_checker_ctx)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    add_console_routes(app, settings)
    _add_voice_routes_if_available(app)
    for setup in extra_setup:
        setup(app)
    return app


async def _health_checker_ctx(app: web.Application):
    checker = HealthChecker(app[SETTINGS_KEY])
    app[HEALTH_KEY] = checker
    yield
    await checker.close()


def _add_voice_routes_if_available(app: web.Application) -> None:
    """The voice page is the voice-loop layer's; the gateway still runs (text console only) without it."""
    if importlib.util.find_spec("bot.web.voice") is None:
        log.info("no bot.web.voice module: the voice page is not served")
        return
    try:
        voice = importlib.import_module("bot.web.voice")
        voice.add_voice_routes(app)
    except (ImportError, AttributeError) as exc:
        log.warning("voice page disabled: bot.web.voice could not be loaded (%s)", exc)


async def index(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console")


async def healthz(request: web.Request) -> web.Response:
    report = await request.app[HEALTH_KEY].check()
    for part in report.failing:
        HEALTH_FAILURES.labels(part).inc()
    return web.json_response(report.as_json(), status=200 if report.ok else 503,
                             headers={"Cache-Control": "no-store"})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def json_errors_middleware(request: web.Request, handler):
    """Bad input gets a JSON 400; an unexpected error a JSON 500 that says so, never a stack trace."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except Refused as exc:
        return web.json_response({"error": str(exc)}, status=exc.status, headers={"Cache-Control": "no-store"})
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return web.json_response({"error": "internal error in the gateway; see its log"}, status=500)
