"""Identity verification shared by every task that needs it: card last 4 digits, then the 6-digit PIN.

Each verified task is a form whose required slots start with `card_last4` and `pin`. Once the caller is
verified (it lasts for the call) those two are dropped from the required slots, so a later task form submits
at once. The PIN is checked right here, inside the validation action, and the `pin` slot is only ever set
back to None: the PIN never reaches a slot, a log line or the tracker (the tracker store masks the user
message itself).
"""

from __future__ import annotations

import asyncio
from abc import ABCMeta, abstractmethod
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions.bank.service import BankService
from actions.bank.views import CardStatus
from actions.common import bank_service, digits_in_latest_message, keyed_digits, latest_intent
from actions.card_grammar import cards_by_role
from actions.utterances import explicit_answer, human_request, is_filler
from settings import get_settings

CARD_DIGITS = 4
PIN_DIGITS = 6
# Intents that may carry the digits a form asked for; anything else lets the rules handle the turn.
ANSWER_INTENTS = ("inform", "dtmf", "out_of_scope", "nlu_fallback", "affirm", "deny")
YES_KEY, NO_KEY = "1", "2"


def card_is_lost(bank: BankService, customer_ref: str, card_last4: str | None) -> bool:
    """Whether `card_last4` is the customer's own card and already reported lost."""
    return (own := bank.accounts.card(customer_ref, card_last4)) is not None and own.status is CardStatus.LOST


def requested_slot(tracker: Tracker) -> str | None:
    return tracker.get_slot("requested_slot")


def answer_for(
    tracker: Tracker, slot: str, length: int | None = None, answer_intents: tuple[str, ...] = ANSWER_INTENTS
) -> dict[str, Any]:
    """Digits for `slot` from the latest message, {slot: None} for an answer without usable digits, {} to pass the turn on.

    A request for a human is never an answer, whatever digits it holds: the rules hand the call over.
    """
    if human_request(tracker.latest_message.get("text")):
        return {}
    digits = digits_in_latest_message(tracker, length)
    if digits:
        return {slot: digits}
    if keyed_digits(tracker) == "*":
        return {}  # the keypad menu key: let the rules answer it
    return {slot: None} if latest_intent(tracker) in answer_intents else {}


class VerifiedTaskValidation(FormValidationAction, metaclass=ABCMeta):  # abstract: rasa_sdk registers no action for it
    """Base of every form whose task needs a verified caller."""

    # Asking for the same task again while its form runs (「我的卡丢了」 at the read-back) repeats the question.
    task_intent: str = ""

    def answer_intents(self) -> tuple[str, ...]:
        return ANSWER_INTENTS + (self.task_intent,)

    @abstractmethod
    def name(self) -> str:
        """`validate_<form>` of the subclass's form."""

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        if tracker.get_slot("pin_locked"):
            return []  # the form ends; the task action explains the lock and offers a human
        if tracker.get_slot("verified"):
            return [slot for slot in domain_slots if slot != "pin"]
        return domain_slots

    async def extract_card_last4(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        asked = requested_slot(tracker)
        if asked == "card_last4":
            return answer_for(tracker, "card_last4", CARD_DIGITS, self.answer_intents())
        if asked is None:
            # the opening request may name the card: 「尾号一二三四的卡余额」; a destination card is never the one
            # verified or read (「…转到尾号九九九九」)
            source = cards_by_role(tracker.latest_message).get("source")
            return {"card_last4": source} if source else {}
        return {}

    def validate_card_last4(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        if isinstance(value, str) and len(value) == CARD_DIGITS and value.isascii() and value.isdigit():
            return {"card_last4": value}
        dispatcher.utter_message(response="utter_card_format")
        return {"card_last4": None}

    async def extract_pin(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        if requested_slot(tracker) != "pin":
            return {}
        return answer_for(tracker, "pin", PIN_DIGITS, self.answer_intents())

    async def validate_pin(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        if not (isinstance(value, str) and len(value) == PIN_DIGITS and value.isascii() and value.isdigit()):
            dispatcher.utter_message(response="utter_pin_format")
            return {"pin": None}
        card = tracker.get_slot("card_last4")
        # PBKDF2 and the SQL row lock take a while: off the event loop, so other calls' actions go on meanwhile.
        result = await asyncio.to_thread(
            bank_service().verify_pin, card, value, caller_phone=tracker.get_slot("caller_number"))
        if result.status == "ok":
            dispatcher.utter_message(response="utter_verified")
            verified = {"pin": None, "verified": True, "customer_ref": result.customer_ref, "failed_verifications": 0.0}
            return {**verified, **self.after_verification(dispatcher, tracker, result.customer_ref)}
        return self._failed(result.status, result.attempts_left, dispatcher, tracker)

    def after_verification(self, dispatcher: CollectingDispatcher, tracker: Tracker, customer_ref: str) -> dict:
        """Slots said before verification (a destination card, an amount) checked now that the caller is known."""
        return {}

    @staticmethod
    def _failed(status: str, attempts_left: int, dispatcher: CollectingDispatcher, tracker: Tracker) -> dict:
        failures = int(tracker.get_slot("failed_verifications") or 0) + 1
        # An unknown card gets the same words as a wrong PIN: nothing is disclosed before verification.
        attempts = min(attempts_left, get_settings().bank.max_pin_attempts - failures)
        if status == "locked" or attempts <= 0:
            return {"pin": None, "pin_locked": True, "failed_verifications": float(failures)}
        dispatcher.utter_message(response="utter_pin_wrong", attempts=str(attempts))
        # Card and PIN are both asked again, whichever was wrong: the next prompt must not tell them apart.
        return {"pin": None, "card_last4": None, "failed_verifications": float(failures)}

    async def extract_confirmed(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        """Money moves or a card stops only on an explicit yes (是/对/确认/可以/没问题/好的) or key 1.

        No (不, key 2) means no. A backchannel (嗯, 哦, 那个) or a yes the words do not bear out re-asks, clearly.
        """
        if requested_slot(tracker) != "confirmed":
            return {}
        intent, keyed = latest_intent(tracker), keyed_digits(tracker)
        text = tracker.latest_message.get("text") or ""
        if keyed is not None:
            return {"confirmed": {YES_KEY: True, NO_KEY: False}.get(keyed)} if keyed in (YES_KEY, NO_KEY) else {}
        if human_request(text):
            return {}
        if intent == self.task_intent:
            return {"confirmed": None}  # asked again: read the request back again
        answer = explicit_answer(text)
        if intent == "deny" or answer is False:
            return {"confirmed": False}
        if answer is True and intent in ANSWER_INTENTS:
            return {"confirmed": True}
        if intent in ("affirm", "filler") or is_filler(text):
            dispatcher.utter_message(response="utter_confirm_unclear")
            return {"confirmed": None}
        return {}

    def validate_confirmed(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        return {"confirmed": value if isinstance(value, bool) else None}


class ValidateBalanceForm(VerifiedTaskValidation):
    task_intent = "check_balance"

    def name(self) -> str:
        return "validate_balance_form"


class ValidateTransactionsForm(VerifiedTaskValidation):
    task_intent = "query_transactions"

    def name(self) -> str:
        return "validate_transactions_form"


class ValidateBillForm(VerifiedTaskValidation):
    task_intent = "credit_card_bill"

    def name(self) -> str:
        return "validate_bill_form"


class ValidateCardLossForm(VerifiedTaskValidation):
    task_intent = "report_card_loss"

    def name(self) -> str:
        return "validate_card_loss_form"

    async def extract_card_last4(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        if requested_slot(tracker) == "confirmed":
            # 「不是这张，是一二三四」 at the read-back: switch to that card and read back again
            other = digits_in_latest_message(tracker, CARD_DIGITS)
            if other and len(other) == CARD_DIGITS and other != tracker.get_slot("card_last4"):
                return {"card_last4": other}
            return {}
        return await super().extract_card_last4(dispatcher, tracker, domain)

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        required = await super().required_slots(domain_slots, dispatcher, tracker, domain)
        if tracker.get_slot("verified") and self._already_lost(tracker):
            return []  # nothing to confirm: the card loss action says it is already reported
        return required

    @staticmethod
    def _already_lost(tracker: Tracker) -> bool:
        return card_is_lost(bank_service(), tracker.get_slot("customer_ref"), tracker.get_slot("card_last4"))

    async def extract_confirmed(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        named = digits_in_latest_message(tracker, CARD_DIGITS)
        if requested_slot(tracker) == "confirmed" and named and len(named) == CARD_DIGITS:
            return {}  # a card number is a correction, not a yes or no
        return await super().extract_confirmed(dispatcher, tracker, domain)


class ValidateActivationForm(VerifiedTaskValidation):
    task_intent = "activate_card"

    def name(self) -> str:
        return "validate_activation_form"
