"""DNS rebinding (bot/web/access.py `check_peer`): without CONSOLE_TOKEN, every web door of the gateway serves only
a Host that cannot be rebound (an IP literal, localhost) or one named in CONSOLE_ALLOWED_ORIGINS.

A page on evil.example whose name is re-pointed at 127.0.0.1 talks to the gateway from loopback, same-origin as far
as the browser knows, and its GETs carry no Origin: only the Host header tells it apart."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.web.access import host_allowed
from bot.web.app import create_app
from settings import Settings

# Not the gateway's own doors: the redirect to /console, health and metrics for probes on the host.
NOT_DOORS = {"/", "/healthz", "/metrics"}


def door_paths(app) -> list[tuple[str, str]]:
    """Every GET/POST route the app serves except NOT_DOORS, with placeholders filled."""
    paths = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if path is None or path in NOT_DOORS or route.method not in ("GET", "POST"):
            continue
        if "prefix" in info:  # a static folder of the repository's own scripts and styles: no data, no door
            continue
        paths.append((route.method, path.replace("{ref}", "R" * 32).replace("{name}", "dashboard.js")
                      .replace("{call_id}", "console-" + "0" * 32)))
    return sorted(set(paths))


@pytest.fixture
async def client(tmp_path):
    settings = Settings.from_env({"CALL_RECORDS_DIR": str(tmp_path / "calls"), "RASA_URL": "http://127.0.0.1:9",
                                  "CONSOLE_ALLOWED_ORIGINS": "https://ivr.bank.example"})
    async with TestClient(TestServer(create_app(settings))) as test_client:
        yield test_client


async def test_every_door_refuses_a_rebindable_host(client):
    doors = door_paths(client.app)
    assert {("GET", "/api/kpis"), ("GET", "/dashboard"), ("GET", "/console"), ("GET", "/trainer/api/items")} \
        <= set(doors)
    for method, path in doors:
        resp = await client.request(method, path, headers={"Host": f"evil.example:{client.port}",
                                                           "Content-Type": "application/json"}, data=b"{}")
        assert resp.status == 403, (method, path, resp.status)
        assert "DNS rebinding" in (await resp.text()), (method, path)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "ivr.bank.example"])
async def test_hosts_that_cannot_be_rebound_are_served(client, host):
    port = "" if host == "ivr.bank.example" else f":{client.port}"
    resp = await client.get("/api/kpis", headers={"Host": host + port})
    assert resp.status == 200, host


@pytest.mark.parametrize("host, allowed", [
    ("127.0.0.1:8080", True), ("localhost", True), ("[::1]:8080", True), ("ivr.bank.example", True),
    ("IVR.bank.example:443", True), ("evil.example", False), ("127.0.0.1.nip.io:8080", False),
    ("localhost.evil.example", False), ("ivr.bank.example:8080", False), ("", False), (None, True),
    ("127.0.0.1@evil.example", False), ("evil.example/127.0.0.1", False), ("x" * 400, False),
])
def test_host_allowed(host, allowed):
    assert host_allowed(host, frozenset({"https://ivr.bank.example"})) is allowed


async def test_a_refused_kpi_request_is_counted_whatever_the_status(client):
    from bot.web.dashboard import DASHBOARD_REQUESTS

    refused = DASHBOARD_REQUESTS.labels("refused")
    before = refused._value.get()
    assert (await client.get("/api/kpis", headers={"Host": "evil.example"})).status == 403
    assert (await client.get("/api/kpis", headers={"Origin": "https://evil.example"})).status == 403
    assert refused._value.get() == before + 2
