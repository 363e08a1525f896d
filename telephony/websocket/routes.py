"""Hooks the media doors into the gateway's aiohttp app: `GET /media` (Twilio Media Streams WebSocket) and
the AudioSocket TCP server, which starts and stops with the app.

    add_media_service(app)                               # the gateway: calls go to app[VOICE_RUNTIME_KEY]
    add_media_routes(app, runtime.create_call)           # settings from settings.get_settings()
    add_media_routes(app, call_factory, settings, audiosocket=False)

Each call's CDR line goes to settings.gateway.call_records_dir (telephony/cdr.py) unless another writer is given.
"""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator

from aiohttp import web

from settings import Settings, get_settings
from telephony.cdr import CdrWriter
from telephony.websocket.audiosocket import AudioSocketServer
from telephony.websocket.calls import CallFactory
from telephony.websocket.twilio import MediaStreamEndpoint

MEDIA_PATH = "/media"
MEDIA_ENDPOINT_KEY: web.AppKey[MediaStreamEndpoint] = web.AppKey("media_stream_endpoint", MediaStreamEndpoint)
AUDIOSOCKET_KEY: web.AppKey[AudioSocketServer] = web.AppKey("audiosocket_server", AudioSocketServer)

log = logging.getLogger(__name__)


class NoVoiceRuntime(RuntimeError):
    """The gateway has no voice loop loaded, so a media call cannot be served."""


def add_media_service(app: web.Application, settings: Settings | None = None) -> None:
    """The gateway's hook (telephony/gateway.py `TELEPHONY_SETUPS`): the media doors, with every call going to
    the gateway's shared voice loop, `app[VOICE_RUNTIME_KEY].create_call`. bot/web/voice.py loads that runtime
    in an earlier cleanup context, so it is looked up when a call arrives, not when the routes are added."""
    from bot.web.app import SETTINGS_KEY

    async def check_runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        if _gateway_voice_runtime(app) is None:
            log.error("no voice runtime in the gateway: /media and AudioSocket calls will be refused")
        yield

    app.cleanup_ctx.append(check_runtime_ctx)
    add_media_routes(app, _gateway_voice_calls(app), settings or app.get(SETTINGS_KEY) or get_settings())


def _gateway_voice_runtime(app: web.Application) -> Any:
    from bot.web.voice import VOICE_RUNTIME_KEY

    return app.get(VOICE_RUNTIME_KEY)


def _gateway_voice_calls(app: web.Application) -> CallFactory:
    def create_call(info: Any) -> Any:
        runtime = _gateway_voice_runtime(app)
        if runtime is None:
            raise NoVoiceRuntime("no voice runtime in the gateway (bot.web.voice did not load one)")
        return runtime.create_call(info)

    return create_call


def add_media_routes(app: web.Application, call_factory: CallFactory, settings: Settings | None = None, *,
                     audiosocket: bool = True, cdr_writer: CdrWriter | None = None) -> None:
    """Serve `/media` on `app` and, unless `audiosocket=False`, run the AudioSocket server with it.

    `call_factory` is `VoiceRuntime.create_call` in production: CallInfo → CallHandle (bot/call.py).
    """
    settings = settings or get_settings()
    gateway = settings.gateway
    cdr_writer = cdr_writer or CdrWriter.from_settings(settings)
    endpoint = MediaStreamEndpoint(call_factory, gateway, cdr_writer)
    app[MEDIA_ENDPOINT_KEY] = endpoint
    app.router.add_get(MEDIA_PATH, endpoint.handle)

    async def media_streams_ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        await endpoint.close_all()

    app.cleanup_ctx.append(media_streams_ctx)
    if audiosocket:
        server = AudioSocketServer(call_factory, gateway, cdr_writer)
        app[AUDIOSOCKET_KEY] = server

        async def audiosocket_ctx(app: web.Application) -> AsyncIterator[None]:
            try:
                await server.start()
            except OSError as error:
                # One door failing (port taken) must not take the console and the other doors down with it.
                log.error("AudioSocket door not started on %s:%s: %s", gateway.audiosocket_host,
                          gateway.audiosocket_port, error)
                yield
                return
            yield
            await server.close()

        app.cleanup_ctx.append(audiosocket_ctx)
