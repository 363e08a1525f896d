"""MaskingSQLTrackerStore: secure input is masked before it is written, and conversations survive a new store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, ActiveLoop, BotUttered, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from dialogue.tracker_store import (MASK, TURN_STORE_FAILURES, MaskingSQLTrackerStore, StaleConversation,
                                    secure_user_event_indexes)
from settings import REPO_ROOT

PIN = "135790"
SECURE_PROMPT = BotUttered("请输入6位电话银行密码。", data={"custom": {"event": "expect", "input": "digits", "max_length": 6, "secure": True}})
CARD_PROMPT = BotUttered("请说卡号后四位。", data={"custom": {"event": "expect", "input": "digits", "max_length": 4, "secure": False}})


def dtmf(digits: str) -> UserUttered:
    return UserUttered(f'/dtmf{{"digits":"{digits}"}}', intent={"name": "dtmf", "confidence": 1.0},
                       entities=[{"entity": "digits", "value": digits, "start": 0, "end": 0}])


def spoken(text: str, intent: str = "inform") -> UserUttered:
    return UserUttered(text, intent={"name": intent, "confidence": 0.9}, entities=[])


def verification_events(pin_message: UserUttered) -> list:
    return [
        ActionExecuted("action_listen"), spoken("查余额", "check_balance"),
        ActionExecuted("balance_form"), ActiveLoop("balance_form"), SlotSet("requested_slot", "card_last4"), CARD_PROMPT,
        ActionExecuted("action_listen"), dtmf("1234"),
        ActionExecuted("balance_form"), SlotSet("card_last4", "1234"), SlotSet("requested_slot", "pin"), SECURE_PROMPT,
        ActionExecuted("action_listen"), pin_message,
        ActionExecuted("balance_form"), SlotSet("pin", None), SlotSet("verified", True),
        SlotSet("requested_slot", None), ActiveLoop(None),
        ActionExecuted("action_listen"), spoken("谢谢", "thank"),
    ]


def test_only_the_answer_to_a_secure_prompt_is_secure():
    events = verification_events(dtmf(PIN))
    assert secure_user_event_indexes(events) == {13}  # the PIN answer, not the card digits before it


def test_pin_slot_makes_input_secure_even_without_the_expect_event():
    events = [ActiveLoop("balance_form"), SlotSet("requested_slot", "pin"), BotUttered("请输入密码"),
              ActionExecuted("action_listen"), spoken("一三五七九零")]
    assert secure_user_event_indexes(events) == {4}


def store(tmp_path: Path) -> MaskingSQLTrackerStore:
    return MaskingSQLTrackerStore(domain=Domain.load(str(REPO_ROOT / "domain")), db_url=f"sqlite:///{tmp_path / 'sub' / 'tracker.db'}")


def raw_rows(tmp_path: Path) -> str:
    with sqlite3.connect(tmp_path / "sub" / "tracker.db") as db:
        return "\n".join(row[0] for row in db.execute("SELECT data FROM events"))


async def test_keyed_pin_never_reaches_the_database(tmp_path: Path):
    tracker = DialogueStateTracker.from_events("call-1", verification_events(dtmf(PIN)))
    await store(tmp_path).save(tracker)
    rows = raw_rows(tmp_path)
    assert PIN not in rows and MASK in rows
    assert "1234" in rows  # the card's last 4 digits are not secret and stay readable


async def test_spoken_pin_is_masked_too_and_saving_twice_appends_only_new_events(tmp_path: Path):
    events = verification_events(spoken("一三五七九零"))
    tracker_store = store(tmp_path)
    first = DialogueStateTracker.from_events("call-2", events[:14])
    await tracker_store.save(first)
    second = DialogueStateTracker.from_events("call-2", events)
    await tracker_store.save(second)
    rows = raw_rows(tmp_path)
    assert "一三五七九零" not in rows and rows.count('"event": "user"') == 4


async def test_conversation_survives_a_new_store_on_the_same_file(tmp_path: Path):
    tracker = DialogueStateTracker.from_events("call-3", verification_events(dtmf(PIN)))
    await store(tmp_path).save(tracker)
    restored = await store(tmp_path).retrieve("call-3")
    assert restored.get_slot("verified") is True and restored.get_slot("card_last4") == "1234"
    assert restored.latest_message.intent["name"] == "thank"


def test_default_database_comes_from_settings(tmp_path: Path, monkeypatch):
    import settings

    monkeypatch.setenv("TRACKER_DB_URL", f"sqlite:///{tmp_path / 'from_env' / 't.db'}")
    settings.get_settings.cache_clear()
    try:
        MaskingSQLTrackerStore(domain=Domain.load(str(REPO_ROOT / "domain")))
    finally:
        settings.get_settings.cache_clear()
    assert (tmp_path / "from_env" / "t.db").exists()


async def test_a_turn_that_could_not_read_the_conversation_never_saves_over_it(tmp_path: Path):
    """The read failed (the database was away), so Rasa ran the turn on a fresh, unverified tracker; the database
    is back when the turn saves. Appending the fresh tracker's events would make the stored caller unverified."""
    stored = store(tmp_path)
    await stored.save(DialogueStateTracker.from_events("call-7", verification_events(dtmf("135790"))))
    fresh = DialogueStateTracker.from_events("call-7", [SlotSet("verified", False)] * 12 + [UserUttered("查余额")])
    failures = ["retrieve: OperationalError"]
    token = TURN_STORE_FAILURES.set(failures)
    try:
        with pytest.raises(StaleConversation):
            await stored.save(fresh)
    finally:
        TURN_STORE_FAILURES.reset(token)
    back = await stored.retrieve("call-7")
    assert back.get_slot("verified") is True and back.latest_message.text != "查余额"
    assert failures == ["retrieve: OperationalError", "save: StaleConversation"]


async def test_a_masked_pin_turn_keeps_its_message_id_so_a_repeat_is_answered_not_run(tmp_path: Path):
    """The gateway sends a turn again when its Rasa server died; a PIN turn run twice would count two attempts.
    The masked user event keeps the turn's message_id, so the channel finds it and answers from the tracker."""
    from types import SimpleNamespace

    from rasa.core.lock_store import InMemoryLockStore

    from dialogue.channel import CallChannel

    pin = dtmf(PIN)
    pin.message_id = "turn-pin-000013"
    events = verification_events(pin)
    events.insert(events.index(pin) + 2, BotUttered("验证成功。"))  # after the form's ActionExecuted
    conversations = store(tmp_path)
    await conversations.save(DialogueStateTracker.from_events("call-3", events))
    assert PIN not in raw_rows(tmp_path) and "turn-pin-000013" in raw_rows(tmp_path)

    agent = SimpleNamespace(tracker_store=conversations, lock_store=InMemoryLockStore(), domain=None)
    request = SimpleNamespace(app=SimpleNamespace(ctx=SimpleNamespace(agent=agent)))
    turns: list = []

    async def rasa_turn(message) -> None:
        turns.append(message)

    reply = await CallChannel()._handle(rasa_turn, request, "call-3", f'/dtmf{{"digits":"{PIN}"}}', {},
                                        message_id="turn-pin-000013")
    assert turns == [] and reply == [{"recipient_id": "call-3", "text": "验证成功。"}]
