"""The trainers' page `/trainer` (bot/web/trainer.py): the review list from call records, escaped; labels by POST
under the console API's CSRF rule; the agent page's access rule and security headers."""

from __future__ import annotations

import dataclasses
import asyncio
import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.nlu_review import call_digest
from bot.web.app import json_errors_middleware
from bot.web.trainer import add_trainer_routes
from settings import REPO_ROOT, Settings

SAID = "钱匣子还剩几个子儿"  # kept for training by scripts/split_nlu.py
STARTED = time.time() - 3600
XSS = '<script>alert("x")</script>查余额'


def caller(text: str, intent: str, confidence: float, fallback: bool) -> dict:
    return {"t": 1.0, "who": "caller", "source": "speech", "text": text,
            "nlu": {"intent": intent, "confidence": confidence, "fallback": fallback}}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Settings, Path]:
    project = tmp_path / "project"
    shutil.copytree(REPO_ROOT / "data" / "nlu", project / "data" / "nlu", ignore=shutil.ignore_patterns("review.yml*"))
    shutil.copytree(REPO_ROOT / "domain", project / "domain")
    (project / "tests" / "nlu").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "tests" / "nlu" / "heldout.yml", project / "tests" / "nlu" / "heldout.yml")
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    (eval_dir / "x.yml").write_text('nlu:\n- intent: greet\n  examples: |\n    - 你好呀\n', encoding="utf-8")
    calls = tmp_path / "calls"
    calls.mkdir()
    record = {"call_id": "sip-secret-id-1", "started_at": STARTED, "transcript": [
        {"t": 0.5, "who": "caller", "source": "keypad", "text": "****"},
        caller(SAID, "check_balance", 0.45, True), caller(XSS, "complaint", 0.5, False),
        caller("你好呀", "greet", 0.3, True), caller("查余额", "check_balance", 0.99, False)]}
    (calls / f"calls-{datetime.fromtimestamp(STARTED, timezone.utc):%Y%m%d}.jsonl").write_text(
        json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    base = Settings()
    settings = dataclasses.replace(
        base, gateway=dataclasses.replace(base.gateway, call_records_dir=str(calls), call_records_db_url=""),
        trainer=dataclasses.replace(base.trainer, project_dir=str(project), eval_dir=str(eval_dir)))
    return settings, project


async def client_for(settings: Settings, token: str = "") -> TestClient:
    settings = dataclasses.replace(settings, gateway=dataclasses.replace(settings.gateway, console_token=token))
    app = web.Application(middlewares=[json_errors_middleware])
    add_trainer_routes(app, settings)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


def key(index: int) -> str:
    return f"{datetime.fromtimestamp(STARTED, timezone.utc):%Y%m%d}-{call_digest('sip-secret-id-1')}-{index}"


async def test_the_page_lists_the_turns_to_review_escaped_with_the_agent_pages_headers(setup):
    settings, _ = setup
    client = await client_for(settings)
    try:
        response = await client.get("/trainer")
        body = await response.text()
        script = await client.get("/trainer/trainer.js")
    finally:
        await client.close()
    assert response.status == 200 and script.status == 200
    assert SAID in body and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body and "<script>alert" not in body
    assert '<td class="text">查余额</td>' not in body  # understood turns are not listed
    assert "sip-secret-id-1" not in body and key(1) in body and "****" not in body
    assert '<script src="/trainer/trainer.js">' in body
    headers = response.headers
    assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY" and "script-src 'self'" in headers["Content-Security-Policy"]


async def test_a_label_by_post_lands_in_the_review_file_once(setup):
    settings, project = setup
    client = await client_for(settings)
    try:
        items = await (await client.get("/trainer/api/items")).json()
        assert [i["text"] for i in items["groups"]["check_balance"]] == [SAID]
        answers = [await client.post("/trainer/api/labels", json={"key": key(1), "intent": "check_balance",
                                                                  "by": "li"}) for _ in range(2)]
        statuses = [(a.status, (await a.json())["status"]) for a in answers]
    finally:
        await client.close()
    assert statuses == [(200, "added"), (200, "unchanged")]
    data = yaml.safe_load((project / "data" / "nlu" / "review.yml").read_text(encoding="utf-8"))
    assert data["nlu"] == [{"intent": "check_balance", "examples": f"- {SAID}\n"}]
    assert f"call={call_digest('sip-secret-id-1')}" in (project / "data" / "nlu" / "review.yml").read_text()
    assert "by=web_li" in (project / "data" / "nlu" / "review.yml").read_text()


async def test_refusals_say_why(setup):
    settings, project = setup
    client = await client_for(settings)
    try:
        evaluation = await client.post("/trainer/api/labels", json={"key": key(3), "out_of_scope": True})
        unknown_key = await client.post("/trainer/api/labels", json={"key": key(4), "intent": "check_balance"})
        secure_key = await client.post("/trainer/api/labels", json={"key": key(0), "intent": "check_balance"})
        bad_intent = await client.post("/trainer/api/labels", json={"key": key(1), "intent": "call_start"})
        not_json = await client.post("/trainer/api/labels", data="key=x&intent=greet",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        answers = [(r.status, (await r.json())["error"]) for r in (evaluation, unknown_key, secure_key, bad_intent)]
    finally:
        await client.close()
    assert [status for status, _ in answers] == [422, 422, 422, 422] and not_json.status == 415
    assert "external evaluation set" in answers[0][1] and "no listed turn" in answers[1][1]
    assert not (project / "data" / "nlu" / "review.yml").exists()


async def test_csrf_a_foreign_origin_cannot_label(setup):
    settings, project = setup
    client = await client_for(settings)
    try:
        response = await client.post("/trainer/api/labels", json={"key": key(1), "intent": "check_balance"},
                                     headers={"Origin": "https://evil.example"})
    finally:
        await client.close()
    assert response.status == 403 and not (project / "data" / "nlu" / "review.yml").exists()


async def test_with_a_console_token_page_and_api_need_it(setup):
    settings, _ = setup
    token = "t" * 32
    client = await client_for(settings, token)
    try:
        page = await client.get("/trainer", allow_redirects=False)
        api = await client.get("/trainer/api/items")
        label = await client.post("/trainer/api/labels", json={"key": key(1), "intent": "check_balance"})
        with_bearer = await client.get("/trainer/api/items", headers={"Authorization": f"Bearer {token}"})
        with_token = await client.get(f"/trainer?token={token}", allow_redirects=False)
        after = await client.get("/trainer")  # the cookie from the redirect
        body = await page.text()
    finally:
        await client.close()
    assert (page.status, api.status, label.status) == (401, 401, 401) and SAID not in body
    assert with_bearer.status == 200 and with_token.status == 303 and after.status == 200


def test_the_gateway_serves_the_trainer_page():
    from bot.web.app import create_app

    app = create_app(Settings(), voice_runtime=object())
    assert {"/trainer", "/trainer/api/labels"} <= {resource.canonical for resource in app.router.resources()}


async def test_two_trainers_never_overwrite_each_other_unseen(setup):
    settings, project = setup
    client = await client_for(settings)
    try:
        first = await client.post("/trainer/api/labels", json={"key": key(1), "intent": "check_balance",
                                                               "expected": None})
        stale = await client.post("/trainer/api/labels", json={"key": key(1), "intent": "query_transactions",
                                                               "expected": None})
        seen = await client.post("/trainer/api/labels", json={"key": key(1), "intent": "query_transactions",
                                                              "expected": "check_balance"})
        stale_error = (await stale.json())["error"]
        items = await (await client.get("/trainer/api/items")).json()
        page = await (await client.get("/trainer")).text()
    finally:
        await client.close()
    assert (first.status, stale.status, seen.status) == (200, 409, 200)
    assert "labelled check_balance by now" in stale_error
    assert items["groups"]["check_balance"][0]["labelled"] == "query_transactions"
    assert 'data-labelled="query_transactions"' in page


async def test_a_second_listing_while_one_runs_is_told_to_retry(setup, monkeypatch):
    import bot.web.trainer as trainer

    settings, _ = setup
    started, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    real = trainer._listing

    def slow(*args):
        loop.call_soon_threadsafe(started.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=10)
        return real(*args)

    monkeypatch.setattr(trainer, "_listing", slow)
    client = await client_for(settings)
    try:
        first = asyncio.ensure_future(client.get("/trainer/api/items"))
        await asyncio.wait_for(started.wait(), 10)
        busy = await client.get("/trainer")
        release.set()
        done = await first
    finally:
        await client.close()
    assert busy.status == 503 and busy.headers["Retry-After"] == "5" and done.status == 200


async def test_the_list_reads_a_bounded_window_of_days(setup):
    settings, _ = setup
    client = await client_for(settings)
    try:
        too_many = await client.get("/trainer/api/items?days=400")
        not_a_number = await client.get("/trainer/api/items?days=x")
        one_day = await (await client.get("/trainer/api/items?days=1")).json()
    finally:
        await client.close()
    assert too_many.status == 400 and not_a_number.status == 400 and "check_balance" in one_day["groups"]


async def test_the_developers_test_calls_are_listed_only_when_asked(setup):
    settings, _ = setup
    calls = Path(settings.gateway.call_records_dir)
    day_file = next(calls.glob("calls-*.jsonl"))
    record = json.loads(day_file.read_text(encoding="utf-8"))
    record["call_id"], record["channel"] = "web-" + "f" * 32, "web"
    day_file.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    client = await client_for(settings)
    try:
        left_out = await (await client.get("/trainer/api/items")).json()
        asked = await (await client.get("/trainer/api/items?developers=1")).json()
    finally:
        await client.close()
    assert left_out["groups"] == {} and "check_balance" in asked["groups"]


async def test_answers_name_no_filesystem_path(setup, tmp_path):
    settings, _ = setup
    missing = dataclasses.replace(settings, trainer=dataclasses.replace(settings.trainer,
                                                                        eval_dir=str(tmp_path / "gone")))
    client = await client_for(settings)
    other = await client_for(missing)
    try:
        added = await (await client.post("/trainer/api/labels", json={"key": key(1), "intent": "check_balance"})).json()
        refused = await (await other.post("/trainer/api/labels", json={"key": key(1), "intent": "greet"})).json()
    finally:
        await client.close()
        await other.close()
    assert added["status"] == "added" and refused["error"]
    assert str(tmp_path) not in json.dumps([added, refused])


def test_trainer_settings_refuse_what_would_list_nothing_or_wait_forever():
    with pytest.raises(ValueError, match="NLU_REVIEW_LOW_CONFIDENCE"):
        Settings.from_env({"NLU_REVIEW_LOW_CONFIDENCE": "nan"})
    with pytest.raises(ValueError, match="NLU_SWAP_TIMEOUT_S"):
        Settings.from_env({"NLU_SWAP_TIMEOUT_S": "-1"})
    with pytest.raises(ValueError, match="NLU_REVIEW_DAYS"):
        Settings.from_env({"NLU_REVIEW_DAYS": "0"})
