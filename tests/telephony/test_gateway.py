"""The gateway entry point: telephony setups plug into the app, and the access log never shows query strings."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from settings import Settings
from telephony import gateway


async def test_telephony_setups_start_and_stop_with_the_app(monkeypatch):
    lifecycle: list[str] = []

    async def door(app: web.Application):
        lifecycle.append("started")
        yield
        lifecycle.append("stopped")

    def add_door(app: web.Application) -> None:
        app.cleanup_ctx.append(door)

    monkeypatch.setattr(gateway, "TELEPHONY_SETUPS", [add_door])
    async with TestClient(TestServer(gateway.build_app(Settings()))) as client:
        assert lifecycle == ["started"]
        assert (await client.get("/console")).status == 200
    assert lifecycle == ["started", "stopped"]


def test_access_log_has_no_query_string(caplog):
    logger = logging.getLogger("test.access")
    request = make_mocked_request("GET", "/media?token=s3cret-media-token")
    with caplog.at_level(logging.INFO, logger="test.access"):
        gateway.PathOnlyAccessLogger(logger, "").log(request, web.Response(status=101), 0.0123)
    line = caplog.records[-1].getMessage()
    assert "GET /media 101 12.3ms" in line
    assert "s3cret" not in line
