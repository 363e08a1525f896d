"""/metrics renders the default Prometheus registry, including metrics other layers define."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import Counter

from bot.web.app import create_app
from settings import Settings

OTHER_LAYER_METRIC = Counter("ivr_test_other_layer_events_total", "Defined elsewhere, rendered by /metrics")


async def test_metrics_renders_the_default_registry(unused_tcp_port):
    OTHER_LAYER_METRIC.inc()
    settings = Settings.from_env({"RASA_URL": f"http://127.0.0.1:{unused_tcp_port}"})
    async with TestClient(TestServer(create_app(settings))) as client:
        await client.get("/healthz")  # everything is down: counts health failures
        resp = await client.get("/metrics")
        text = await resp.text()
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
    assert "ivr_test_other_layer_events_total 1.0" in text
    assert 'ivr_gateway_health_failures_total{part="rasa"}' in text


async def test_extra_setup_hooks_add_routes():
    from aiohttp import web

    async def hello(request):
        return web.Response(text="sip door")

    def add_door(app: web.Application, voice) -> None:
        app.router.add_get("/door", hello)

    async with TestClient(TestServer(create_app(Settings(), extra_setup=[add_door]))) as client:
        assert await (await client.get("/door")).text() == "sip door"
