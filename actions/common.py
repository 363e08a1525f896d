"""Helpers every action shares: the bank service, reading the call from the tracker, digits in the latest message.

Actions stay thin: they read the tracker, call BankService and choose what to say.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.bank.service import BankService
from actions.cn_numbers import digits_from_speech, extract_digits
from call_contract import KEYPAD_KEYS as DTMF_ALPHABET
from call_contract import TASKS, task_completed

# Intents a caller uses to ask for a task (the contract's task names); the handoff context names the latest of them.
TASK_INTENTS = TASKS
# Slots of a task in progress; cleared when a task ends so the next form does not start pre-confirmed.
TASK_SLOTS = (
    "confirmed", "amount_cents", "to_card", "complaint_text", "complaint_where", "complaint_when", "complaint_ticket",
    "complaint_more", "location", "currency",
)


def bank_service() -> BankService:
    """The process-wide bank service (tests replace this function to use a temporary database)."""
    return BankService.from_settings()


def call_id(tracker: Tracker) -> str:
    return tracker.sender_id


def latest_intent(tracker: Tracker) -> str | None:
    return (tracker.latest_message.get("intent") or {}).get("name")


def user_events(tracker: Tracker) -> list[dict[str, Any]]:
    return [event for event in tracker.events if event.get("event") == "user"]


def event_intent(event: dict[str, Any]) -> str | None:
    return ((event.get("parse_data") or {}).get("intent") or {}).get("name")


def latest_task_intent(tracker: Tracker) -> str | None:
    """The task the caller asked for most recently (for the handoff context), or None."""
    for event in reversed(user_events(tracker)):
        if event_intent(event) in TASK_INTENTS:
            return event_intent(event)
    return None


def latest_user_event_with_intent(tracker: Tracker, intents: Iterable[str]) -> dict[str, Any] | None:
    wanted = set(intents)
    for event in reversed(user_events(tracker)):
        if event_intent(event) in wanted:
            return event
    return None


def entity_values(message: dict[str, Any], entity: str) -> list[str]:
    return [str(e.get("value")) for e in message.get("entities") or [] if e.get("entity") == entity and e.get("value") is not None]


def keyed_digits(tracker: Tracker) -> str | None:
    """Keypad digits of the latest message (`/dtmf{"digits": ...}`), without the closing '#'; None if none or malformed."""
    for value in entity_values(tracker.latest_message, "digits"):
        value = value.strip().rstrip("#")
        if value and set(value) <= DTMF_ALPHABET:
            return value
    return None


def digits_in_latest_message(tracker: Tracker, length: int | None = None) -> str | None:
    """Digits the caller keyed or spoke in the latest message (一二三四 / 「尾号是幺二三四」 → "1234"), or None.

    With `length`, a sentence yields only a run of exactly that many digits.
    """
    keyed = keyed_digits(tracker)
    if keyed is not None:
        return keyed if keyed.isdigit() else None
    if latest_intent(tracker) == "dtmf":
        return None
    text = tracker.latest_message.get("text") or ""
    if text.startswith("/"):
        return None
    return digits_from_speech(text) or extract_digits(text, length)


def request_id(tracker: Tracker, task: str, *details: object) -> str:
    """Idempotency key of a money-moving request: this call's conversation session, the task and what it moves.

    Asking for the same movement again in the same call (say after an apology for a slow turn) gets the bank's
    stored result back instead of moving the money twice. A new call (a new session) is a new request.
    """
    session = next((str(event.get("timestamp")) for event in reversed(tracker.events)
                    if event.get("event") in ("session_started", "restart")), "0")
    what = ":".join(str(detail) for detail in details)
    key = f"{tracker.sender_id}:{session}:{task}:{what}"
    return key if len(key) <= 128 else f"{task}:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"


def task_done(dispatcher: CollectingDispatcher, task: str) -> None:
    """Tells the gateway the caller's business `task` is done (call_contract.TASKS): the call record, and the KPIs'
    resolution rate, count it. Called only where the task really completed, never on a refusal or a failure."""
    dispatcher.utter_message(json_message=task_completed(task))


def in_form(tracker: Tracker) -> bool:
    """Inside a form the rules run the form right after an interrupting action, and the form asks its question again."""
    return tracker.active_loop.get("name") is not None


def clear_task_slots() -> list[dict[str, Any]]:
    return [SlotSet(slot, None) for slot in TASK_SLOTS]
