"""Transfers between the verified caller's own cards, with read-back, confirmation and the daily limit."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.bank.service import BankService
from actions.bank.views import TransferResult
from actions.cn_numbers import speak_amount, speak_digits
from actions.cards import amount_answer, validated_amount
from actions.common import bank_service, request_id
from actions.tasks import VerifiedTaskAction
from actions.verification import CARD_DIGITS, VerifiedTaskValidation, answer_for, requested_slot


class ValidateTransferForm(VerifiedTaskValidation):
    task_intent = "transfer_money"

    def name(self) -> str:
        return "validate_transfer_form"

    async def extract_to_card(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        return answer_for(tracker, "to_card", CARD_DIGITS, self.answer_intents()) if requested_slot(tracker) == "to_card" else {}

    def validate_to_card(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        if not (isinstance(value, str) and len(value) == CARD_DIGITS and value.isdigit()):
            dispatcher.utter_message(text="转入卡的卡号后四位是4位数字，请再说一遍。")
            return {"to_card": None}
        if value == tracker.get_slot("card_last4"):
            dispatcher.utter_message(text="转入卡不能和转出卡相同，请说另一张卡的后四位。")
            return {"to_card": None}
        own = {card.last4 for card in bank_service().cards(tracker.get_slot("customer_ref"))}
        if value not in own:
            # said now, not after the read-back: phone banking only moves money between the caller's own cards
            dispatcher.utter_message(text=f"尾号{value}的卡不在您本人名下。电话银行只能在本人的卡之间转账，请说您本人另一张卡的后四位，或者说「取消」。")
            return {"to_card": None}
        return {"to_card": value}

    async def extract_amount_cents(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        return amount_answer(tracker, self.answer_intents()) if requested_slot(tracker) == "amount_cents" else {}

    def validate_amount_cents(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        return validated_amount(value, dispatcher)


def transfer_outcome(result: TransferResult, source: str, target: str, amount: int) -> str:
    left = f"今天还可以转账{speak_amount(result.limit_left_cents)}。" if result.limit_left_cents is not None else ""
    if result.status == "ok" and result.repeated:
        return (f"这笔转账本次通话中已经办理过了，没有重复转账。参考号是：{speak_digits(result.reference or '')}。")
    if result.status == "ok":
        return (
            f"转账成功，已从尾号{source}的卡向尾号{target}的卡转账{speak_amount(amount)}。"
            f"参考号是：{speak_digits(result.reference or '')}。{left}"
        )
    if result.status == "insufficient_funds":
        return f"尾号{source}的卡余额不足，转账没有成功。"
    if result.status == "daily_limit":
        return f"这笔转账超过了每日转账限额，没有成功。{left}"
    if result.status == "same_card":
        return "转出卡和转入卡不能相同，转账没有成功。"
    if result.status == "not_your_card":
        return "电话银行只能在您本人名下的卡之间转账，转账没有成功。"
    if result.status == "invalid_amount":
        return "转账金额不正确，转账没有成功。"
    return "其中一张卡已挂失、未激活或不能转出，转账没有成功。"


class ActionTransferMoney(VerifiedTaskAction):
    def name(self) -> str:
        return "action_transfer_money"

    def perform(self, dispatcher: CollectingDispatcher, tracker: Tracker, bank: BankService, customer_ref: str) -> list:
        source, target = tracker.get_slot("card_last4"), tracker.get_slot("to_card")
        amount = tracker.get_slot("amount_cents")
        if tracker.get_slot("confirmed") is not True or not (target and amount):
            dispatcher.utter_message(text="好的，已取消转账。")
        else:
            key = request_id(tracker, "transfer", source, target, int(amount))
            result = bank.transfer(customer_ref, source, target, int(amount), key)
            dispatcher.utter_message(text=transfer_outcome(result, source, target, int(amount)))
        dispatcher.utter_message(response="utter_anything_else")
        return []
