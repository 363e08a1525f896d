"""/healthz: green only when Rasa, the action server and the stores answer; 503 naming what failed.

The store probes run against the session's real PostgreSQL and Redis (the `stores` fixture, tests/cluster/conftest.py);
a test that stops one starts it again in a `finally`."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
import sqlalchemy
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.health import HealthChecker, action_server_base_url
from bot.record_sinks import close_record_sinks
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


def sqlite_store(path) -> str:
    url = f"sqlite:///{path}"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE things (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    return url


@pytest.fixture
def bank_db(tmp_path) -> str:
    return sqlite_store(tmp_path / "bank.db")


@pytest.fixture
def tracker_db(tmp_path) -> str:
    return sqlite_store(tmp_path / "tracker.db")


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


@pytest.fixture
def settings_for(tracker_db):
    """Settings for a gateway whose tracker store is up (unless TRACKER_DB_URL says otherwise), with no lock store
    and call records in files unless the test sets them."""
    def make(rasa_url: str, actions_url: str, bank_url: str, timeout_s: float = 1.0, **env: str) -> Settings:
        return Settings.from_env({"RASA_URL": rasa_url, "ACTION_SERVER_URL": f"{actions_url}/webhook",
                                  "BANK_DB_URL": bank_url, "HEALTH_TIMEOUT_S": str(timeout_s),
                                  "TRACKER_DB_URL": tracker_db, "REDIS_HOST": "", "CALL_RECORDS_DB_URL": "", **env})
    return make


async def test_all_parts_up_is_200(settings_for, live_parts, bank_db):
    status, body = await healthz(settings_for(*live_parts, bank_db))
    assert status == 200
    assert body["status"] == "ok" and body["failing"] == []
    assert set(body["parts"]) == {"rasa", "action_server", "bank_store", "tracker_store"}  # no lock or records store
    assert body["parts"]["tracker_store"]["detail"] == "SELECT 1 ok"


async def test_dead_action_server_is_503_naming_it(settings_for, live_parts, bank_db, unused_tcp_port):
    rasa_url, _ = live_parts
    status, body = await healthz(settings_for(rasa_url, f"http://127.0.0.1:{unused_tcp_port}", bank_db))
    assert status == 503
    assert body["failing"] == ["action_server"]
    assert body["parts"]["rasa"]["ok"] is True


async def test_dead_rasa_and_missing_bank_file_are_both_named(settings_for, live_parts, tmp_path, unused_tcp_port):
    _, actions_url = live_parts
    missing = f"sqlite:///{tmp_path / 'nope.db'}"
    status, body = await healthz(settings_for(f"http://127.0.0.1:{unused_tcp_port}", actions_url, missing))
    assert status == 503
    assert body["failing"] == ["rasa", "bank_store"]
    assert "does not exist" in body["parts"]["bank_store"]["detail"]
    assert not (tmp_path / "nope.db").exists()  # the check never creates the store


async def test_slow_part_times_out_quickly(settings_for, live_parts, bank_db):
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


async def test_garbage_bank_url_is_reported_not_raised(settings_for, live_parts):
    status, body = await healthz(settings_for(*live_parts, "not a url at all"))
    assert status == 503 and body["failing"] == ["bank_store"]


async def test_a_missing_tracker_store_is_503_naming_it_and_never_created(settings_for, live_parts, bank_db, tmp_path):
    missing = tmp_path / "no-tracker.db"
    status, body = await healthz(settings_for(*live_parts, bank_db, TRACKER_DB_URL=f"sqlite:///{missing}"))
    assert status == 503 and body["failing"] == ["tracker_store"]
    assert "has Rasa started?" in body["parts"]["tracker_store"]["detail"]
    assert not missing.exists()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg2"])
async def test_the_rasa_venvs_postgres_url_is_probed_with_psycopg_3(settings_for, live_parts, bank_db,
                                                                   unused_tcp_port, scheme):
    """TRACKER_DB_URL is written for the Rasa venv (psycopg2); the gateway has psycopg 3 and must use it, so a dead
    server reads as a refused connection, not as a missing driver."""
    url = f"{scheme}://rasa:secret@127.0.0.1:{unused_tcp_port}/tracker"
    status, body = await healthz(settings_for(*live_parts, bank_db, TRACKER_DB_URL=url))
    assert status == 503 and body["failing"] == ["tracker_store"]
    detail = body["parts"]["tracker_store"]["detail"]
    assert "psycopg2" not in detail and "OperationalError" in detail
    assert "secret" not in detail


async def test_a_dead_lock_store_is_503_naming_it(settings_for, live_parts, bank_db, unused_tcp_port):
    status, body = await healthz(settings_for(*live_parts, bank_db, REDIS_HOST="127.0.0.1",
                                              REDIS_PORT=str(unused_tcp_port)))
    assert status == 503 and body["failing"] == ["lock_store"]
    assert "ConnectionError" in body["parts"]["lock_store"]["detail"]


@pytest.mark.parametrize("records_url, words", [
    ("sqlite:///records.db", "must be a PostgreSQL URL"), ("not a url at all", "not a database URL"),
])
async def test_a_records_database_that_is_not_postgres_is_named(settings_for, live_parts, bank_db, records_url, words):
    """(The gateway itself refuses to start with such a URL: bot.record_sinks.record_sink raises.)"""
    checker = HealthChecker(settings_for(*live_parts, bank_db, CALL_RECORDS_DB_URL=records_url))
    try:
        report = (await checker.check()).as_json()
    finally:
        await checker.close()
    assert report["failing"] == ["call_records_db"]
    assert words in report["parts"]["call_records_db"]["detail"]


@pytest.mark.parametrize("webhook, base", [
    ("http://127.0.0.1:5055/webhook", "http://127.0.0.1:5055"),
    ("http://actions:6055/webhook/", "http://actions:6055/webhook"),
    ("http://actions:6055", "http://actions:6055"),
])
def test_action_server_base_url(webhook, base):
    assert action_server_base_url(webhook) == base


# The stores on real engines: the tracker store on PostgreSQL (by the Rasa venv's `postgresql://` URL), the lock
# store on Redis, the call-records database.

STORE_PARTS = ("tracker_store", "lock_store", "call_records_db")


@pytest.fixture
async def gateway_settings(stores, tmp_path):
    rasa, rasa_url = await serve(FakeRasa().app())
    actions, actions_url = await serve(action_server_app())
    tracker_url = stores.database("tracker_health")
    assert tracker_url.startswith("postgresql://")  # as the Rasa venv reads it: psycopg2 there, psycopg 3 here
    yield Settings.from_env({
        "RASA_URL": rasa_url, "ACTION_SERVER_URL": f"{actions_url}/webhook", "HEALTH_TIMEOUT_S": "2",
        "BANK_DB_URL": sqlite_store(tmp_path / "bank.db"), "TRACKER_DB_URL": tracker_url,
        "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(stores.redis.port),
        "CALL_RECORDS_DB_URL": stores.database("records_health", "postgresql+psycopg"),
        "CALL_RECORDS_DIR": str(tmp_path / "calls")})
    close_record_sinks(timeout_s=5)  # the app's CDR writer made one
    await rasa.close()
    await actions.close()


def restore(stores, name: str) -> None:
    if stores.procs[name].poll() is not None:
        stores.start(name)
    stores.wait_ready(name, timeout_s=60)


async def test_every_store_is_a_part_of_its_own(gateway_settings):
    status, body = await healthz(gateway_settings)
    assert status == 200, body
    for part in STORE_PARTS:
        assert body["parts"][part]["ok"] is True
    assert body["parts"]["tracker_store"]["detail"] == body["parts"]["call_records_db"]["detail"] == "SELECT 1 ok"
    assert body["parts"]["lock_store"]["detail"] == "PING ok"


async def test_redis_down_is_503_naming_the_lock_store_and_green_again_once_back(gateway_settings, stores):
    try:
        stores.stop("redis")
        status, body = await healthz(gateway_settings)
        assert status == 503 and body["failing"] == ["lock_store"]
        assert "Error" in body["parts"]["lock_store"]["detail"]
    finally:
        restore(stores, "redis")
    status, body = await healthz(gateway_settings)
    assert status == 200, body


async def test_postgres_down_is_503_naming_the_tracker_store_and_the_records_database(gateway_settings, stores):
    try:
        stores.stop("postgres", sig=signal.SIGINT)  # a fast shutdown, as restarts do
        status, body = await healthz(gateway_settings)
        assert status == 503 and body["failing"] == ["tracker_store", "call_records_db"]
        assert all(body["parts"][part]["latency_ms"] < 3000 for part in body["failing"])
    finally:
        restore(stores, "postgres")
    status, body = await healthz(gateway_settings)
    assert status == 200, body


async def test_records_waiting_in_the_local_spool_are_counted(gateway_settings):
    """Before a gateway is retired for good its spool must be empty: the records part says what still waits."""
    spool = Path(gateway_settings.gateway.call_records_dir) / "db-spool"
    spool.mkdir(parents=True)
    (spool / "pending-cdr.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n')
    checker = HealthChecker(gateway_settings)  # no sink of its own: nothing takes the spool meanwhile
    try:
        report = (await checker.check()).as_json()
    finally:
        await checker.close()
    assert report["failing"] == []
    assert report["parts"]["call_records_db"]["detail"] == "SELECT 1 ok; 2 records waiting in the local spool"
