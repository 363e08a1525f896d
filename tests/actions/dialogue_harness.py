"""Run Rasa SDK actions the way the action server does: a real Tracker built from events, a CollectingDispatcher,
the project's real domain, and the real BankService on a temporary database (see conftest.bank_service)."""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from settings import REPO_ROOT

CALL_ID = "call-test-1"
MESSAGE_IDS = itertools.count(1)


@functools.lru_cache(maxsize=1)
def project_domain() -> dict[str, Any]:
    from rasa.shared.core.domain import Domain

    return Domain.load(str(REPO_ROOT / "domain")).as_dict()


def render(message: dict[str, Any]) -> dict[str, Any]:
    """A dispatcher message as the Rasa server sends it: `response=` templates filled in from the domain."""
    name = message.get("response")
    if not name:
        return message
    variation = project_domain()["responses"][name][0]
    values = {k: v for k, v in message.items() if isinstance(v, str)}
    rendered = dict(message, text=variation.get("text", "").format(**values) if variation.get("text") else None)
    if variation.get("custom"):
        rendered["custom"] = variation["custom"]
    return rendered


def user(text: str, intent: str, entities: dict[str, str] | None = None, metadata: dict | None = None) -> dict[str, Any]:
    entity_list = [{"entity": k, "value": v, "start": 0, "end": 0} for k, v in (entities or {}).items()]
    parse_data = {"text": text, "intent": {"name": intent, "confidence": 1.0}, "entities": entity_list}
    return {"event": "user", "text": text, "parse_data": parse_data, "metadata": metadata or {},
            "message_id": f"m{next(MESSAGE_IDS)}"}


def dtmf(digits: str) -> dict[str, Any]:
    return user(f'/dtmf{{"digits":"{digits}"}}', "dtmf", {"digits": digits})


def bot(text: str | None = None, custom: dict | None = None) -> dict[str, Any]:
    return {"event": "bot", "text": text, "data": {"custom": custom} if custom else {}}


def slot(name: str, value: Any) -> dict[str, Any]:
    return {"event": "slot", "name": name, "value": value}


@dataclass
class Call:
    """A conversation under test: its events and slots, updated by every action that runs."""

    events: list[dict[str, Any]] = field(default_factory=list)
    slots: dict[str, Any] = field(default_factory=dict)
    active_loop: str | None = None

    def __post_init__(self) -> None:
        for name, spec in project_domain()["slots"].items():
            self.slots.setdefault(name, spec.get("initial_value"))

    def say(self, event: dict[str, Any]) -> "Call":
        self.events.append(event)
        return self

    def tracker(self) -> Tracker:
        latest = next((e for e in reversed(self.events) if e["event"] == "user"), {"parse_data": {}})
        latest_message = dict(latest["parse_data"], message_id=latest.get("message_id"))
        return Tracker(CALL_ID, dict(self.slots), latest_message, list(self.events), False, None,
                       {"name": self.active_loop} if self.active_loop else {}, "action_listen")

    async def run(self, action: Action) -> "Outcome":
        dispatcher = CollectingDispatcher()
        tracker = self.tracker()
        self.events.append({"event": "action", "name": action.name()})
        events = await action.run(dispatcher, tracker, project_domain())
        messages = [render(message) for message in dispatcher.messages]
        for message in messages:
            self.events.append(bot(message.get("text"), message.get("custom")))
        for event in events:
            self._apply(event)
        return Outcome(messages, events)

    async def fill(self, validation: Action, slot_name: str, answer: dict[str, Any]) -> "Outcome":
        """The caller answers the form's question for `slot_name`; the validation action checks it."""
        self.slots["requested_slot"] = slot_name
        self.say(answer)
        return await self.run(validation)

    def _apply(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if event["event"] == "slot":
            self.slots[event["name"]] = event["value"]
        elif event["event"] == "active_loop":
            self.active_loop = event.get("name")


@dataclass
class Outcome:
    messages: list[dict[str, Any]]
    events: list[dict[str, Any]]

    @property
    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages if m.get("text")]

    @property
    def text(self) -> str:
        return " ".join(self.texts)

    def custom(self, event: str) -> dict[str, Any] | None:
        return next((m["custom"] for m in self.messages if (m.get("custom") or {}).get("event") == event), None)

    def slots_set(self) -> dict[str, Any]:
        return {e["name"]: e["value"] for e in self.events if e["event"] == "slot"}
