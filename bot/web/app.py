"""The gateway's aiohttp application factory.

`create_app(settings)` serves:
    GET /healthz    200 when Rasa, the action server and the stores answer (bot/health.py); 503 naming the failing parts
    GET /metrics    Prometheus text format of the process's default registry (voice loop, telephony, console)
    GET /console    the text console and its JSON API (bot/web/console.py)
    GET /voice      the voice page and its socket /voice/ws (bot/web/voice.py)
    GET /agent/{ref} the agent's screen-pop of a call handed over (bot/web/agent.py; the REFER's X-IVR-Context-Ref)
    GET /trainer    the trainers' review list and labels of turns the bot did not understand (bot/web/trainer.py)
    GET /dashboard  the KPI dashboard, and its figures as JSON at /api/kpis (bot/web/dashboard.py; docs/KPIS.md)
The gateway's one voice loop (bot/web/voice_loop.py) is made here and loaded in the first cleanup context; it is
handed to the voice page and to every door telephony adds through `extra_setup(app, voice)` (SIP, /media,
AudioSocket; see telephony/gateway.py). Without a voice pipeline installed (pipecat missing) the gateway serves the
text console only.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, generate_latest

from bot.health import HealthChecker
from bot.web.access import Refused, require_safe_binding
from bot.web.console import BadRequest, add_console_routes
from bot.web.trainer import add_trainer_routes
from bot.web.dashboard import add_dashboard_routes
from settings import Settings, get_settings

log = logging.getLogger(__name__)

AppSetup = Callable[[web.Application, Any], None]  # (app, the VoiceLoop) -> None
SETTINGS_KEY: web.AppKey[Settings] = web.AppKey("settings", Settings)
HEALTH_KEY: web.AppKey[HealthChecker] = web.AppKey("health_checker", HealthChecker)

HEALTH_FAILURES = Counter("ivr_gateway_health_failures_total", "Parts found failing by /healthz", ["part"])


def create_app(settings: Settings | None = None, *, extra_setup: Iterable[AppSetup] = (),
               voice_runtime: Any = None) -> web.Application:
    """Builds the gateway app. Each `extra_setup(app, voice)` may add routes, on_startup hooks or cleanup contexts.
    `voice_runtime`: a ready `bot.call.VoiceRuntime` to use instead of loading the engines (tests, benchmarks).

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
    add_trainer_routes(app, settings)  # beside the agent's screen-pop: the same access rule and headers
    add_dashboard_routes(app, settings)  # not the voice loop's: a text-only gateway has records to show too
    voice = _voice_loop(app, settings, voice_runtime)
    for setup in extra_setup:
        setup(app, voice)
    return app


async def _health_checker_ctx(app: web.Application):
    checker = HealthChecker(app[SETTINGS_KEY])
    app[HEALTH_KEY] = checker
    yield
    await checker.close()


def _voice_loop(app: web.Application, settings: Settings, runtime: Any) -> Any:
    """The voice loop and the voice page; None when the voice layer is not installed (a text-only gateway)."""
    try:
        from bot.web.agent import add_agent_routes
        from bot.web.voice import add_voice_routes
        from bot.web.voice_loop import VOICE_LOOP_KEY, VoiceLoop
    except ImportError as exc:
        log.warning("voice loop and voice page disabled: the voice layer could not be imported (%s)", exc)
        return None
    voice = VoiceLoop(settings, runtime)
    app[VOICE_LOOP_KEY] = voice
    app.cleanup_ctx.append(voice.serve)  # before the doors: their contexts find the engines loaded
    add_voice_routes(app, settings, voice)
    add_agent_routes(app, settings, voice.screen_pops)
    return voice


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
