"""Bad input over the REST contract: never a 500, always a sensible reply, and the server stays up."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.integration

BAD_INPUTS = {
    "empty": "",
    "spaces": "   ",
    "10k chars": "我要查余额" * 2000,
    "emoji only": "😀😀🙏🏦💳",
    "sql injection": "'; DROP TABLE events; --",
    "sql injection 2": "1234' OR '1'='1",
    "dtmf not json": "/dtmf{digits:135}",
    "dtmf wrong type": '/dtmf{"digits": 12345}',
    "dtmf letters": '/dtmf{"digits":"12ab"}',
    "dtmf empty": "/dtmf",
    "dtmf huge": '/dtmf{"digits":"' + "9" * 5000 + '"}',
    "unknown intent": "/transfer_all_money_now",
    "unknown intent with entities": '/nonexistent_intent{"amount": "1000000"}',
    "control characters": "\x00\x07\x1b[31m",
}


@pytest.fixture(scope="module")
def call(stack):
    sender = f"bad-{uuid.uuid4().hex[:8]}"
    stack.send(sender, "/call_start", caller="13900000003")
    return sender


@pytest.mark.parametrize("message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_gets_a_sensible_reply(stack, call, message):
    items = stack.send(call, message, caller="13900000003")
    texts = [item["text"] for item in items if item.get("text")]
    assert texts, f"no spoken reply to {message[:30]!r}: {items}"
    assert all("Traceback" not in text and "Exception" not in text for text in texts)


def test_server_still_alive_after_bad_input(stack, call):
    assert stack.procs["rasa"].poll() is None
    assert stack.send(call, "我要查余额", caller="13900000003")
