"""GET /dashboard and GET /api/kpis (bot/web/dashboard.py): who may see them, bad queries, the JSON, and hostile
text from the records shown as text in Chromium."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import bot.web.dashboard as dashboard
from bot.web.app import create_app
from settings import REPO_ROOT, Settings
from tests.bot.browser import chromium_page

TOKEN = "dashboard-test-console-token-0123456789"
OFF_LOOPBACK = "203.0.113.7"
NOW = time.time()
HOSTILE_INTENT = "<img src=x onerror=alert(1)>"  # 28 characters: the whole of it fits in a chart label


def record(n: int, outcome: str = "served_by_bot", **fields) -> dict:
    started = NOW - 3600 + n
    return {"call_id": f"sip-{n:032x}", "caller_number": "138****0001", "started_at": started,
            "ended_at": started + 30, "outcome": outcome, "channel": "sip", "caller_key": f"k{n}",
            "intents": ["check_balance"], "completed_tasks": [], "transcript": [], "turn_metrics": [], **fields}


RECORDS = [
    record(1, completed_tasks=["check_balance"], turn_metrics=[{"voice_to_voice_ms": 480.0}]),
    record(2, "handoff", handoff_reason="green_channel", time_to_agent_s=4.0, intents=[HOSTILE_INTENT]),
    record(3, "abandoned"),
    record(4, channel="console", completed_tasks=["check_balance"]),
]


def write_records(folder: Path, records: list, damaged: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False) for r in records] + (['{"started_at": 1'] if damaged else [])
    (folder / f"calls-{time.strftime('%Y%m%d', time.gmtime(NOW - 3600))}.jsonl").write_text(
        "\n".join(lines) + "\n", encoding="utf-8")
    if time.gmtime(NOW - 3600).tm_yday != time.gmtime(NOW).tm_yday:  # just after midnight UTC
        (folder / f"calls-{time.strftime('%Y%m%d', time.gmtime(NOW))}.jsonl").write_text("", encoding="utf-8")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def settings_for(folder: Path, **extra: str) -> Settings:
    return Settings.from_env({"CALL_RECORDS_DIR": str(folder), "RASA_URL": "http://127.0.0.1:9", **extra})


def app_seen_from(settings: Settings, remote: str | None = None) -> web.Application:
    """The gateway app; with `remote`, every request looks as if it came from that peer address."""
    app = create_app(settings)
    if remote is not None:
        @web.middleware
        async def from_remote(request, handler):
            return await handler(request.clone(remote=remote))

        app.middlewares.insert(0, from_remote)
    return app


@pytest.fixture
async def client(tmp_path):
    write_records(tmp_path / "calls", RECORDS)
    async with TestClient(TestServer(app_seen_from(settings_for(tmp_path / "calls")))) as test_client:
        yield test_client


async def test_the_page_is_served_with_its_own_assets_and_a_strict_policy(client):
    resp = await client.get("/dashboard")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    policy = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["X-Frame-Options"] == "DENY"
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(source.startswith("/dashboard/static/") for source in sources), sources
    assert "<script>" not in page and " style=" not in page  # nothing inline: the policy would block it
    for source in sources:
        asset = await client.get(source)
        assert asset.status == 200 and asset.headers["X-Content-Type-Options"] == "nosniff"
    script = await (await client.get("/dashboard/static/dashboard.js")).text()
    assert "innerHTML" not in script and "http" not in script.replace("http://www.w3.org/2000/svg", "")


@pytest.mark.parametrize("name", ["console.html", "..%2Fconsole.py", "dashboard.html", ".caller-key"])
async def test_no_other_file_is_served_as_an_asset(client, name):
    assert (await client.get(f"/dashboard/static/{name}")).status == 404


async def test_the_json_holds_every_kpi_with_console_calls_left_out_by_default(client):
    resp = await client.get("/api/kpis", params={"from": "", "to": ""})
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    kpis = await resp.json()
    assert {"period", "service_share", "resolution_rate", "containment", "outcomes_over_time", "green_channel",
            "elderly", "satisfaction", "voice_to_voice_ms", "barge_in_rate", "no_input_rate", "skipped",
            "include_console", "by_channel"} <= set(kpis)
    assert (kpis["calls"], kpis["answered"], kpis["bot_served"], kpis["skipped"]) == (3, 2, 1, 1)
    assert kpis["service_share"] == 0.5 and kpis["resolution_rate"] == 1.0  # the green channel is not attempted
    assert kpis["green_channel"]["reached_agent"] == {"n": 1, "percentiles": {"p50": 4.0, "p90": 4.0}, "max": 4.0}
    assert (kpis["green_channel"]["unreached"], kpis["green_channel"]["unreached_share"]) == (0, 0.0)
    assert kpis["voice_to_voice_ms"]["percentiles"]["p50"] == 480.0
    assert kpis["include_console"] is False and "console" not in kpis["by_channel"]
    with_console = await (await client.get("/api/kpis", params={"include_console": "1"})).json()
    assert with_console["calls"] == 4 and with_console["by_channel"]["console"] == 1


async def test_a_chosen_period_and_bucket(client):
    hour_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 7200))
    kpis = await (await client.get("/api/kpis", params={"from": hour_ago, "bucket": "day"})).json()
    assert kpis["bucket_s"] == 86400 and kpis["calls"] == 3
    assert sum(b["served_by_bot"] + b["handoff"] + b["abandoned"] for b in kpis["outcomes_over_time"]) == 3
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(NOW + 86400))
    future = await (await client.get("/api/kpis", params={"from": tomorrow, "bucket": "hour",
                                                          "to": tomorrow + "T12:00"})).json()
    assert future["calls"] == 0 and future["service_share"] is None


@pytest.mark.parametrize("params, needle", [
    ({"from": "last week"}, "ISO 8601"),
    ({"from": "2026-11-02", "to": "2026-11-01"}, "after"),
    ({"from": "2020-01-01", "to": "2026-01-01"}, "366 days"),
    ({"to": "2026-11-01T25:00"}, "ISO 8601"),
    ({"from": "x" * 5000}, "ISO 8601"),
    ({"include_console": "maybe"}, "include_console"),
    ({"bucket": "minute"}, "bucket"),
    ({"bucket": "hour", "from": "2026-01-01", "to": "2026-12-01"}, "too many"),
    ({"from": "9999-12-30", "to": "9999-12-31"}, "from now"),  # the reading window would overflow: a 400, not 503
    ({"from": "2099-01-01", "to": "2099-01-02"}, "from now"),
])
async def test_a_bad_query_gets_a_400_saying_why(client, params, needle):
    resp = await client.get("/api/kpis", params=params)
    assert resp.status == 400 and resp.content_type == "application/json"
    assert needle in (await resp.json())["error"]


async def test_records_that_cannot_be_read_give_a_503_not_a_stack_trace(tmp_path):
    """A records database that is down (nothing listens on the port): the worker's error, never its message (the
    URL's password) nor a stack trace."""
    url = f"postgresql+psycopg://ivr:secret@127.0.0.1:{free_port()}/ivr"
    settings = settings_for(tmp_path, CALL_RECORDS_DB_URL=url)
    async with TestClient(TestServer(app_seen_from(settings))) as down:
        resp = await down.get("/api/kpis")
        assert resp.status == 503
        body = await resp.text()
        assert "cannot be read" in body and "secret" not in body and "Traceback" not in body


async def test_while_the_worker_computes_another_request_gets_503_and_retry_after(tmp_path):
    """A database that accepts and never answers keeps the real worker busy: no queue, a 503 with Retry-After;
    the same query asked again after an answer comes from the cache."""
    held: list[asyncio.StreamWriter] = []

    async def silent(reader, writer):
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = settings_for(tmp_path, CALL_RECORDS_DB_URL=f"postgresql+psycopg://ivr:pw@127.0.0.1:{port}/ivr")
    try:
        async with TestClient(TestServer(app_seen_from(settings))) as gateway:
            worker = gateway.app[dashboard.WORKER_KEY]
            first = asyncio.create_task(gateway.get("/api/kpis"))
            for _ in range(200):
                if worker.busy:
                    break
                await asyncio.sleep(0.01)
            assert worker.busy and not first.done()
            second = await gateway.get("/api/kpis", params={"from": "2026-11-01"})
            assert second.status == 503 and second.headers.get("Retry-After", "").isdigit(), await second.text()
            assert "try again" in (await second.json())["error"]
            for writer in held:  # the database goes away: the first request ends too, with its own 503
                writer.close()
            assert (await first).status == 503
            assert not worker.busy
    finally:
        server.close()


async def test_an_answer_is_cached_briefly_by_its_query(client):
    worker = client.app[dashboard.WORKER_KEY]
    first = await (await client.get("/api/kpis", params={"bucket": "day"})).json()
    write_records(Path(client.app[dashboard.DASHBOARD_SETTINGS_KEY].gateway.call_records_dir), [])  # records gone
    assert await (await client.get("/api/kpis", params={"bucket": "day"})).json() == first  # the cache
    assert (await (await client.get("/api/kpis", params={"bucket": "hour"})).json())["calls"] == 0  # another query
    worker._cache.clear()
    assert (await (await client.get("/api/kpis", params={"bucket": "day"})).json())["calls"] == 0
    assert worker.last_peak_rss_kb and worker.last_peak_rss_kb > 0


def test_the_worker_imports_nothing_of_the_voice_layer(tmp_path):
    """bot/kpi_worker.py runs with pipecat impossible to import, and answers."""
    write_records(tmp_path / "calls", RECORDS)
    request = {"source": {"folder": str(tmp_path / "calls")}, "start": NOW - 86400, "end": NOW + 1, "now": NOW}
    blocker = ("import sys\n"
               "class NoPipecat:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] in ('pipecat', 'vosk', 'aiohttp'):\n"
               "            raise ImportError('blocked: ' + name)\n"
               "sys.meta_path.insert(0, NoPipecat())\n"
               "import runpy; runpy.run_module('bot.kpi_worker', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", blocker], input=json.dumps(request), capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kpis"]["calls"] == 3


async def test_no_records_yet_is_an_empty_period(tmp_path):
    async with TestClient(TestServer(app_seen_from(settings_for(tmp_path / "none")))) as fresh:
        kpis = await (await fresh.get("/api/kpis")).json()
    assert kpis["calls"] == 0 and kpis["skipped"] == 0


async def test_off_loopback_without_a_token_nothing_is_shown(tmp_path):
    write_records(tmp_path / "calls", RECORDS)
    app = app_seen_from(settings_for(tmp_path / "calls"), remote=OFF_LOOPBACK)
    async with TestClient(TestServer(app)) as off:
        for path in ("/dashboard", "/api/kpis", "/dashboard/static/dashboard.js"):
            resp = await off.get(path)
            assert resp.status == 403, path
            assert "calls" not in await resp.text()


async def test_off_loopback_the_token_is_needed(tmp_path):
    write_records(tmp_path / "calls", RECORDS)
    app = app_seen_from(settings_for(tmp_path / "calls", CONSOLE_TOKEN=TOKEN, MEDIA_WS_TOKEN=TOKEN + "-media"),
                        remote=OFF_LOOPBACK)
    async with TestClient(TestServer(app)) as off:
        assert (await off.get("/api/kpis")).status == 401
        assert (await off.get("/api/kpis", headers={"Authorization": "Bearer wrong-token-0123456789"})).status == 401
        assert (await off.get("/api/kpis", params={"token": TOKEN[:-1]})).status == 401
        assert (await off.get("/api/kpis", headers={"Authorization": f"Bearer {TOKEN}"})).status == 200
        assert (await off.get("/api/kpis", params={"token": TOKEN})).status == 401  # never in the address
        assert (await off.get("/dashboard")).status == 401
        opened = await off.get("/dashboard", params={"token": TOKEN}, allow_redirects=False)
        assert opened.status == 303 and opened.headers["Location"] == "/dashboard"  # the token leaves the address
        page = await off.get("/dashboard")  # the session cookie from now on
        assert page.status == 200
        assert (await off.get("/api/kpis")).status == 200
        # a script on another site cannot read the figures with the cookie the browser holds
        assert (await off.get("/api/kpis", headers={"Origin": "https://evil.example"})).status == 403


async def test_hostile_text_in_the_records_is_shown_as_text_in_chromium(tmp_path):
    write_records(tmp_path / "calls", RECORDS)
    server = TestServer(app_seen_from(settings_for(tmp_path / "calls")))
    await server.start_server()
    try:
        async with chromium_page() as page:
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            dialogs: list[str] = []
            page.on("dialog", lambda dialog: dialogs.append(dialog.message))
            await page.goto(str(server.make_url("/dashboard")))
            await page.wait_for_selector("body[data-loaded='1']", timeout=15_000)
            assert await page.inner_text("#kpi-service-share .value") == "50.0%"
            containment = await page.inner_text("#chart-containment")
            assert HOSTILE_INTENT in containment  # the whole label, as text
            assert "reached 1/1 handoffs" in await page.inner_text("#chart-agent")  # beside p50/p90, not hidden
            assert dialogs == []  # the onerror never ran
            assert await page.locator("#chart-containment img, #chart-containment script").count() == 0
            assert errors == []
    finally:
        await server.close()


def test_a_period_too_large_for_the_workers_memory_is_a_clear_answer(tmp_path, monkeypatch):
    """The worker's memory is bounded: past the bound, "too_large" (the gateway asks for a shorter period)."""
    write_records(tmp_path / "calls", RECORDS)
    request = {"source": {"folder": str(tmp_path / "calls")}, "start": NOW - 86400, "end": NOW + 1, "now": NOW}
    program = ("import bot.kpi_worker as w, sys; w.MAX_MEMORY_BYTES = 40 * 1024 ** 2; "
               "import bot.kpi_sources as k; k.compute_kpis = lambda *a, **kw: bytearray(10 ** 9); "
               "sys.exit(w.main())")
    done = subprocess.run([sys.executable, "-c", program], input=json.dumps(request), capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=60)
    assert json.loads(done.stdout) == {"error": "too_large"}, done.stderr[-500:]
