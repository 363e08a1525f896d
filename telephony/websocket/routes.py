"""Hooks the media doors into the gateway's aiohttp app: `GET /media` (Twilio Media Streams WebSocket) and
the AudioSocket TCP server, which starts and stops with the app.

    add_media_service(app, voice_loop)                   # the gateway: calls go to voice_loop.create_call
    add_media_routes(app, runtime.create_call)           # settings from settings.get_settings()
    add_media_routes(app, call_factory, settings, audiosocket=False)

Each call's CDR line goes to settings.gateway.call_records_dir (bot/cdr.py) unless another writer is given.
"""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator

from aiohttp import web

from bot.admission import Admission
from bot.cdr import CdrWriter
from settings import Settings, get_settings
from telephony.websocket.audiosocket import AudioSocketServer
from telephony.websocket.calls import CallFactory
from telephony.websocket.twilio import MediaStreamEndpoint

MEDIA_PATH = "/media"
MEDIA_ENDPOINT_KEY: web.AppKey[MediaStreamEndpoint] = web.AppKey("media_stream_endpoint", MediaStreamEndpoint)
AUDIOSOCKET_KEY: web.AppKey[AudioSocketServer] = web.AppKey("audiosocket_server", AudioSocketServer)

log = logging.getLogger(__name__)


def add_media_service(app: web.Application, voice: Any, settings: Settings | None = None) -> None:
    """The gateway's hook (telephony/gateway.py `TELEPHONY_SETUPS`): the media doors, with every call going to
    the gateway's voice loop (bot/web/voice_loop.py), which refuses calls while its engines are not loaded."""
    from bot.web.app import SETTINGS_KEY

    if voice is None:
        log.error("no voice loop in the gateway: /media and AudioSocket not served")
        return
    add_media_routes(app, voice.create_call, settings or app.get(SETTINGS_KEY) or get_settings(),
                     admission=voice.admission)


def add_media_routes(app: web.Application, call_factory: CallFactory, settings: Settings | None = None, *,
                     audiosocket: bool = True, cdr_writer: CdrWriter | None = None,
                     admission: Admission | None = None) -> None:
    """Serve `/media` on `app` and, unless `audiosocket=False`, run the AudioSocket server with it.

    `call_factory` is `VoiceRuntime.create_call` in production: CallInfo → CallHandle (bot/call.py).
    """
    settings = settings or get_settings()
    gateway = settings.gateway
    cdr_writer = cdr_writer or CdrWriter.from_settings(settings)
    endpoint = MediaStreamEndpoint(call_factory, gateway, cdr_writer, admission)
    app[MEDIA_ENDPOINT_KEY] = endpoint
    app.router.add_get(MEDIA_PATH, endpoint.handle)

    async def close_media_streams(app: web.Application) -> None:
        await endpoint.close_all()

    # on_shutdown runs before any cleanup context: the calls end (and write their CDRs) while the voice loop is up.
    app.on_shutdown.append(close_media_streams)
    if audiosocket:
        server = AudioSocketServer(call_factory, gateway, cdr_writer, admission)
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
