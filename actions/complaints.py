"""Complaints: collect what happened, open a work order, read the ticket number back digit by digit."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions import contract
from actions.cn_numbers import speak_digits
from actions.common import bank_service, call_id, latest_intent, request_id
from actions.handoff import HANDOFF_TEXT_UNAVAILABLE, hand_off
from actions.verification import requested_slot

MAX_COMPLAINT_CHARS = 500
MIN_COMPLAINT_CHARS = 2
OPENING_WITH_DESCRIPTION_CHARS = 12
# While a description is asked for, these still act as commands instead of being written into the complaint.
COMMAND_INTENTS = ("cancel", "human_agent", "green_channel", "repeat", "speak_slower", "goodbye", "dtmf")


class ValidateComplaintForm(FormValidationAction):
    def name(self) -> str:
        return "validate_complaint_form"

    async def extract_complaint_text(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        asked = requested_slot(tracker)
        if asked is None and latest_intent(tracker) == "complaint":
            # 「我要投诉你们网点排队两个小时」: the request already says what happened
            text = (tracker.latest_message.get("text") or "").strip()
            return {"complaint_text": text[:MAX_COMPLAINT_CHARS]} if len(text) >= OPENING_WITH_DESCRIPTION_CHARS else {}
        if asked != "complaint_text" or latest_intent(tracker) in COMMAND_INTENTS:
            return {}
        text = (tracker.latest_message.get("text") or "").strip()
        return {"complaint_text": None if text.startswith("/") else text[:MAX_COMPLAINT_CHARS]}

    def validate_complaint_text(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        if isinstance(value, str) and len(value) >= MIN_COMPLAINT_CHARS:
            return {"complaint_text": value}
        dispatcher.utter_message(text="没有听清，请再说一下您遇到的问题。")
        return {"complaint_text": None}


class ActionCreateComplaint(Action):
    def name(self) -> str:
        return "action_create_complaint"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        try:
            ticket = bank_service().create_work_order(
                kind="complaint",
                description=tracker.get_slot("complaint_text") or "",
                call_id=call_id(tracker),
                customer_ref=tracker.get_slot("customer_ref") or tracker.get_slot("caller_ref"),
                request_id=request_id(tracker, "complaint"),
            )
        except Exception:  # noqa: BLE001 - apology and handoff instead of silence
            return hand_off(dispatcher, tracker, reason="action_unavailable", text=HANDOFF_TEXT_UNAVAILABLE)
        dispatcher.utter_message(json_message=contract.interruptible(False))  # the ticket number must be heard
        dispatcher.utter_message(
            text=f"已为您登记，工单号是：{speak_digits(ticket)}。我们会在三个工作日内联系您。"
        )
        dispatcher.utter_message(json_message=contract.interruptible(True))
        dispatcher.utter_message(response="utter_anything_else")
        return [SlotSet("complaint_text", None)]
