"""A scripted caller for contract conversations: sends text or keypad input and reads replies by the contract.

It answers the bot's prompts by the `expect` events (card digits, secure PIN) and confirmation questions,
so the tests state *what* must happen (e.g. "a handoff to elderly_priority") rather than the exact wording.
"""

from __future__ import annotations

import re
import uuid
from typing import Callable

from bot.rasa_client import dtmf_message

Items = list[dict]
CONFIRM_WORDS = ("确认", "是否", "对吗", "是吗", "吗？", "好吗")


def texts(items: Items) -> list[str]:
    return [item["text"] for item in items if item.get("text")]


def joined(items: Items) -> str:
    return " ".join(texts(items))


def events(items: Items, kind: str | None = None) -> list[dict]:
    found = [item["custom"] for item in items if isinstance(item.get("custom"), dict)]
    return [e for e in found if kind is None or e.get("event") == kind]


def expect_of(items: Items) -> dict | None:
    found = events(items, "expect")
    return found[-1] if found else None


def digits_in(text: str) -> str:
    """All digits of a text, ignoring the spaces a TTS-friendly read-back puts between them."""
    return "".join(re.findall(r"\d", text))


class Caller:
    def __init__(self, stack, number: str, *, card: str = "", pin: str = "", spoken_card: str = "") -> None:
        self.stack = stack
        self.number = number
        self.card = card
        self.pin = pin
        self.spoken_card = spoken_card  # e.g. 五六七八: say the card digits instead of keying them
        self.sender = f"it-{uuid.uuid4().hex[:10]}"
        self.replies: list[Items] = []

    def send(self, message: str) -> Items:
        items = self.stack.send(self.sender, message, caller=self.number)
        self.replies.append(items)
        return items

    def start(self) -> Items:
        return self.send("/call_start")

    def say(self, text: str) -> Items:
        return self.send(text)

    def key(self, digits: str) -> Items:
        return self.send(dtmf_message(digits))

    def answer_prompts(self, items: Items, done: Callable[[Items], bool], max_turns: int = 6,
                       confirm: bool = True) -> Items:
        """Answers card/PIN/confirmation prompts until `done(reply)` or nothing is left to answer."""
        for _ in range(max_turns):
            if done(items):
                return items
            expect = expect_of(items)
            if expect and expect.get("secure"):
                items = self.key(self.pin)
            elif expect or "后四位" in joined(items):
                items = self.say(self.spoken_card) if self.spoken_card else self.key(self.card)
            elif confirm and any(word in joined(items) for word in CONFIRM_WORDS):
                items = self.say("是的")
            else:
                return items
        return items

    def all_texts(self) -> str:
        return " ".join(joined(items) for items in self.replies)
