"""The keypad menu and the human key: both come from the call contract, so HUMAN_KEY set for the gateway is the key
the dialogue announces and obeys (the drift of issue 11: HUMAN_KEY=9 once still made the menu say 「人工服务请按0」;
issue 8: the PIN lock-out still said 「按0」). The menu also routes a key to the green channel (issue 8)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from settings import REPO_ROOT
from tests.actions.dialogue_harness import Call, dtmf, project_domain

# Run where HUMAN_KEY is set before anything is imported, as it is for the action server's process. Every text that
# names the human key is produced here by its own action: the elderly greeting, the second 「没听明白」 and the PIN
# lock-out.
KEYPAD_UNDER_HUMAN_KEY = """
import asyncio, json
from rasa_sdk.executor import CollectingDispatcher
from actions.accounts import ActionCheckBalance
from actions.call import ActionCallStart, ActionDtmf
from actions.keypad import KEYPAD_MENU, intent_for_key, menu_text
from actions.service import ActionNotUnderstood
from tests.actions.dialogue_harness import Call, dtmf, user

async def main():
    dispatcher = CollectingDispatcher()
    await ActionDtmf().run(dispatcher, Call().say(dtmf("9")).tracker(), {})
    events = [m["custom"] for m in dispatcher.messages if isinstance(m.get("custom"), dict)]
    greeting = await Call().say(user("/call_start", "call_start", metadata={"caller_number": "13800000001"})).run(
        ActionCallStart())
    confused = Call()
    for _ in range(2):
        not_understood = await confused.say(user("今天天气怎么样", "out_of_scope")).run(ActionNotUnderstood())
    locked = Call()
    locked.slots.update(pin_locked=True)
    lock_out = await locked.say(user("查余额", "check_balance")).run(ActionCheckBalance())
    print(json.dumps({"menu": menu_text(), "intent": intent_for_key("9"), "green_key_intent": intent_for_key("0"),
                      "menu_keys": sorted(KEYPAD_MENU),
                      "handoff": next((e for e in events if e.get("event") == "handoff"), None),
                      "said": {"greeting": greeting.text, "not_understood": not_understood.text,
                               "pin_locked": lock_out.text}}, ensure_ascii=False))

asyncio.run(main())
"""
# 「说「人工」或按0」「或者按0」: where a text tells the caller which key reaches a person
HUMAN_KEY_NAMED = re.compile(r"人工[^。？]*?或者?按(\d|[零〇一二三四五六七八九])")


def keypad_under(human_key: str, tmp_path) -> dict:
    environ = dict(os.environ, HUMAN_KEY=human_key, BANK_DB_URL=f"sqlite:///{tmp_path / 'bank.db'}",
                   BANK_PIN_HASH_ITERATIONS="1000")
    done = subprocess.run([sys.executable, "-c", KEYPAD_UNDER_HUMAN_KEY], cwd=REPO_ROOT, env=environ,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_human_key_from_the_environment_is_the_key_the_menu_announces_and_the_action_obeys(tmp_path):
    seen = keypad_under("9", tmp_path)
    assert "人工服务请按9" in seen["menu"] and "绿色通道请按0" in seen["menu"]  # the entry 9 had moves to the free 0
    assert "人工服务请按0" not in seen["menu"] and seen["menu"].count("请按9") == 1
    assert seen["intent"] == "human_agent" and seen["green_key_intent"] == "green_channel"
    assert "9" not in seen["menu_keys"] and "0" in seen["menu_keys"]
    assert seen["handoff"] is not None and seen["handoff"]["reason"] == "human_agent"


def test_every_text_that_names_the_human_key_names_the_configured_one(tmp_path):
    said = keypad_under("9", tmp_path)["said"]
    for what, text in said.items():
        assert HUMAN_KEY_NAMED.findall(text) == ["9"], f"{what}: {text}"


def test_no_domain_response_names_a_human_key_of_its_own():
    """The key comes in as {human_key} (call_contract.human_key()), never written into the words."""
    for name, variations in project_domain()["responses"].items():
        for variation in variations:
            assert not HUMAN_KEY_NAMED.search(variation.get("text") or ""), name


def test_default_menu_is_unchanged_but_for_the_green_channel():
    from actions.keypad import HUMAN_KEY, KEYPAD_MENU, MENU_KEY, intent_for_key, menu_text

    assert (HUMAN_KEY, MENU_KEY) == ("0", "*")
    assert sorted(KEYPAD_MENU) == list("123456789")
    assert intent_for_key("1") == "check_balance" and intent_for_key("7") == "branch_locator"
    assert intent_for_key("0") == "human_agent" and intent_for_key("#") is None
    assert menu_text().startswith("查询余额请按1，") and menu_text().endswith("人工服务请按0，重听请按星号键。")


def test_the_menu_offers_the_green_channel_on_a_key_of_its_own():
    from actions.keypad import KEYPAD_MENU, intent_for_key, menu_text

    green = [key for key, (intent, _) in KEYPAD_MENU.items() if intent == "green_channel"]
    assert green == ["9"] and intent_for_key("9") == "green_channel"
    assert "绿色通道请按9，人工服务请按0" in menu_text()
    assert "green_channel" in project_domain()["intents"]  # the key is replayed as this intent


async def test_the_green_channel_key_reaches_the_elderly_priority_queue(bank_for_actions):
    from actions.call import ActionDtmf
    from actions.service import ActionGreenChannel

    call = Call()
    chosen = await call.say(dtmf("9")).run(ActionDtmf())
    replayed = [event for event in chosen.events if event["event"] == "user"]
    assert [event["parse_data"]["intent"]["name"] for event in replayed] == ["green_channel"]
    call.say(replayed[0])  # the rules answer the replayed intent as if it were said
    handoff = (await call.run(ActionGreenChannel())).custom("handoff")
    assert handoff["queue"] == "elderly_priority" and handoff["reason"] == "green_channel"
    assert handoff["context"]["green_channel"] is True
