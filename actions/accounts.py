"""Balance and transaction history for a verified caller."""

from __future__ import annotations

import asyncio
import re
from datetime import date, timedelta
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.bank.service import BankService
from actions.bank.views import TransactionView
from actions.cn_numbers import amount_cents_from_speech, speak_amount
from actions.common import bank_service, entity_values, latest_user_event_with_intent, task_done
from actions.tasks import VerifiedTaskAction
from actions.wording import LIST_SEPARATOR, piece

DEFAULT_TRANSACTIONS = 5
MAX_TRANSACTIONS = 10
# 「最近五笔」「最近10条」: the count the caller asked for
COUNT_PATTERN = re.compile(r"([0-9一二两三四五六七八九十]+)\s*(?:笔|条|次)")


class ActionCheckBalance(VerifiedTaskAction):
    def name(self) -> str:
        return "action_check_balance"

    def perform(self, dispatcher: CollectingDispatcher, tracker: Tracker, bank: BankService, customer_ref: str,
                domain: dict) -> list:
        card = tracker.get_slot("card_last4")
        dispatcher.utter_message(response="utter_balance", card=card, amount=speak_amount(bank.balance(customer_ref, card)))
        task_done(dispatcher, "check_balance")
        dispatcher.utter_message(response="utter_anything_else")
        return []


class ActionBalanceAside(Action):
    """「我卡里还有多少钱」 inside another task (a transfer's amount prompt): the balance of the task's card, then the
    rules go back to the form, which asks its question again. Nothing of the task is cleared."""

    def name(self) -> str:
        return "action_balance_aside"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        card, customer_ref = tracker.get_slot("card_last4"), tracker.get_slot("customer_ref")
        if not (tracker.get_slot("verified") and card and customer_ref):
            dispatcher.utter_message(response="utter_balance_after_verification")
            return []
        cents = await asyncio.to_thread(bank_service().balance, customer_ref, card)
        dispatcher.utter_message(response="utter_balance", card=card, amount=speak_amount(cents))
        task_done(dispatcher, "check_balance")
        return []


def requested_count(text: str) -> int:
    match = COUNT_PATTERN.search(text)
    if not match:
        return DEFAULT_TRANSACTIONS
    raw = match.group(1)
    count = int(raw) if raw.isdigit() else (amount_cents_from_speech(raw) or 0) // 100
    return max(1, min(count, MAX_TRANSACTIONS)) if count else DEFAULT_TRANSACTIONS


def _first_of_next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)  # the 28th plus 4 days is always next month


def period_bounds(period: str, today: date) -> tuple[date, date] | None:
    """The date range of a spoken period (今天, 上周, 这个月, 最近三十天...), or None for 'the most recent ones'."""
    if "今天" in period:
        return today, today
    if "昨天" in period:
        return today - timedelta(days=1), today - timedelta(days=1)
    if "上周" in period or "上个星期" in period or "上星期" in period:
        monday = today - timedelta(days=today.weekday())
        return monday - timedelta(days=7), monday - timedelta(days=1)
    if "本周" in period or "这周" in period or "这个星期" in period:
        return today - timedelta(days=today.weekday()), today
    # A period still to come is that period, not a recent one: it holds no transactions, and the caller hears so.
    if "明天" in period:
        return today + timedelta(days=1), today + timedelta(days=1)
    if "下周" in period or "下个星期" in period or "下星期" in period:
        next_monday = today + timedelta(days=7 - today.weekday())
        return next_monday, next_monday + timedelta(days=6)
    if "下个月" in period or "下月" in period:
        next_month = _first_of_next_month(today)
        return next_month, _first_of_next_month(next_month) - timedelta(days=1)
    if "上个月" in period or "上月" in period:
        last_month_end = today.replace(day=1) - timedelta(days=1)
        return last_month_end.replace(day=1), last_month_end
    if "本月" in period or "这个月" in period or "这月" in period:
        return today.replace(day=1), today
    if "周" in period or "星期" in period or "七天" in period or "7天" in period:
        return today - timedelta(days=7), today
    if "月" in period or "三十天" in period or "30天" in period:
        return today - timedelta(days=30), today
    return None


def spoken_transaction(domain: dict, transaction: TransactionView) -> str:
    """One transaction as a list item: its date, description and the amount in or out (utter_item_transaction_*)."""
    response = "utter_item_transaction_in" if transaction.amount_cents > 0 else "utter_item_transaction_out"
    return piece(domain, response, month=transaction.posted_at.month, day=transaction.posted_at.day,
                 description=transaction.description, amount=speak_amount(abs(transaction.amount_cents)))


class ActionQueryTransactions(VerifiedTaskAction):
    """Recent N transactions (「最近五笔」) or those of a period (「上个月」), read from the request that opened the task."""

    def name(self) -> str:
        return "action_query_transactions"

    def perform(self, dispatcher: CollectingDispatcher, tracker: Tracker, bank: BankService, customer_ref: str,
                domain: dict) -> list:
        card = tracker.get_slot("card_last4")
        request = latest_user_event_with_intent(tracker, ["query_transactions"]) or {}
        text = str(request.get("text") or "")
        period_words = " ".join(entity_values(request.get("parse_data") or {}, "date_period")) or text
        bounds = period_bounds(period_words, date.today())
        limit = requested_count(text)
        if bounds:
            found = bank.transactions(customer_ref, card, limit=limit, start=bounds[0], end=bounds[1])
        else:
            found = bank.transactions(customer_ref, card, limit=limit)
        if not found:
            dispatcher.utter_message(response="utter_no_transactions", card=card)
        else:
            items = LIST_SEPARATOR.join(spoken_transaction(domain, t) for t in found)
            dispatcher.utter_message(response="utter_transactions", card=card, count=str(len(found)), items=items)
        task_done(dispatcher, "query_transactions")  # 「没有交易」 answers the question too
        dispatcher.utter_message(response="utter_anything_else")
        return []
