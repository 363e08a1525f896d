"""Card services: credit-card bill and repayment, card loss, activation, and how to reset a PIN."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import contract
from actions.bank.service import BankService
from actions.bank.views import CardView, StatementView
from actions.call import OFFER_HUMAN_FOR
from actions.cn_numbers import amount_cents_from_speech, amount_in_context, says_negative_amount, speak_amount, speak_digits
from actions.handoff import hand_off
from actions.common import bank_service, card_kind_name, keyed_digits, latest_intent, request_id
from actions.keypad import MENU_KEY
from actions.tasks import VerifiedTaskAction
from actions.utterances import human_request
from actions.verification import VerifiedTaskValidation, requested_slot

MAX_AMOUNT_CENTS = 100_000_000  # 1,000,000 yuan: anything above is a mishearing, not a phone transaction
FULL_AMOUNT_WORDS = ("全额", "全部", "全款", "还清", "账单金额", "所有")
MINIMUM_WORDS = ("最低",)


def due_date_text(statement: StatementView) -> str:
    return f"{statement.due_date.month}月{statement.due_date.day}日"


def remaining_due(statement: StatementView) -> int:
    return max(statement.amount_due_cents - statement.paid_cents, 0)


def debit_source(cards: list[CardView], preferred: str | None) -> CardView | None:
    """The caller's debit card to pay from: the card of the task if it is an active debit card, else the first one."""
    debit = [card for card in cards if card.kind == "debit" and card.status == "active"]
    return next((card for card in debit if card.last4 == preferred), debit[0] if debit else None)


def statement_for(bank: BankService, customer_ref: str, card_last4: str | None) -> StatementView | None:
    cards = {card.last4: card for card in bank.cards(customer_ref)}
    chosen = card_last4 if card_last4 in cards and cards[card_last4].kind == "credit" else None
    return bank.credit_card_statement(customer_ref, chosen)


def can_repay(bank: BankService, tracker: Tracker) -> bool:
    customer_ref, card = tracker.get_slot("customer_ref"), tracker.get_slot("card_last4")
    statement = statement_for(bank, customer_ref, card)
    has_due = statement is not None and remaining_due(statement) > 0
    return has_due and debit_source(bank.cards(customer_ref), card) is not None


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


class ActionCreditCardBill(VerifiedTaskAction):
    def name(self) -> str:
        return "action_credit_card_bill"

    def perform(self, dispatcher: CollectingDispatcher, tracker: Tracker, bank: BankService, customer_ref: str) -> list:
        statement = statement_for(bank, customer_ref, tracker.get_slot("card_last4"))
        if statement is None:
            dispatcher.utter_message(response="utter_no_credit_card_bill")
        elif remaining_due(statement) == 0:
            dispatcher.utter_message(response="utter_bill_nothing_due", card=statement.card_last4)
        else:
            dispatcher.utter_message(
                response="utter_bill", card=statement.card_last4, due=speak_amount(remaining_due(statement)),
                minimum=speak_amount(statement.minimum_due_cents), due_date=due_date_text(statement),
            )
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
        if tracker.get_slot("verified") and not can_repay(bank_service(), tracker):
            return []  # nothing due or no debit card: the repayment action says so without asking for an amount
        return required

    async def extract_amount_cents(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        if requested_slot(tracker) != "amount_cents":
            return {}
        text = tracker.latest_message.get("text") or ""
        if latest_intent(tracker) not in self.answer_intents() or human_request(text):
            return {}
        statement = statement_for(bank_service(), tracker.get_slot("customer_ref"), tracker.get_slot("card_last4"))
        if statement and any(word in text for word in FULL_AMOUNT_WORDS):
            return {"amount_cents": str(remaining_due(statement))}
        if statement and any(word in text for word in MINIMUM_WORDS):
            return {"amount_cents": str(statement.minimum_due_cents)}
        return amount_answer(tracker, self.answer_intents())

    def validate_amount_cents(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        bank = bank_service()
        source = debit_source(bank.cards(tracker.get_slot("customer_ref")), tracker.get_slot("card_last4"))
        available = bank.balance(tracker.get_slot("customer_ref"), source.last4) if source else None
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

    def perform(self, dispatcher: CollectingDispatcher, tracker: Tracker, bank: BankService, customer_ref: str) -> list:
        statement = statement_for(bank, customer_ref, tracker.get_slot("card_last4"))
        source = debit_source(bank.cards(customer_ref), tracker.get_slot("card_last4"))
        if statement is None or remaining_due(statement) == 0:
            dispatcher.utter_message(text="您的信用卡本期没有待还款金额。")
        elif source is None:
            dispatcher.utter_message(text="您名下没有可用于还款的借记卡，请到网点或手机银行办理。")
        elif tracker.get_slot("confirmed") is not True or not tracker.get_slot("amount_cents"):
            dispatcher.utter_message(text="好的，已取消还款。")
        else:
            amount = int(tracker.get_slot("amount_cents"))
            result = bank.repay_credit_card(
                customer_ref, statement.card_last4, source.last4, amount, request_id(tracker, "repay", statement.card_last4, source.last4, amount)
            )
            dispatcher.utter_message(text=repayment_outcome(result, amount, source.last4))
        dispatcher.utter_message(response="utter_anything_else")
        return []


def repayment_outcome(result: Any, amount: int, source_last4: str) -> str:
    if result.status == "ok" and result.repeated:
        return f"这笔{speak_amount(amount)}的还款本次通话中已经办理过了，没有重复扣款。"
    if result.status == "ok":
        remaining = f"本期还需还款{speak_amount(result.remaining_due_cents)}。" if result.remaining_due_cents else "本期账单已还清。"
        return f"还款成功，已从尾号{source_last4}的借记卡还款{speak_amount(amount)}。{remaining}"
    if result.status == "insufficient_funds":
        return f"尾号{source_last4}的借记卡余额不足{speak_amount(amount)}，还款没有成功。您可以说一个较小的金额再试。"
    if result.status == "nothing_due":
        return "您的信用卡本期没有待还款金额。"
    if result.status == "invalid_amount":
        return "还款金额不正确，还款没有成功。"
    return "这张卡暂时无法办理还款，请说「人工」咨询客服。"


class ActionReportCardLoss(VerifiedTaskAction):
    def name(self) -> str:
        return "action_report_card_loss"

    def perform(self, dispatcher: CollectingDispatcher, tracker: Tracker, bank: BankService, customer_ref: str) -> list:
        card = tracker.get_slot("card_last4")
        already_lost = any(c.last4 == card and c.status == "lost" for c in bank.cards(customer_ref))
        if already_lost:
            dispatcher.utter_message(text=f"尾号{card}的卡已经挂失过了，不用重复挂失。")
        elif tracker.get_slot("confirmed") is not True:
            dispatcher.utter_message(text="好的，已取消挂失。")
        else:
            result = bank.report_card_loss(customer_ref, card, request_id(tracker, "card_loss", card))
            if result.status == "reported":
                dispatcher.utter_message(json_message=contract.interruptible(False))  # the reference must be heard
                dispatcher.utter_message(
                    text=f"尾号{card}的卡已挂失，这张卡已停止使用。挂失参考号是：{speak_digits(result.reference)}。"
                )
                dispatcher.utter_message(text=f"再说一遍，参考号是：{speak_digits(result.reference)}。")
                dispatcher.utter_message(json_message=contract.interruptible(True))
            elif result.status == "already_lost":
                dispatcher.utter_message(text=f"尾号{card}的卡已经挂失过了，不用重复挂失。")
            else:
                dispatcher.utter_message(text=f"尾号{card}的卡不在您本人名下，无法挂失。")
        dispatcher.utter_message(response="utter_anything_else")
        return []


ACTIVATION_OUTCOMES = {
    "activated": "尾号{card}的卡已激活，现在可以正常使用了。",
    "already_active": "尾号{card}的卡已经是激活状态，不需要再激活。",
    "lost": "尾号{card}的卡已挂失，不能激活。如需补办新卡，请到网点办理。",
    "not_your_card": "尾号{card}的卡不在您本人名下，无法激活。",
}


def card_to_activate(cards: list[CardView], named: str | None) -> str | None:
    """The card the caller means: the one named, unless it is active and exactly one other card awaits activation
    (a caller verified earlier with their old card who says 「激活新卡」)."""
    inactive = [card.last4 for card in cards if card.status == "inactive"]
    named_card = next((card for card in cards if card.last4 == named), None)
    if named_card is not None and named_card.status == "active" and len(inactive) == 1:
        return inactive[0]
    return named


class ActionActivateCard(VerifiedTaskAction):
    def name(self) -> str:
        return "action_activate_card"

    def perform(self, dispatcher: CollectingDispatcher, tracker: Tracker, bank: BankService, customer_ref: str) -> list:
        card = card_to_activate(bank.cards(customer_ref), tracker.get_slot("card_last4"))
        result = bank.activate_card(customer_ref, card)
        dispatcher.utter_message(text=ACTIVATION_OUTCOMES.get(result.status, ACTIVATION_OUTCOMES["not_your_card"]).format(card=card))
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
        bank = bank_service()
        customer_ref = tracker.get_slot("customer_ref")
        statement = statement_for(bank, customer_ref, card)
        source = debit_source(bank.cards(customer_ref), card)
        credit = f"尾号{statement.card_last4}的信用卡" if statement else "信用卡"
        debit = f"尾号{source.last4}的{card_kind_name(source.kind)}" if source else "借记卡"
        return "utter_read_back_repayment", {"debit": debit, "credit": credit, "amount": spoken}
    return None, {}
