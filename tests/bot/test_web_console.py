"""The console's JSON API against a scripted Rasa: the call contract it sends and the turns it returns."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.web.app import create_app
from bot.web.console import debug_from_tracker
from call_contract import SECURE_MASK
from settings import Settings
from tests.bot.fake_rasa import TOKEN, FakeRasa, running_fake_rasa


@pytest.fixture
async def fake_rasa():
    async with running_fake_rasa() as fake:
        yield fake


def gateway_settings(rasa_url: str) -> Settings:
    return Settings.from_env({"RASA_URL": rasa_url, "RASA_TOKEN": TOKEN, "RASA_TIMEOUT_S": "2",
                              "CONSOLE_MAX_CHARS": "100"})


@pytest.fixture
async def client(fake_rasa):
    async with TestClient(TestServer(create_app(gateway_settings(fake_rasa.url)))) as test_client:
        yield test_client


async def start(client) -> dict:
    resp = await client.post("/console/api/calls", json={"caller_number": "13800000001"})
    assert resp.status == 200
    return await resp.json()


async def test_console_page_is_served_without_external_assets(client):
    resp = await client.get("/console")
    html = await resp.text()
    assert resp.status == 200
    assert 'id="keypad-buffer"' in html and "13900000003" in html
    assert "http://" not in html and "https://" not in html  # offline: no CDN
    for asset in ("console.js", "console.css"):
        assert (await client.get(f"/console/static/{asset}")).status == 200


async def test_start_call_sends_call_start_with_text_channel_metadata(client, fake_rasa):
    turn = await start(client)
    sent = fake_rasa.received[0]
    assert sent["message"] == "/call_start"
    assert sent["metadata"] == {"caller_number": "13800000001", "channel": "text"}
    assert sent["sender"] == turn["call_id"] and turn["call_id"].startswith("console-")
    assert turn["texts"][0].startswith("王先生您好")
    assert turn["events"] == [{"event": "speech_rate", "rate": 0.8}]
    assert turn["debug"]["intent"] == "call_start"
    assert fake_rasa.tracker_requests == [(turn["call_id"], TOKEN)]


async def test_each_call_gets_its_own_sender_id(client):
    assert (await start(client))["call_id"] != (await start(client))["call_id"]


async def test_text_turn_returns_expect_and_debug(client, fake_rasa):
    call_id = (await start(client))["call_id"]
    resp = await client.post(f"/console/api/calls/{call_id}/messages",
                             json={"caller_number": "13800000001", "text": "  我要挂失  "})
    turn = await resp.json()
    assert fake_rasa.received[-1]["message"] == "我要挂失"
    assert turn["expect"] == {"event": "expect", "input": "digits", "max_length": 4, "secure": False}
    assert turn["debug"]["intent"] == "report_card_loss"
    assert turn["debug"]["confidence"] == pytest.approx(0.97)
    assert turn["debug"]["slots"] == {"caller_number": "13800000001", "verified": False}  # empty slots hidden
    assert turn["debug"]["actions"] == ["utter_greet"]
    assert turn["debug"]["entities"][0]["value"] == "1234"
    assert turn["ended"] is False


async def test_keypad_digits_use_the_dtmf_contract(client, fake_rasa):
    call_id = (await start(client))["call_id"]
    resp = await client.post(f"/console/api/calls/{call_id}/dtmf",
                             json={"caller_number": "13800000001", "digits": "1234", "expecting_digits": True})
    turn = await resp.json()
    assert fake_rasa.received[-1]["message"] == '/dtmf{"digits":"1234"}'
    assert turn["expect"]["secure"] is True


async def test_secure_input_masks_entities_in_debug(client):
    call_id = (await start(client))["call_id"]
    resp = await client.post(f"/console/api/calls/{call_id}/dtmf",
                             json={"caller_number": "13800000001", "digits": "135790", "secure": True,
                                   "expecting_digits": True})
    body = await resp.text()
    assert "1234" not in body  # the fake's entity value is masked too
    assert json.loads(body)["debug"]["entities"][0]["value"] == SECURE_MASK


async def test_human_key_alone_asks_for_an_agent_when_no_digits_expected(client, fake_rasa):
    call_id = (await start(client))["call_id"]
    turn = await (await client.post(f"/console/api/calls/{call_id}/dtmf",
                                    json={"caller_number": "13800000001", "digits": "0"})).json()
    assert fake_rasa.received[-1]["message"] == "/human_agent"
    assert turn["ended"] is True and turn["events"][0]["queue"] == "elderly_priority"


@pytest.mark.parametrize("path_suffix, body, needle", [
    ("dtmf", {"digits": "12a4"}, "keypad"),
    ("dtmf", {"digits": ""}, "keypad"),
    ("dtmf", {"digits": 1234}, "keypad"),
    ("messages", {"text": None}, "string"),
    ("messages", {"text": "长" * 101}, "too long"),
    ("messages", {"text": "hi", "caller_number": "13800000001; DROP TABLE"}, "caller number"),
])
async def test_bad_input_gets_a_clear_400(client, fake_rasa, path_suffix, body, needle):
    call_id = (await start(client))["call_id"]
    resp = await client.post(f"/console/api/calls/{call_id}/{path_suffix}", json=body)
    assert resp.status == 400
    assert needle in (await resp.json())["error"]
    assert [p["message"] for p in fake_rasa.received] == ["/call_start"]  # nothing else reached Rasa


async def test_non_json_body_and_bad_call_id_are_rejected(client):
    resp = await client.post("/console/api/calls", data=b"\xff\xfe not json",
                             headers={"Content-Type": "application/json"})
    assert resp.status == 400 and "JSON" in (await resp.json())["error"]
    resp = await client.post("/console/api/calls", data=b'{"caller_number": ""}')  # not declared as JSON
    assert resp.status == 415 and "JSON" in (await resp.json())["error"]
    resp = await client.post("/console/api/calls/..%2Fstatus/messages", json={"text": "x"})
    assert resp.status in (400, 404)


async def test_dead_rasa_gives_a_clear_error_not_a_stack_trace(unused_tcp_port):
    settings = gateway_settings(f"http://127.0.0.1:{unused_tcp_port}")
    async with TestClient(TestServer(create_app(settings))) as dead_client:
        resp = await dead_client.post("/console/api/calls", json={"caller_number": ""})
        body = await resp.json()
    assert resp.status == 502
    assert "Rasa" in body["error"] and "Traceback" not in body["error"]


def test_debug_from_tracker_tolerates_a_sparse_tracker():
    assert debug_from_tracker({}, secure=False) == {
        "intent": None, "confidence": None, "entities": [], "slots": {}, "actions": [], "active_loop": None}
