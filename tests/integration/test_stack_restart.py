"""A conversation survives a kill -9 of the Rasa server: the SQL tracker store keeps it."""

from __future__ import annotations

import signal

import pytest

from tests.integration.caller import Caller, digits_in, expect_of, joined, texts

pytestmark = pytest.mark.integration


def user_turns(tracker: dict) -> int:
    return sum(1 for event in tracker.get("events", []) if event.get("event") == "user")


def test_conversation_continues_after_rasa_is_killed(stack):
    wang = Caller(stack, "13800000001", card="1234", pin="135790")
    wang.start()
    reply = wang.answer_prompts(wang.say("我的卡丢了"), done=lambda items: bool((expect_of(items) or {}).get("secure")))
    assert (expect_of(reply) or {}).get("secure"), f"the flow never asked for the PIN: {texts(reply)}"
    before = stack.tracker(wang.sender)

    stack.stop("rasa", sig=signal.SIGKILL, grace_s=0)
    stack.start("rasa")
    stack.wait_ready("rasa")

    after = stack.tracker(wang.sender)
    assert user_turns(after) == user_turns(before)
    assert (after.get("active_loop") or {}).get("name") == (before.get("active_loop") or {}).get("name")
    # The PIN now is answered where the conversation was: no greeting, no new card-digits question.
    reply = wang.key("135790")
    assert "欢迎" not in joined(reply) and "后四位" not in joined(reply), texts(reply)
    reply = wang.answer_prompts(reply, done=lambda items: "挂失" in joined(items) and len(digits_in(joined(items))) >= 6)
    assert "挂失" in wang.all_texts()
