"""The keypad menu and the human key: both come from the call contract, so HUMAN_KEY set for the gateway is the key
the dialogue announces and obeys (the drift of issue 11: HUMAN_KEY=9 once still made the menu say 「人工服务请按0」)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from settings import REPO_ROOT

# Run where HUMAN_KEY is set before anything is imported, as it is for the action server's process.
KEYPAD_UNDER_HUMAN_KEY = """
import asyncio, json
from rasa_sdk.executor import CollectingDispatcher
from actions.call import ActionDtmf
from actions.keypad import KEYPAD_MENU, intent_for_key, menu_text
from tests.actions.dialogue_harness import Call, dtmf

async def main():
    dispatcher = CollectingDispatcher()
    await ActionDtmf().run(dispatcher, Call().say(dtmf("9")).tracker(), {})
    events = [m["custom"] for m in dispatcher.messages if isinstance(m.get("custom"), dict)]
    print(json.dumps({"menu": menu_text(), "intent": intent_for_key("9"), "menu_keys": sorted(KEYPAD_MENU),
                      "handoff": next((e for e in events if e.get("event") == "handoff"), None)}, ensure_ascii=False))

asyncio.run(main())
"""


def keypad_under(human_key: str, tmp_path) -> dict:
    environ = dict(os.environ, HUMAN_KEY=human_key, BANK_DB_URL=f"sqlite:///{tmp_path / 'bank.db'}",
                   BANK_PIN_HASH_ITERATIONS="1000")
    done = subprocess.run([sys.executable, "-c", KEYPAD_UNDER_HUMAN_KEY], cwd=REPO_ROOT, env=environ,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_human_key_from_the_environment_is_the_key_the_menu_announces_and_the_action_obeys(tmp_path):
    seen = keypad_under("9", tmp_path)
    assert "人工服务请按9" in seen["menu"] and "请按0" in seen["menu"]  # the task 9 had moves to the free 0
    assert "人工服务请按0" not in seen["menu"] and seen["menu"].count("请按9") == 1
    assert seen["intent"] == "human_agent"
    assert "9" not in seen["menu_keys"] and "0" in seen["menu_keys"]
    assert seen["handoff"] is not None and seen["handoff"]["reason"] == "human_agent"


def test_default_menu_is_unchanged():
    from actions.keypad import HUMAN_KEY, KEYPAD_MENU, MENU_KEY, intent_for_key, menu_text

    assert (HUMAN_KEY, MENU_KEY) == ("0", "*")
    assert sorted(KEYPAD_MENU) == list("123456789")
    assert intent_for_key("1") == "check_balance" and intent_for_key("9") == "complaint"
    assert intent_for_key("0") == "human_agent" and intent_for_key("#") is None
    assert menu_text().startswith("查询余额请按1，") and menu_text().endswith("人工服务请按0，重听请按星号键。")
