"""Hooks the media doors into the gateway's aiohttp app: `GET /media` (Twilio Media Streams WebSocket) and
the AudioSocket TCP server, which starts and stops with the app.

    add_media_routes(app, runtime.create_call)           # settings from settings.get_settings()
    add_media_routes(app, call_factory, settings, audiosocket=False)
"""

from __future__ import annotations

from typing import AsyncIterator

from aiohttp import web

from settings import Settings, get_settings
from telephony.websocket.audiosocket import AudioSocketServer
from telephony.websocket.calls import CallFactory
from telephony.websocket.twilio import MediaStreamEndpoint

MEDIA_PATH = "/media"
MEDIA_ENDPOINT_KEY: web.AppKey[MediaStreamEndpoint] = web.AppKey("media_stream_endpoint", MediaStreamEndpoint)
AUDIOSOCKET_KEY: web.AppKey[AudioSocketServer] = web.AppKey("audiosocket_server", AudioSocketServer)


def add_media_routes(app: web.Application, call_factory: CallFactory, settings: Settings | None = None, *,
                     audiosocket: bool = True) -> None:
    """Serve `/media` on `app` and, unless `audiosocket=False`, run the AudioSocket server with it.

    `call_factory` is `VoiceRuntime.create_call` in production: CallInfo → CallHandle (bot/call.py).
    """
    gateway = (settings or get_settings()).gateway
    endpoint = MediaStreamEndpoint(call_factory, gateway)
    app[MEDIA_ENDPOINT_KEY] = endpoint
    app.router.add_get(MEDIA_PATH, endpoint.handle)

    async def media_streams_ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        await endpoint.close_all()

    app.cleanup_ctx.append(media_streams_ctx)
    if audiosocket:
        server = AudioSocketServer(call_factory, gateway)
        app[AUDIOSOCKET_KEY] = server

        async def audiosocket_ctx(app: web.Application) -> AsyncIterator[None]:
            await server.start()
            yield
            await server.close()

        app.cleanup_ctx.append(audiosocket_ctx)
