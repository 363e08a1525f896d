"""The call contract as the actions use it (`from actions import contract`).

Every payload and name here is call_contract.py's, the one place both venvs share; new code may import that module
directly. Only the actions' own policy is defined here: how much slower 「说慢一点」 makes the voice.
"""

from __future__ import annotations

from call_contract import (
    ELDERLY_SPEECH_RATE,
    QUEUE_CARD_SERVICES,
    QUEUE_COMPLAINT,
    QUEUE_ELDERLY,
    QUEUE_GENERAL,
    expect_digits,
    handoff,
    hangup,
    interruptible,
    speech_rate,
)

__all__ = [
    "ELDERLY_SPEECH_RATE", "QUEUE_CARD_SERVICES", "QUEUE_COMPLAINT", "QUEUE_ELDERLY", "QUEUE_GENERAL",
    "SLOWEST_SPEECH_RATE", "SPEECH_RATE_STEP", "expect_digits", "handoff", "hangup", "interruptible", "slower_rate",
    "speech_rate",
]

SLOWEST_SPEECH_RATE = 0.6
SPEECH_RATE_STEP = 0.2


def slower_rate(current: float) -> float:
    """The speech rate after 「说慢一点」 at `current`: one step slower, never below SLOWEST_SPEECH_RATE."""
    return max(SLOWEST_SPEECH_RATE, round(min(current, 1.0) - SPEECH_RATE_STEP, 2))
