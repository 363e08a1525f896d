"""Card services: credit-card bill and repayment, card loss, activation, and how to reset a PIN."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import contract
from actions.bank.money import MAX_AMOUNT_CENTS
from actions.bank.service import BankService
from actions.bank.views import (
    ActivationStatus, CardLossStatus, RepaymentPlan, RepaymentResult, RepaymentStatus,
)
from actions.call import OFFER_HUMAN_FOR
from actions.cn_numbers import amount_cents_from_speech, amount_in_context, says_negative_amount, speak_amount, speak_digits
from actions.handoff import hand_off
from actions.common import bank_service, keyed_digits, latest_intent, request_id, task_done
from actions.keypad import MENU_KEY
from actions.tasks import VerifiedTaskAction
from actions.utterances import human_request
from actions.verification import VerifiedTaskValidation, card_is_lost, requested_slot
from actions.wording import spoken_date

FULL_AMOUNT_WORDS = ("全额", "全部", "全款", "还清", "账单金额", "所有")
MINIMUM_WORDS = ("最低",)


def spoken_amount_cents(tracker: Tracker) -> int | None:
    """An amount keyed (whole yuan) or spoken (三千二百八十 / 3280元) in the latest message; negative when said so
    (「负五百」 → -50000), so validation refuses it instead of moving 500元."""
    keyed = keyed_digits(tracker)
    if keyed is not None:
        return int(keyed) * 100 if keyed.isdigit() else None
    text = tracker.latest_message.get("text") or ""
    if text.startswith("/"):
        return None
    cents = amount_cents_from_speech(text)
    cents = cents if cents is not None else amount_in_context(text)
    return -cents if cents is not None and says_negative_amount(text) else cents


def amount_answer(tracker: Tracker, answer_intents: tuple[str, ...]) -> dict:
    """The `amount_cents` slot from an answer; an unclear answer empties the slot so the form re-asks.

    Only answers count: a question or side request (「一年定期利率是多少」) or a request for a human passes the turn
    on to the rules ({}), which answer it and resume the form, so its numbers never become an amount.
    """
    if latest_intent(tracker) not in answer_intents or human_request(tracker.latest_message.get("text")):
        return {}
    if keyed_digits(tracker) == MENU_KEY:
        return {}  # `*` leaves the task: the rules answer it
    cents = spoken_amount_cents(tracker)
    return {"amount_cents": str(cents) if cents is not None else None}


def opening_amount(tracker: Tracker, task_intent: str) -> dict:
    """The amount named in the request that opened the task (「转两百块钱到…」), {} when none was named."""
    if latest_intent(tracker) != task_intent:
        return {}
    cents = spoken_amount_cents(tracker)
    return {"amount_cents": str(cents)} if cents is not None else {}


def repayment_plan(tracker: Tracker) -> RepaymentPlan:
    """The statement the verified caller means and the debit card it would be paid from."""
    return bank_service().payments.repayment_plan(tracker.get_slot("customer_ref"), tracker.get_slot("card_last4"))


class ActionCreditCardBill(VerifiedTaskAction):
    def name(self) -> str:
        return "action_credit_card_bill"

    def perform(self, dispatcher: CollectingDispatcher, tracker: Tracker, bank: BankService, customer_ref: str,
                domain: dict) -> list:
        statement = bank.accounts.statement_for(customer_ref, tracker.get_slot("card_last4"))
        if statement is None:
            dispatcher.utter_message(response="utter_no_credit_card_bill")
        elif statement.remaining_due_cents == 0:
            dispatcher.utter_message(response="utter_bill_nothing_due", card=statement.card_last4)
        else:
            dispatcher.utter_message(
                response="utter_bill", card=statement.card_last4, due=speak_amount(statement.remaining_due_cents),
                minimum=speak_amount(statement.minimum_due_cents), due_date=spoken_date(domain, statement.due_date),
            )
        if statement is not None:
            task_done(dispatcher, "credit_card_bill")
        dispatcher.utter_message(response="utter_anything_else")
        return []


class ValidateRepaymentForm(VerifiedTaskValidation):
    task_intent = "credit_card_repayment"

    def name(self) -> str:
        return "validate_repayment_form"

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        required = await super().required_slots(domain_slots, dispatcher, tracker, domain)
        if tracker.get_slot("verified") and not repayment_plan(tracker).possible:
            return []  # nothing due or no debit card: the repayment action says so without asking for an amount
        return required

    async def extract_amount_cents(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        if requested_slot(tracker) != "amount_cents":
            return {}
        text = tracker.latest_message.get("text") or ""
        if latest_intent(tracker) not in self.answer_intents() or human_request(text):
            return {}
        statement = repayment_plan(tracker).statement
        if statement and any(word in text for word in FULL_AMOUNT_WORDS):
            return {"amount_cents": str(statement.remaining_due_cents)}
        if statement and any(word in text for word in MINIMUM_WORDS):
            return {"amount_cents": str(statement.minimum_due_cents)}
        return amount_answer(tracker, self.answer_intents())

    def validate_amount_cents(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        source = repayment_plan(tracker).source
        available = bank_service().balance(tracker.get_slot("customer_ref"), source.last4) if source else None
        return validated_amount(value, dispatcher, Available(source.last4, available) if source else None)


@dataclass(frozen=True)
class Available:
    """What the paying card holds: an amount above it is refused before the read-back, with this figure said."""

    card: str
    cents: int | None


def validated_amount(value: Any, dispatcher: CollectingDispatcher, available: Available | None = None,
                     limit_cents: int | None = None) -> dict:
    """The amount if it can be moved; otherwise a reprompt that says why (not positive, over the balance or the
    limit, not understood) and an empty slot, so the form asks again before any read-back."""
    cents = int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else None
    if cents is None or cents > MAX_AMOUNT_CENTS:
        dispatcher.utter_message(response="utter_amount_unclear")
    elif cents <= 0:
        dispatcher.utter_message(response="utter_amount_not_positive")
    elif limit_cents is not None and cents > limit_cents:
        dispatcher.utter_message(response="utter_amount_over_limit", limit=speak_amount(limit_cents))
    elif available is not None and available.cents is not None and cents > available.cents:
        dispatcher.utter_message(response="utter_amount_over_balance", card=available.card,
                                 available=speak_amount(max(available.cents, 0)))
    else:
        return {"amount_cents": str(cents)}
    return {"amount_cents": None}


class ActionRepayCreditCard(VerifiedTaskAction):
    def name(self) -> str:
        return "action_repay_credit_card"

    def perform(self, dispatcher: CollectingDispatcher, tracker: Tracker, bank: BankService, customer_ref: str,
                domain: dict) -> list:
        plan = bank.payments.repayment_plan(customer_ref, tracker.get_slot("card_last4"))
        statement, source = plan.statement, plan.source
        if statement is None or plan.remaining_due_cents == 0:
            dispatcher.utter_message(response="utter_repayment_nothing_due")
        elif source is None:
            dispatcher.utter_message(response="utter_repayment_no_debit_card")
        elif tracker.get_slot("confirmed") is not True or not tracker.get_slot("amount_cents"):
            dispatcher.utter_message(response="utter_repayment_cancelled")
        else:
            amount = int(tracker.get_slot("amount_cents"))
            result = bank.repay_credit_card(
                customer_ref, statement.card_last4, source.last4, amount, request_id(tracker, "repay", statement.card_last4, source.last4, amount)
            )
            dispatcher.utter_message(response=repayment_response(result),
                                     debit=source.last4, amount=speak_amount(amount),
                                     remaining=speak_amount(result.remaining_due_cents or 0))
            if result.status is RepaymentStatus.OK:
                task_done(dispatcher, "credit_card_repayment")
        dispatcher.utter_message(response="utter_anything_else")
        return []


# What is said for each outcome of a repayment; its words are in domain/cards.yml.
REPAYMENT_RESPONSES = {
    RepaymentStatus.INSUFFICIENT_FUNDS: "utter_repayment_insufficient_funds",
    RepaymentStatus.NOTHING_DUE: "utter_repayment_nothing_due",
    RepaymentStatus.INVALID_AMOUNT: "utter_repayment_invalid_amount",
}


def repayment_response(result: RepaymentResult) -> str:
    """The response for a repayment's outcome; its variables are `debit`, `amount` and `remaining`."""
    if result.status is RepaymentStatus.OK and result.repeated:
        return "utter_repayment_repeated"
    if result.status is RepaymentStatus.OK:
        return "utter_repayment_done" if result.remaining_due_cents else "utter_repayment_done_paid_off"
    return REPAYMENT_RESPONSES.get(result.status, "utter_repayment_unavailable")


class ActionReportCardLoss(VerifiedTaskAction):
    def name(self) -> str:
        return "action_report_card_loss"

    def perform(self, dispatcher: CollectingDispatcher, tracker: Tracker, bank: BankService, customer_ref: str,
                domain: dict) -> list:
        card = tracker.get_slot("card_last4")
        if card_is_lost(bank, customer_ref, card):
            dispatcher.utter_message(response="utter_card_already_lost", card=card)
            task_done(dispatcher, "report_card_loss")  # the card is stopped: what the caller called for
        elif tracker.get_slot("confirmed") is not True:
            dispatcher.utter_message(response="utter_card_loss_cancelled")
        else:
            result = bank.report_card_loss(customer_ref, card, request_id(tracker, "card_loss", card))
            if result.status is CardLossStatus.REPORTED:
                reference = speak_digits(result.reference)
                dispatcher.utter_message(json_message=contract.interruptible(False))  # the reference must be heard
                dispatcher.utter_message(response="utter_card_loss_reported", card=card, reference=reference)
                dispatcher.utter_message(response="utter_card_loss_reference_again", reference=reference)
                dispatcher.utter_message(json_message=contract.interruptible(True))
                task_done(dispatcher, "report_card_loss")
            elif result.status is CardLossStatus.ALREADY_LOST:
                dispatcher.utter_message(response="utter_card_already_lost", card=card)
                task_done(dispatcher, "report_card_loss")
            else:
                dispatcher.utter_message(response="utter_card_loss_not_own", card=card)
        dispatcher.utter_message(response="utter_anything_else")
        return []


# What is said for each outcome of an activation (variable `card`); its words are in domain/cards.yml.
ACTIVATION_RESPONSES = {
    ActivationStatus.ACTIVATED: "utter_card_activated",
    ActivationStatus.ALREADY_ACTIVE: "utter_card_already_active",
    ActivationStatus.LOST: "utter_card_activation_lost",
    ActivationStatus.NOT_YOUR_CARD: "utter_card_activation_not_own",
}


class ActionActivateCard(VerifiedTaskAction):
    def name(self) -> str:
        return "action_activate_card"

    def perform(self, dispatcher: CollectingDispatcher, tracker: Tracker, bank: BankService, customer_ref: str,
                domain: dict) -> list:
        card = bank.accounts.card_to_activate(customer_ref, tracker.get_slot("card_last4"))
        result = bank.activate_card(customer_ref, card)
        dispatcher.utter_message(response=ACTIVATION_RESPONSES[result.status], card=card or "")
        if result.status in (ActivationStatus.ACTIVATED, ActivationStatus.ALREADY_ACTIVE):
            task_done(dispatcher, "activate_card")
        dispatcher.utter_message(response="utter_anything_else")
        return []


class ActionResetPassword(Action):
    """A PIN cannot be reset by phone: explain the branch and video-banking paths and offer an agent."""

    def name(self) -> str:
        return "action_reset_password"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        if human_request(tracker.latest_message.get("text")):
            # 「我不记得密码了帮我转人工」: the caller already chose the agent; no explanation, no PIN prompt
            return hand_off(dispatcher, tracker, reason="password_help")
        dispatcher.utter_message(response="utter_reset_password")
        task_done(dispatcher, "reset_password")  # the way to a new PIN explained: all the phone can do for it
        return [SlotSet("pending_offer", OFFER_HUMAN_FOR.format(reason="password_help"))]


class ActionAskConfirmed(Action):
    """Reads the request back before anything is changed, then asks for yes (1) or no (2)."""

    def name(self) -> str:
        return "action_ask_confirmed"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        response, values = read_back(tracker.active_loop.get("name"), tracker)
        if response:
            dispatcher.utter_message(response=response, **values)
        # no `expect` here: the answer may be spoken (「是」), and expect would switch the recogniser to digits only
        dispatcher.utter_message(response="utter_confirm_question")
        return []


def read_back(form: str | None, tracker: Tracker) -> tuple[str | None, dict[str, str]]:
    """The response that reads the request back, and its variables: every card involved and the amount."""
    card = tracker.get_slot("card_last4")
    amount = tracker.get_slot("amount_cents")
    spoken = speak_amount(int(amount)) if amount and str(amount).isdigit() else ""
    if form == "card_loss_form":
        return "utter_read_back_card_loss", {"card": card}
    if form == "transfer_form":
        return "utter_read_back_transfer", {"source": card, "target": tracker.get_slot("to_card"), "amount": spoken}
    if form == "repayment_form":
        plan = repayment_plan(tracker)
        if plan.statement is None or plan.source is None:
            return None, {}  # not reached: with nothing to pay or nothing to pay from, the form asks no question
        return "utter_read_back_repayment", {"debit": plan.source.last4, "credit": plan.statement.card_last4,
                                             "amount": spoken}
    return None, {}
