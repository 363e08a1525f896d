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


def gateway_settings(rasa_url: str, records_dir) -> Settings:
    return Settings.from_env({"RASA_URL": rasa_url, "RASA_TOKEN": TOKEN, "RASA_TIMEOUT_S": "2",
                              "CONSOLE_MAX_CHARS": "100", "CALL_RECORDS_DIR": str(records_dir),
                              "CALLER_KEY_FILE": str(records_dir.parent / "secrets" / "caller-key")})


@pytest.fixture
async def client(fake_rasa, tmp_path):
    async with TestClient(TestServer(create_app(gateway_settings(fake_rasa.url, tmp_path / "calls")))) as test_client:
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


async def test_dead_rasa_gives_a_clear_error_not_a_stack_trace(unused_tcp_port, tmp_path):
    settings = gateway_settings(f"http://127.0.0.1:{unused_tcp_port}", tmp_path / "calls")
    async with TestClient(TestServer(create_app(settings))) as dead_client:
        resp = await dead_client.post("/console/api/calls", json={"caller_number": ""})
        body = await resp.json()
    assert resp.status == 502
    assert "Rasa" in body["error"] and "Traceback" not in body["error"]


def test_debug_from_tracker_tolerates_a_sparse_tracker():
    assert debug_from_tracker({}, secure=False) == {
        "intent": None, "confidence": None, "entities": [], "slots": {}, "actions": [], "active_loop": None}


# ---- the console's call records (bot/web/console_records.py) ----------------------------------------------------

def console_records(folder) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("calls-*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines()]


async def test_a_console_call_ended_by_the_dialogue_is_recorded_as_console_and_masked(fake_rasa, tmp_path):
    folder = tmp_path / "calls"
    async with TestClient(TestServer(create_app(gateway_settings(fake_rasa.url, folder)))) as client:
        call_id = (await start(client))["call_id"]
        for digits, secure in (("1234", False), ("135790", True)):
            await client.post(f"/console/api/calls/{call_id}/dtmf",
                              json={"caller_number": "13800000001", "digits": digits, "secure": secure,
                                    "expecting_digits": True})
        await client.post(f"/console/api/calls/{call_id}/messages",
                          json={"caller_number": "13800000001", "text": "卡号6222 0212 3456 7890"})
        turn = await (await client.post(f"/console/api/calls/{call_id}/dtmf",
                                        json={"caller_number": "13800000001", "digits": "0"})).json()
        assert turn["ended"] is True
        [record] = console_records(folder)  # written when the dialogue handed the call over, not at shutdown
    assert record["call_id"] == call_id and record["channel"] == "console"
    assert record["caller_number"] == "138****0001" and record["outcome"] == "handoff"
    assert record["handoff_reason"] == "human_agent" and record["end_cause"] == "handoff"
    assert len(record["caller_key"]) == 32
    text = json.dumps(record, ensure_ascii=False)
    assert "13800000001" not in text and "135790" not in text and "6222021234567890" not in text
    caller_turns = [t["text"] for t in record["transcript"] if t["who"] == "caller"]
    assert caller_turns[1] == SECURE_MASK and "****" in caller_turns[2]
    assert "report_card_loss" not in record["intents"] and record["intents"][0] == "dtmf"


async def test_console_calls_still_open_are_recorded_at_shutdown(fake_rasa, tmp_path):
    folder = tmp_path / "calls"
    async with TestClient(TestServer(create_app(gateway_settings(fake_rasa.url, folder)))) as client:
        call_id = (await start(client))["call_id"]
        assert console_records(folder) == []
    [record] = console_records(folder)
    assert record["call_id"] == call_id and record["end_cause"] == "shutdown" and record["channel"] == "console"


def test_idle_console_calls_are_recorded_and_open_ones_are_bounded(tmp_path, monkeypatch):
    from bot.call_records import CallRecordWriter
    from bot.rasa_client import BotReply
    from bot.web import console_records as module

    clock = [1000.0]
    records = module.ConsoleRecords(gateway_settings("http://127.0.0.1:9", tmp_path / "calls"),
                                    CallRecordWriter(tmp_path / "calls"), clock=lambda: clock[0])
    records.start("console-a", "13800000001")
    records.turn("console-a", kind="call_start", text="/call_start", secure=False,
                 reply=BotReply([{"text": "您好"}]), intent=None)
    clock[0] += module.IDLE_S
    records.start("console-b", "")  # sweeps the idle call first
    assert [r["call_id"] for r in console_records(tmp_path / "calls")] == ["console-a"]
    assert len(records) == 1
    monkeypatch.setattr(module, "MAX_OPEN", 3)
    for n in range(5):
        records.start(f"console-{n}", "")
    assert len(records) == 3
    written = [r["call_id"] for r in console_records(tmp_path / "calls")]
    assert written == ["console-a", "console-b", "console-0", "console-1"]  # the oldest first
    assert all(r["caller_key"] == "" for r in console_records(tmp_path / "calls")[1:])  # no number, no key


def test_the_dialogue_facts_of_a_console_call_reach_its_record(tmp_path):
    from bot.call_records import CallRecordWriter
    from bot.rasa_client import BotReply
    from bot.web.console_records import ConsoleRecords

    records = ConsoleRecords(gateway_settings("http://127.0.0.1:9", tmp_path / "calls"),
                             CallRecordWriter(tmp_path / "calls"))
    records.start("console-x", "13800000001")
    facts = [{"custom": {"event": "elderly", "value": True}},
             {"custom": {"event": "task_completed", "task": "check_balance"}},
             {"custom": {"event": "task_completed", "task": "<b>not a task</b>"}},
             {"custom": {"event": "survey_offered"}}]
    records.turn("console-x", kind="text", text="查余额", secure=False, reply=BotReply(facts), intent="check_balance")
    records.turn("console-x", kind="dtmf", text='/dtmf{"digits":"1"}', secure=False, intent="dtmf",
                 reply=BotReply([{"custom": {"event": "survey_answer", "score": 1}},
                                 {"text": "再见。"}, {"custom": {"event": "hangup"}}]))
    [record] = console_records(tmp_path / "calls")
    assert record["completed_tasks"] == ["check_balance"] and record["elderly"] is True
    assert (record["survey_offered"], record["survey_score"]) == (True, 1)
    assert record["outcome"] == "served_by_bot" and record["end_cause"] == "bot_hangup"
    assert record["intents"] == ["check_balance", "dtmf"]


def test_secure_input_is_masked_when_the_bot_asked_for_it_whatever_the_page_says(tmp_path):
    """The page's `secure` flag is the client's: a PIN keyed in two parts with secure:false is still masked, because
    the bot's reply asked for secure input; once it stops asking, input is kept again."""
    from bot.call_records import CallRecordWriter
    from bot.rasa_client import BotReply
    from bot.web.console_records import ConsoleRecords

    asks_pin = BotReply([{"text": "请输入密码。"}, {"custom": {"event": "expect", "input": "digits", "secure": True}}])
    records = ConsoleRecords(gateway_settings("http://127.0.0.1:9", tmp_path / "calls"),
                             CallRecordWriter(tmp_path / "calls"))
    records.start("console-p", "13800000001")
    records.turn("console-p", kind="call_start", text="/call_start", secure=False, reply=asks_pin, intent=None)
    assert records.expects_secure("console-p")
    records.turn("console-p", kind="dtmf", text='/dtmf{"digits":"123"}', secure=False, reply=asks_pin, intent=None)
    records.turn("console-p", kind="dtmf", text='/dtmf{"digits":"456"}', secure=False, intent=None,
                 reply=BotReply([{"text": "请问还要办理什么?"}]))
    assert not records.expects_secure("console-p")
    records.turn("console-p", kind="text", text="查余额 789", secure=False, reply=BotReply([]), intent=None)
    records.close()
    [record] = console_records(tmp_path / "calls")
    caller_turns = [t["text"] for t in record["transcript"] if t["who"] == "caller"]
    assert caller_turns == [SECURE_MASK, SECURE_MASK, "查余额 789"]
    assert not any(digits in turn["text"] for turn in record["transcript"] for digits in ("123", "456"))


def test_an_idle_console_call_ends_when_it_was_last_used_not_when_it_was_found(tmp_path):
    from bot.call_records import CallRecordWriter
    from bot.rasa_client import BotReply
    from bot.web import console_records as module

    clock = [1000.0]
    records = module.ConsoleRecords(gateway_settings("http://127.0.0.1:9", tmp_path / "calls"),
                                    CallRecordWriter(tmp_path / "calls"), clock=lambda: clock[0])
    records.start("console-a", "13800000001")
    records.start("console-b", "13800000002")
    records.turn("console-a", kind="call_start", text="/call_start", secure=False, reply=BotReply([]), intent=None)
    clock[0] += module.IDLE_S - 10
    records.turn("console-b", kind="call_start", text="/call_start", secure=False, reply=BotReply([]), intent=None)
    clock[0] += 100  # console-a has been idle for IDLE_S + 90 s when console-b is used again
    records.turn("console-b", kind="text", text="你好", secure=False, reply=BotReply([]), intent=None)
    [record] = console_records(tmp_path / "calls")  # found by a later request of another call, not only at a start
    assert record["call_id"] == "console-a" and record["end_cause"] == "console_idle"
    assert record["ended_at"] == 1000.0  # its last use, not the sweep's time
