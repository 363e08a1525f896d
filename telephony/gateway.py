"""The gateway process: `python -m telephony.gateway`.

Builds the web app with `bot.web.app.create_app` and serves it on settings.gateway host/port. The telephony doors
(SIP/RTP, the /media WebSocket, AudioSocket) plug in through `TELEPHONY_SETUPS`: each entry is a function
`setup(app, voice)`, `voice` being the gateway's voice loop (bot/web/voice_loop.py), that adds routes and/or an
aiohttp cleanup context (an async generator that starts the service, yields, then stops it), so every door starts
and stops with the gateway.
"""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from bot.call_log import configure_logging
from bot.web.app import AppSetup, create_app
from settings import Settings, get_settings
from telephony.sip_calls import add_sip_service
from telephony.websocket.routes import add_media_service

log = logging.getLogger("telephony.gateway")

# Telephony registers its doors here, e.g. a SIP service and the /media WebSocket routes.
TELEPHONY_SETUPS: list[AppSetup] = [
    add_sip_service,  # SIP/RTP on settings.sip.host:port (UDP+TCP)
    add_media_service,  # GET /media (Twilio Media Streams) and AudioSocket on settings.gateway.audiosocket_*
]


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log without query strings: the media WebSocket takes its token in the query."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %d %.1fms", request.remote, request.method, request.path, response.status,
                         time * 1000)


def build_app(settings: Settings) -> web.Application:
    return create_app(settings, extra_setup=TELEPHONY_SETUPS)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m telephony.gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="log level, pipecat included (default INFO)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(args.log_level)  # one stream: ours and pipecat's, `call=<id>` on every line
    settings = get_settings()
    app = build_app(settings)
    log.info("gateway on http://%s:%d (console /console, health /healthz, metrics /metrics)",
             settings.gateway.host, settings.gateway.port)
    # aiohttp installs SIGINT/SIGTERM handlers and runs the cleanup contexts on the way out.
    web.run_app(app, host=settings.gateway.host, port=settings.gateway.port, print=None,
                access_log_class=PathOnlyAccessLogger)
    return 0


if __name__ == "__main__":
    sys.exit(main())
