"""Information without verification: branches by district or road, interest rates, exchange rates."""

from __future__ import annotations

import re
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions.bank.views import FxRateView, RateView
from actions.common import (
    bank_service, entity_values, in_form, latest_intent, latest_user_event_with_intent, task_done,
)
from actions.handoff import HANDOFF_UNAVAILABLE_RESPONSE, hand_off
from actions.verification import requested_slot
from actions.wording import pieces, spoken_date

MAX_LOCATION_CHARS = 20
MAX_RATES = 4  # a phone menu of rates: more than four is not remembered
FILLERS = re.compile(r"[喂嗯啊呃哦那个就是在我附近的哪里有网点银行吗呢吧请问，。？！?!,.\s]")
MAIN_CURRENCIES = ("USD", "EUR", "HKD", "JPY")
CURRENCY_WORDS = {
    "美元": "USD", "美金": "USD", "欧元": "EUR", "日元": "JPY", "港币": "HKD", "港元": "HKD",
    "英镑": "GBP", "澳元": "AUD", "加元": "CAD", "新加坡元": "SGD", "瑞士法郎": "CHF", "韩元": "KRW",
}


def location_from_text(text: str) -> str | None:
    """「我在朝阳区附近」→「朝阳区」: the words left once fillers are dropped."""
    if text.startswith("/"):
        return None
    core = FILLERS.sub("", text)[:MAX_LOCATION_CHARS]
    return core or None


class ValidateBranchForm(FormValidationAction):
    def name(self) -> str:
        return "validate_branch_form"

    async def extract_location(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        named = entity_values(tracker.latest_message, "location")
        if named:
            return {"location": named[-1][:MAX_LOCATION_CHARS]}
        if requested_slot(tracker) == "location" and latest_intent(tracker) in ("inform", "branch_locator", "nlu_fallback", "out_of_scope"):
            return {"location": location_from_text(tracker.latest_message.get("text") or "")}
        return {}

    def validate_location(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        if isinstance(value, str) and value.strip():
            return {"location": value.strip()}
        dispatcher.utter_message(response="utter_location_unclear")
        return {"location": None}


class ActionBranchLocator(Action):
    def name(self) -> str:
        return "action_branch_locator"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        location = tracker.get_slot("location") or next(iter(entity_values(tracker.latest_message, "location")), "")
        if in_form(tracker) and not location:
            dispatcher.utter_message(response="utter_branches_after_task")
            return []
        try:
            branches = bank_service().branches(location, limit=3)
        except Exception:  # noqa: BLE001 - apology and handoff instead of silence
            return hand_off(dispatcher, tracker, reason="action_unavailable", response=HANDOFF_UNAVAILABLE_RESPONSE)
        if branches:
            listed = pieces(domain, "utter_item_branch",
                            [{"name": b.name, "address": b.address, "hours": b.hours} for b in branches])
            dispatcher.utter_message(response="utter_branches", count=str(len(branches)), branches=listed)
            task_done(dispatcher, "branch_locator")
        else:
            dispatcher.utter_message(response="utter_no_branches", location=location)
        if not in_form(tracker):
            dispatcher.utter_message(response="utter_anything_else")
        return [SlotSet("location", None)]


def rate_item(rate: RateView) -> dict[str, str]:
    name = rate.product if rate.term in rate.product else f"{rate.product}{rate.term}"  # 活期存款, not 活期存款活期
    return {"name": name, "percent": f"{rate.rate_percent.normalize():f}"}


class ActionInterestRate(Action):
    """Deposit rates, or loan rates when the caller asked about 贷款."""

    def name(self) -> str:
        return "action_interest_rate"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        text = tracker.latest_message.get("text") or ""
        loans = "贷" in text
        try:
            rates = bank_service().loan_rates() if loans else bank_service().deposit_rates()
        except Exception:  # noqa: BLE001
            return hand_off(dispatcher, tracker, reason="action_unavailable", response=HANDOFF_UNAVAILABLE_RESPONSE)
        found, none = (
            ("utter_loan_rates", "utter_no_loan_rates") if loans else ("utter_deposit_rates", "utter_no_deposit_rates")
        )
        if rates:
            dispatcher.utter_message(response=found, rates=pieces(domain, "utter_item_rate", [rate_item(r) for r in rates[:MAX_RATES]]))
            task_done(dispatcher, "interest_rate")
        else:
            dispatcher.utter_message(response=none)
        if not in_form(tracker):
            dispatcher.utter_message(response="utter_anything_else")
        return []


def currencies_asked(tracker: Tracker) -> list[str]:
    request = latest_user_event_with_intent(tracker, ["exchange_rate", "inform"]) or {}
    named = [value.upper() for value in entity_values(request.get("parse_data") or {}, "currency")]
    text = str(request.get("text") or "")
    named += [code for word, code in CURRENCY_WORDS.items() if word in text]
    return list(dict.fromkeys(code for code in named if code in CURRENCY_WORDS.values() or len(code) == 3)) or list(MAIN_CURRENCIES)


def fx_item(rate: FxRateView) -> dict[str, str]:
    return {"currency": rate.name_zh, "buy": f"{rate.buy.normalize():f}", "sell": f"{rate.sell.normalize():f}"}


class ActionExchangeRate(Action):
    """The asked currencies' rates, or the main ones when none was named."""

    def name(self) -> str:
        return "action_exchange_rate"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        try:
            rates = [rate for rate in (bank_service().fx_rate(code) for code in currencies_asked(tracker)[:4]) if rate]
        except Exception:  # noqa: BLE001
            return hand_off(dispatcher, tracker, reason="action_unavailable", response=HANDOFF_UNAVAILABLE_RESPONSE)
        if rates:
            dispatcher.utter_message(response="utter_fx_rates", date=spoken_date(domain, rates[0].as_of),
                                     rates=pieces(domain, "utter_item_fx", [fx_item(r) for r in rates]))
            task_done(dispatcher, "exchange_rate")
        else:
            dispatcher.utter_message(response="utter_no_fx_rates")
        if not in_form(tracker):
            dispatcher.utter_message(response="utter_anything_else")
        return []
