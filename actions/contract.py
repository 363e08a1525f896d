"""Custom payloads of the call contract (docs/ARCHITECTURE.md), built in one place so every action sends the same shapes."""

from __future__ import annotations

from typing import Any

QUEUE_GENERAL = "general"
QUEUE_ELDERLY = "elderly_priority"
QUEUE_COMPLAINT = "complaint"
QUEUE_CARD_SERVICES = "card_services"

PRIORITY_ELDERLY = 9
PRIORITY_NORMAL = 1

ELDERLY_SPEECH_RATE = 0.8
SLOWEST_SPEECH_RATE = 0.6
SPEECH_RATE_STEP = 0.2


def handoff(queue: str, reason: str, context: dict[str, Any]) -> dict[str, Any]:
    priority = PRIORITY_ELDERLY if queue == QUEUE_ELDERLY else PRIORITY_NORMAL
    return {"event": "handoff", "queue": queue, "priority": priority, "reason": reason, "context": context}


def hangup() -> dict[str, Any]:
    return {"event": "hangup"}


def speech_rate(rate: float) -> dict[str, Any]:
    return {"event": "speech_rate", "rate": round(rate, 2)}


def expect_digits(max_length: int, secure: bool) -> dict[str, Any]:
    return {"event": "expect", "input": "digits", "max_length": max_length, "secure": secure}


def interruptible(value: bool) -> dict[str, Any]:
    return {"event": "interruptible", "value": value}


def is_secure_expect(payload: Any) -> bool:
    """Whether a bot `custom` payload announces secure input (the PIN)."""
    return isinstance(payload, dict) and payload.get("event") == "expect" and payload.get("secure") is True
