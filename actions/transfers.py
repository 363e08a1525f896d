"""Transfers between the verified caller's own cards, with read-back, confirmation and the daily limit."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.bank.service import BankService
from actions.bank.views import TransferResult, TransferStatus
from actions.cn_numbers import speak_amount, speak_digits
from actions.cards import Available, amount_answer, opening_amount, validated_amount
from actions.common import bank_service, latest_intent, request_id, task_done
from actions.tasks import VerifiedTaskAction
from actions.card_grammar import cards_by_role
from actions.verification import CARD_DIGITS, VerifiedTaskValidation, answer_for, requested_slot
from settings import get_settings


class ValidateTransferForm(VerifiedTaskValidation):
    """Source card (verified with the PIN), destination card, amount, then an explicit yes to the read-back.

    One sentence may name them all: 「从尾号4321的卡转两百块钱到尾号9999的卡上」 fills source, destination and amount
    at once (entity roles, see data/nlu/transfers.yml), and the form asks only for what is still missing.
    """

    task_intent = "transfer_money"

    def name(self) -> str:
        return "validate_transfer_form"

    async def extract_to_card(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        asked = requested_slot(tracker)
        if asked == "to_card":
            return answer_for(tracker, "to_card", CARD_DIGITS, self.answer_intents())
        if asked is None and latest_intent(tracker) == self.task_intent:
            destination = cards_by_role(tracker.latest_message).get("destination")
            return {"to_card": destination} if destination else {}
        return {}

    def validate_to_card(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        if not (isinstance(value, str) and len(value) == CARD_DIGITS and value.isdigit()):
            dispatcher.utter_message(response="utter_to_card_format")
            return {"to_card": None}
        customer_ref = tracker.get_slot("customer_ref") if tracker.get_slot("verified") else None
        return checked_destination(value, tracker.get_slot("card_last4"), customer_ref, dispatcher)

    async def extract_amount_cents(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        asked = requested_slot(tracker)
        if asked == "amount_cents":
            return amount_answer(tracker, self.answer_intents())
        return opening_amount(tracker, self.task_intent) if asked is None else {}

    def validate_amount_cents(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        customer_ref = tracker.get_slot("customer_ref") if tracker.get_slot("verified") else None
        return checked_amount(value, tracker.get_slot("card_last4"), customer_ref, dispatcher)

    def after_verification(self, dispatcher: CollectingDispatcher, tracker: Tracker, customer_ref: str) -> dict:
        """A destination and an amount said in the opening sentence are checked against the verified caller's cards."""
        checked: dict = {}
        source = tracker.get_slot("card_last4")
        if tracker.get_slot("to_card"):
            checked.update(checked_destination(tracker.get_slot("to_card"), source, customer_ref, dispatcher))
        if tracker.get_slot("amount_cents"):
            checked.update(checked_amount(tracker.get_slot("amount_cents"), source, customer_ref, dispatcher))
        return checked


def checked_destination(value: str, source: str | None, customer_ref: str | None, dispatcher: CollectingDispatcher) -> dict:
    """The destination card, unless it is the source or (once the caller is verified) not the caller's own."""
    if value == source:
        dispatcher.utter_message(response="utter_to_card_same")
        return {"to_card": None}
    if customer_ref is not None and bank_service().accounts.card(customer_ref, value) is None:
        # said now, not after the read-back: phone banking only moves money between the caller's own cards
        dispatcher.utter_message(response="utter_to_card_not_own", card=value)
        return {"to_card": None}
    return {"to_card": value}


def checked_amount(value: Any, source: str | None, customer_ref: str | None, dispatcher: CollectingDispatcher) -> dict:
    """The amount, refused before the read-back when not positive, over the daily limit or over the source's balance."""
    available = None
    if customer_ref is not None and source:
        available = Available(source, bank_service().balance(customer_ref, source))
    return validated_amount(value, dispatcher, available, get_settings().bank.daily_transfer_limit_cents)


# What is said for each outcome of a transfer; its words are in domain/transfers.yml.
TRANSFER_RESPONSES = {
    TransferStatus.DAILY_LIMIT: "utter_transfer_daily_limit",
    TransferStatus.INSUFFICIENT_FUNDS: "utter_transfer_insufficient_funds",
    TransferStatus.SAME_CARD: "utter_transfer_same_card",
    TransferStatus.NOT_YOUR_CARD: "utter_transfer_not_own",
    TransferStatus.INVALID_AMOUNT: "utter_transfer_invalid_amount",
}


def transfer_response(result: TransferResult) -> str:
    """The response for a transfer's outcome; its variables are `source`, `target`, `amount`, `reference`, `limit`."""
    if result.status is TransferStatus.OK:
        return "utter_transfer_repeated" if result.repeated else "utter_transfer_done"
    return TRANSFER_RESPONSES.get(result.status, "utter_transfer_card_unavailable")


class ActionTransferMoney(VerifiedTaskAction):
    def name(self) -> str:
        return "action_transfer_money"

    def perform(self, dispatcher: CollectingDispatcher, tracker: Tracker, bank: BankService, customer_ref: str,
                domain: dict) -> list:
        source, target = tracker.get_slot("card_last4"), tracker.get_slot("to_card")
        amount = tracker.get_slot("amount_cents")
        if tracker.get_slot("confirmed") is not True or not (target and amount):
            dispatcher.utter_message(response="utter_transfer_cancelled")
        else:
            key = request_id(tracker, "transfer", source, target, int(amount))
            result = bank.transfer(customer_ref, source, target, int(amount), key)
            dispatcher.utter_message(
                response=transfer_response(result), source=source, target=target, amount=speak_amount(int(amount)),
                # a refused transfer has no reference: speak_digits("") raised, and the refusal became an apology
                reference=speak_digits(result.reference) if result.reference else "",
                limit=speak_amount(result.limit_left_cents or 0),
            )
            if result.status is TransferStatus.OK:
                task_done(dispatcher, "transfer_money")
        dispatcher.utter_message(response="utter_anything_else")
        return []
