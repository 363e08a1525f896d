"""/healthz: green only when Rasa, the action server and the bank store answer; 503 naming what failed."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.health import action_server_base_url
from bot.web.app import create_app
from settings import Settings
from tests.bot.fake_rasa import FakeRasa


async def serve(app: web.Application) -> tuple[TestServer, str]:
    server = TestServer(app)
    await server.start_server()
    return server, str(server.make_url("")).rstrip("/")


def action_server_app(delay_s: float = 0.0) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", health)
    return app


@pytest.fixture
def bank_db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE customers (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    return url


@pytest.fixture
async def live_parts():
    rasa, rasa_url = await serve(FakeRasa().app())
    actions, actions_url = await serve(action_server_app())
    yield rasa_url, actions_url
    await rasa.close()
    await actions.close()


async def healthz(settings: Settings) -> tuple[int, dict]:
    async with TestClient(TestServer(create_app(settings))) as client:
        resp = await client.get("/healthz")
        return resp.status, await resp.json()


def settings_for(rasa_url: str, actions_url: str, bank_url: str, timeout_s: float = 1.0) -> Settings:
    return Settings.from_env({"RASA_URL": rasa_url, "ACTION_SERVER_URL": f"{actions_url}/webhook",
                              "BANK_DB_URL": bank_url, "HEALTH_TIMEOUT_S": str(timeout_s)})


async def test_all_parts_up_is_200(live_parts, bank_db):
    status, body = await healthz(settings_for(*live_parts, bank_db))
    assert status == 200
    assert body["status"] == "ok" and body["failing"] == []
    assert set(body["parts"]) == {"rasa", "action_server", "bank_store"}


async def test_dead_action_server_is_503_naming_it(live_parts, bank_db, unused_tcp_port):
    rasa_url, _ = live_parts
    status, body = await healthz(settings_for(rasa_url, f"http://127.0.0.1:{unused_tcp_port}", bank_db))
    assert status == 503
    assert body["failing"] == ["action_server"]
    assert body["parts"]["rasa"]["ok"] is True


async def test_dead_rasa_and_missing_bank_file_are_both_named(live_parts, tmp_path, unused_tcp_port):
    _, actions_url = live_parts
    missing = f"sqlite:///{tmp_path / 'nope.db'}"
    status, body = await healthz(settings_for(f"http://127.0.0.1:{unused_tcp_port}", actions_url, missing))
    assert status == 503
    assert body["failing"] == ["rasa", "bank_store"]
    assert "does not exist" in body["parts"]["bank_store"]["detail"]
    assert not (tmp_path / "nope.db").exists()  # the check never creates the store


async def test_slow_part_times_out_quickly(live_parts, bank_db):
    rasa_url, _ = live_parts
    slow, slow_url = await serve(action_server_app(delay_s=5.0))
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, body = await healthz(settings_for(rasa_url, slow_url, bank_db, timeout_s=0.3))
        assert loop.time() - started < 3.0
    finally:
        await slow.close()
    assert status == 503 and body["failing"] == ["action_server"]
    assert "no answer within 0.3 s" in body["parts"]["action_server"]["detail"]


async def test_garbage_bank_url_is_reported_not_raised(live_parts):
    status, body = await healthz(settings_for(*live_parts, "not a url at all"))
    assert status == 503 and body["failing"] == ["bank_store"]


@pytest.mark.parametrize("webhook, base", [
    ("http://127.0.0.1:5055/webhook", "http://127.0.0.1:5055"),
    ("http://actions:6055/webhook/", "http://actions:6055/webhook"),
    ("http://actions:6055", "http://actions:6055"),
])
def test_action_server_base_url(webhook, base):
    assert action_server_base_url(webhook) == base
