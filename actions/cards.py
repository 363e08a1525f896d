"""Card services: credit-card bill and repayment, card loss, activation, and how to reset a PIN."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import contract
from actions.bank.service import BankService
from actions.bank.views import CardView, StatementView
from actions.call import OFFER_HUMAN_FOR
from actions.cn_numbers import (
    amount_cents_from_speech,
    find_amount_cents,
    says_negative_amount,
    speak_amount,
    speak_digits,
)
from actions.common import bank_service, card_kind_name, keyed_digits, latest_intent, request_id
from actions.tasks import VerifiedTaskAction
from actions.verification import VerifiedTaskValidation, requested_slot

MAX_AMOUNT_CENTS = 100_000_000  # 1,000,000 yuan: anything above is a mishearing, not a phone transaction
FULL_AMOUNT_WORDS = ("全额", "全部", "全款", "还清", "账单金额", "所有")
MINIMUM_WORDS = ("最低",)
CONFIRM_QUESTION = "确认请说「是」或按一，取消请说「不」或按二。"
AMOUNT_UNCLEAR = "没有听清金额，请再说一遍，比如「五百元」。"
AMOUNT_NOT_POSITIVE = "金额必须大于零，请重新说一个金额，比如「五百元」。"


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
    cents = amount_cents_from_speech(text) or find_amount_cents(text)
    return -cents if cents is not None and says_negative_amount(text) else cents


def amount_answer(tracker: Tracker, answer_intents: tuple[str, ...]) -> dict:
    """The `amount_cents` slot from the latest message; an unclear answer empties the slot so the form re-asks."""
    cents = spoken_amount_cents(tracker)
    if cents is not None:
        return {"amount_cents": str(cents)}
    return {"amount_cents": None} if latest_intent(tracker) in answer_intents else {}


class ActionCreditCardBill(VerifiedTaskAction):
    def name(self) -> str:
        return "action_credit_card_bill"

    def perform(self, dispatcher: CollectingDispatcher, tracker: Tracker, bank: BankService, customer_ref: str) -> list:
        statement = statement_for(bank, customer_ref, tracker.get_slot("card_last4"))
        if statement is None:
            dispatcher.utter_message(text="您名下没有信用卡账单。")
        elif remaining_due(statement) == 0:
            dispatcher.utter_message(text=f"您尾号{statement.card_last4}的信用卡本期没有待还款金额。")
        else:
            dispatcher.utter_message(
                text=f"您尾号{statement.card_last4}的信用卡本期应还{speak_amount(remaining_due(statement))}，"
                f"最低还款{speak_amount(statement.minimum_due_cents)}，到期还款日是{due_date_text(statement)}。"
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
        statement = statement_for(bank_service(), tracker.get_slot("customer_ref"), tracker.get_slot("card_last4"))
        if statement and any(word in text for word in FULL_AMOUNT_WORDS):
            return {"amount_cents": str(remaining_due(statement))}
        if statement and any(word in text for word in MINIMUM_WORDS):
            return {"amount_cents": str(statement.minimum_due_cents)}
        return amount_answer(tracker, self.answer_intents())

    def validate_amount_cents(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        return validated_amount(value, dispatcher)


def validated_amount(value: Any, dispatcher: CollectingDispatcher) -> dict:
    if isinstance(value, str) and value.isdigit() and 0 < int(value) <= MAX_AMOUNT_CENTS:
        return {"amount_cents": value}
    not_positive = isinstance(value, str) and value.lstrip("-").isdigit() and int(value) <= 0
    dispatcher.utter_message(text=AMOUNT_NOT_POSITIVE if not_positive else AMOUNT_UNCLEAR)
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
        dispatcher.utter_message(
            text="为了您的资金安全，密码不能通过电话重置。请您携带本人身份证件和银行卡到任意网点办理，"
            "也可以在手机银行里使用视频银行，由客服视频核实身份后办理。需要为您转接人工客服吗？"
        )
        return [SlotSet("pending_offer", OFFER_HUMAN_FOR.format(reason="password_help"))]


class ActionAskConfirmed(Action):
    """Reads the request back before anything is changed, then asks for yes (1) or no (2)."""

    def name(self) -> str:
        return "action_ask_confirmed"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        form = tracker.active_loop.get("name")
        # no `expect` here: the answer may be spoken (「是」), and expect would switch the recogniser to digits only
        dispatcher.utter_message(text=f"{read_back(form, tracker)}{CONFIRM_QUESTION}")
        return []


def read_back(form: str | None, tracker: Tracker) -> str:
    card = tracker.get_slot("card_last4")
    amount = tracker.get_slot("amount_cents")
    spoken = speak_amount(int(amount)) if amount and str(amount).isdigit() else ""
    if form == "card_loss_form":
        return f"您要挂失尾号{card}的卡，挂失后这张卡会立即停止使用。"
    if form == "transfer_form":
        return f"将从尾号{card}的卡向尾号{tracker.get_slot('to_card')}的卡转账{spoken}。"
    if form == "repayment_form":
        bank = bank_service()
        customer_ref = tracker.get_slot("customer_ref")
        statement = statement_for(bank, customer_ref, card)
        source = debit_source(bank.cards(customer_ref), card)
        credit = f"尾号{statement.card_last4}的信用卡" if statement else "信用卡"
        debit = f"尾号{source.last4}的{card_kind_name(source.kind)}" if source else "借记卡"
        return f"将从{debit}还款{spoken}到{credit}。"
    return ""
