"""The call contract against a real Rasa server and action server: flows, bad input, PIN masking, and
an apology with a handoff when the action server is slow or down (never silence, never a 500)."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time

import pytest

from tests.rasa_servers import custom, texts

pytestmark = pytest.mark.integration

ELDERLY = {"caller_number": "13800000001", "channel": "voice", "asr_available": True}
UNKNOWN = {"caller_number": "02000000000", "channel": "text", "asr_available": True}
CALL_IDS = itertools.count(1)


def new_call() -> str:
    return f"dlg-live-{time.time_ns()}-{next(CALL_IDS)}"


def test_elderly_greeting_then_green_channel_in_the_same_turn(dialogue_servers):
    call = new_call()
    status, greeting = dialogue_servers.send(call, "/call_start", ELDERLY)
    assert status == 200 and custom(greeting, "speech_rate") == {"event": "speech_rate", "rate": 0.8}
    assert "王先生" in texts(greeting)
    status, reply = dialogue_servers.send(call, "/green_channel")
    handoff = custom(reply, "handoff")
    assert handoff["queue"] == "elderly_priority" and handoff["reason"] == "green_channel"


def test_balance_with_keyed_card_and_pin_and_the_pin_is_masked(dialogue_servers):
    call = new_call()
    dialogue_servers.send(call, "/call_start", UNKNOWN)
    _, ask_card = dialogue_servers.send(call, "/check_balance")
    assert custom(ask_card, "expect") == {"event": "expect", "input": "digits", "max_length": 4, "secure": False}
    _, ask_pin = dialogue_servers.send(call, '/dtmf{"digits":"1234"}')
    assert custom(ask_pin, "expect")["secure"] is True
    _, balance = dialogue_servers.send(call, '/dtmf{"digits":"135790"}')
    assert "52340元5角" in texts(balance)
    tracker = json.dumps(dialogue_servers.tracker(call), ensure_ascii=False)
    assert "135790" not in tracker and "1234" in tracker
    with sqlite3.connect(dialogue_servers.workdir / "tracker.db") as db:
        stored = "\n".join(row[0] for row in db.execute("SELECT data FROM events"))
    assert "135790" not in stored and "[secure input]" in stored
    for log in ("rasa.log", "actions.log"):
        assert "135790" not in (dialogue_servers.workdir / log).read_text(errors="replace")
    _, repeated = dialogue_servers.send(call, "/repeat")
    assert texts(repeated) == texts(balance)


@pytest.mark.parametrize(
    "message",
    ["", "   ", "查" * 10_000, "😀🙏🏦", "'; DROP TABLE events; --", "1 OR 1=1", "/dtmf{bad json",
     '/dtmf{"digits":12}', '/dtmf{"digits":"abc"}', "/no_such_intent", '/check_balance{"card_last4":["x"]}',
     "\x00\x01\x02", None, 42],
)
def test_bad_input_gets_a_reply_and_never_a_500(dialogue_servers, message):
    call = new_call()
    dialogue_servers.send(call, "/call_start", UNKNOWN)
    status, reply = dialogue_servers.send(call, message)
    assert status == 200 and reply, f"no reply to {message!r}"


def test_malformed_request_bodies_get_400_not_500(dialogue_servers):
    import urllib.request

    for body in (b"not json", b"[]", b'{"message": "hi"}', b'{"sender": "", "message": "hi"}'):
        request = urllib.request.Request(f"{dialogue_servers.rasa_url}/webhooks/rest/webhook", data=body,
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=10)
        assert error.value.code == 400


@pytest.mark.parametrize("mode", ["slow", "down"])
def test_action_server_slow_or_down_gives_an_apology_and_a_handoff(dialogue_servers, mode):
    call = new_call()
    dialogue_servers.send(call, "/call_start", ELDERLY)
    dialogue_servers.relay.mode = mode
    try:
        started = time.monotonic()
        status, reply = dialogue_servers.send(call, "/human_agent")
        elapsed = time.monotonic() - started
    finally:
        dialogue_servers.relay.mode = "pass"
    assert status == 200 and "抱歉" in texts(reply)
    handoff = custom(reply, "handoff")
    assert handoff["reason"] == "action_unavailable" and handoff["queue"] == "elderly_priority"
    assert elapsed < 10.0  # bounded by the action timeout, not Rasa's 5-minute default
    status, after = dialogue_servers.send(call, "/greet")
    assert status == 200 and after  # the conversation goes on once the action server is back


def test_keypad_menu_choice_callback_ticket_and_hangup(dialogue_servers):
    call = new_call()
    dialogue_servers.send(call, "/call_start", UNKNOWN)
    _, menu = dialogue_servers.send(call, '/dtmf{"digits":"*"}')
    assert "查询网点请按7" in texts(menu)
    _, where = dialogue_servers.send(call, '/dtmf{"digits":"7"}')
    assert "哪个区" in texts(where)
    _, offer = dialogue_servers.send(call, "/transfer_failed")
    assert "回电" in texts(offer)
    _, ticket = dialogue_servers.send(call, '/dtmf{"digits":"1"}')
    assert "工单号" in texts(ticket)
    _, survey = dialogue_servers.send(call, "/goodbye")  # the satisfaction survey first (on by default)
    assert custom(survey, "survey_offered") and custom(survey, "hangup") is None
    _, bye = dialogue_servers.send(call, '/dtmf{"digits":"1"}')
    assert custom(bye, "hangup") == {"event": "hangup"}


def test_repayment_read_back_and_confirmation_by_keypad(dialogue_servers):
    call = new_call()
    dialogue_servers.send(call, "/call_start", ELDERLY)
    for message in ("/credit_card_repayment", '/dtmf{"digits":"1234"}', '/dtmf{"digits":"135790"}'):
        _, reply = dialogue_servers.send(call, message)
    assert "还款多少" in texts(reply)
    _, read_back = dialogue_servers.send(call, '/dtmf{"digits":"500"}')
    assert "500元" in texts(read_back) and "按一" in texts(read_back)
    _, done = dialogue_servers.send(call, '/dtmf{"digits":"1"}')
    assert "还款成功" in texts(done)
