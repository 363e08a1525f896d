"""Verification and money movements under attack, run as the action server runs them, on a real temporary bank.

- one PIN sprayed across many cards from one number is locked out per caller number (and per call);
- an unknown card and a wrong PIN get the same words, the same next prompt and the same hashing work;
- 「负五百」 is refused, never turned into 500元;
- a movement that would commit after the caller's deadline rolls back, and asking again in the same call
  never moves the money twice;
- PIN checks run off the action server's event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from actions.bank import BankService
from actions.bank import identity as bank_module
from actions.bank.errors import DeadlineExceeded
from actions.bank.service import commit_deadline
from actions.cards import validated_amount
from actions.transfers import ActionTransferMoney, ValidateTransferForm
from actions.verification import ValidateBalanceForm
from rasa_sdk.executor import CollectingDispatcher
from tests.actions.dialogue_harness import Call, dtmf, user

ATTACKER_PHONE = "17700000000"
WANG_CARD, WANG_PIN = "1234", "135790"
CHEN_PHONE, CHEN_CARD, CHEN_PIN = "13900000003", "4321", "112233"
OTHER_CARDS = ("5678", "4321", "9999", "7777", "8888", "0001")


def test_one_pin_sprayed_across_many_cards_from_one_number_is_locked_out(bank_service: BankService):
    for card in OTHER_CARDS[:5]:  # five different cards, one guessed PIN, never the same card twice
        assert bank_service.verify_pin(card, "000000", caller_phone=ATTACKER_PHONE).status in ("wrong", "unknown_card", "locked")
    # From that number, even a right card + PIN is refused for the rest of the bank day...
    assert bank_service.verify_pin(WANG_CARD, WANG_PIN, caller_phone=ATTACKER_PHONE).status == "locked"
    # ...while the card's owner, calling from elsewhere, is not locked out by the attacker.
    assert bank_service.verify_pin(WANG_CARD, WANG_PIN, caller_phone="13800000001").status == "ok"


def test_unknown_cards_count_against_the_calling_number(bank_service: BankService):
    for card in ("0001", "0002", "0003", "0004", "0005"):
        assert bank_service.verify_pin(card, "000000", caller_phone=ATTACKER_PHONE).status != "ok"
    assert bank_service.verify_pin(CHEN_CARD, CHEN_PIN, caller_phone=ATTACKER_PHONE).status == "locked"


def test_an_unknown_card_costs_the_same_hashing_as_a_wrong_pin(bank_service: BankService, monkeypatch):
    checks: list[str] = []
    real = bank_module.pin_matches
    monkeypatch.setattr(bank_module, "pin_matches", lambda pin, stored: checks.append(stored) or real(pin, stored))
    bank_service.verify_pin(WANG_CARD, "000000", caller_phone=ATTACKER_PHONE)
    wrong_pin_checks = len(checks)
    bank_service.verify_pin("0009", "000000", caller_phone=ATTACKER_PHONE)
    assert wrong_pin_checks == 1 and len(checks) == 2  # one PBKDF2 each, whether or not the card exists


async def _answer_card_then_pin(call: Call, card: str, pin: str):
    form = ValidateBalanceForm()
    call.active_loop = "balance_form"
    await call.fill(form, "card_last4", dtmf(card))
    return await call.fill(form, "pin", dtmf(pin))


async def test_unknown_card_and_wrong_pin_get_the_same_words_and_the_same_next_prompt(bank_for_actions):
    outcomes = []
    for card in (WANG_CARD, "0009"):  # a real card with a wrong PIN, then a card that does not exist
        call = Call()
        call.slots.update(caller_number="13600000000")
        outcome = await _answer_card_then_pin(call, card, "000000")
        outcomes.append((outcome.text, call.slots["card_last4"], call.slots["pin"]))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1] is None  # both ask for the card again, so the prompt tells nothing


async def test_spraying_cards_within_one_call_locks_the_call(bank_for_actions):
    call = Call()  # an anonymous caller: no number to count against, the call itself counts
    for card in ("5678", "4321", "9999"):
        await _answer_card_then_pin(call, card, "000000")
    assert call.slots["pin_locked"] is True


@pytest.mark.parametrize("said", ["负五百", "负500元", "-500", "转负五百块"])
async def test_a_negative_amount_is_refused_not_made_positive(bank_for_actions, said):
    call = Call()
    call.slots.update(verified=True, customer_ref="C1003", card_last4=CHEN_CARD, to_card="9999")
    call.active_loop = "transfer_form"
    outcome = await call.fill(ValidateTransferForm(), "amount_cents", user(said, "inform"))
    assert call.slots["amount_cents"] is None
    assert "大于零" in outcome.text


def test_zero_is_refused_with_the_same_words():
    dispatcher = CollectingDispatcher()
    assert validated_amount("0", dispatcher) == {"amount_cents": None}
    assert dispatcher.messages[0]["response"] == "utter_amount_not_positive"  # its words: domain/cards.yml


def test_a_movement_ready_after_the_deadline_rolls_back(bank_service: BankService):
    before = bank_service.balance("C1003", CHEN_CARD)
    with commit_deadline(time.monotonic() - 0.001), pytest.raises(DeadlineExceeded):
        bank_service.transfer("C1003", CHEN_CARD, "9999", 10_000, "late-1")
    assert bank_service.balance("C1003", CHEN_CARD) == before
    # Nothing was stored either: the same request later, in time, really moves the money (once).
    assert bank_service.transfer("C1003", CHEN_CARD, "9999", 10_000, "late-1").status == "ok"
    assert bank_service.balance("C1003", CHEN_CARD) == before - 10_000


async def test_asking_again_in_the_same_call_never_moves_money_twice(bank_for_actions):
    bank = bank_for_actions
    call = Call()
    assert bank.verify_pin(CHEN_CARD, CHEN_PIN, caller_phone=CHEN_PHONE).status == "ok"
    call.say({"event": "session_started", "timestamp": 1000.0})
    before = bank.balance("C1003", CHEN_CARD)
    outcomes = []
    for _ in range(2):  # the caller heard an apology for a slow turn and asks for the same transfer again
        call.slots.update(caller_number=CHEN_PHONE, verified=True, customer_ref="C1003", card_last4=CHEN_CARD,
                          to_card="9999", amount_cents="10000", confirmed=True)
        call.say(user("确认", "affirm"))  # a new confirming turn, with a new message id
        outcomes.append((await call.run(ActionTransferMoney())).text)
    assert bank.balance("C1003", CHEN_CARD) == before - 10_000
    assert "转账成功" in outcomes[0] and "已经办理过" in outcomes[1]


async def test_pin_checks_run_off_the_event_loop(bank_for_actions, monkeypatch):
    release = threading.Event()
    real_verify = BankService.verify_pin

    def slow_verify(self, *args, **kwargs):
        release.wait(2.0)  # a slow PBKDF2 or a locked row
        return real_verify(self, *args, **kwargs)

    monkeypatch.setattr(BankService, "verify_pin", slow_verify)
    call = Call()
    check = asyncio.ensure_future(_answer_card_then_pin(call, WANG_CARD, WANG_PIN))
    await asyncio.sleep(0.05)
    assert not check.done()  # waiting for the bank, and yet this coroutine runs: the loop is free
    release.set()
    await asyncio.wait_for(check, timeout=5)
