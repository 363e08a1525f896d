"""One conversation per call at the dialogue: a reused sender id never inherits a verified conversation.

Reproduction (issue 7): verify 陈晓明 (4321 / 112233) as sender X; then, with sender X again, `/call_start` from
17700000000 and 「查一下余额」. The bot used to read out 陈晓明's balance with no verification.
"""

from __future__ import annotations

import time

import pytest

from tests.rasa_servers import custom, texts

pytestmark = pytest.mark.integration

CHEN = {"caller_number": "13900000003", "channel": "voice", "asr_available": True}
STRANGER = {"caller_number": "17700000000", "channel": "voice", "asr_available": True}
CARD_PROMPT = {"event": "expect", "input": "digits", "max_length": 4, "secure": False}


def verify_chen(servers, sender: str) -> None:
    servers.send(sender, "/call_start", CHEN)
    servers.send(sender, "/check_balance")
    servers.send(sender, '/dtmf{"digits":"4321"}')
    _, balance = servers.send(sender, '/dtmf{"digits":"112233"}')
    assert "可用余额" in texts(balance), texts(balance)  # the setup really verified him


def test_call_start_with_a_reused_sender_id_starts_unverified(dialogue_servers):
    sender = f"reused-{time.time_ns()}"
    verify_chen(dialogue_servers, sender)

    dialogue_servers.send(sender, "/call_start", STRANGER)
    _, reply = dialogue_servers.send(sender, "查一下余额")

    assert "可用余额" not in texts(reply)
    assert custom(reply, "expect") == CARD_PROMPT  # asked for a card, as for any new caller
    slots = dialogue_servers.tracker(sender)["slots"]
    assert not slots.get("verified") and slots.get("customer_ref") is None
    assert slots.get("caller_number") == "17700000000"


def test_call_start_clears_an_open_form_and_the_failure_counter(dialogue_servers):
    sender = f"reused-form-{time.time_ns()}"
    dialogue_servers.send(sender, "/call_start", CHEN)
    dialogue_servers.send(sender, "/check_balance")
    dialogue_servers.send(sender, '/dtmf{"digits":"4321"}')
    dialogue_servers.send(sender, '/dtmf{"digits":"000000"}')  # one wrong PIN, the form still asks
    assert dialogue_servers.tracker(sender)["slots"].get("failed_verifications")

    _, greeting = dialogue_servers.send(sender, "/call_start", STRANGER)

    tracker = dialogue_servers.tracker(sender)
    assert tracker["active_loop"] in ({}, None) or not tracker["active_loop"].get("name")
    assert not tracker["slots"].get("failed_verifications")
    assert tracker["slots"].get("card_last4") is None
    assert custom(greeting, "expect") is None  # a greeting, not the PIN prompt of the old form
