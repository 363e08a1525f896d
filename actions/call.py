"""Call lifecycle actions: the greeting at /call_start, keypad input outside forms, yes/no to an offer, failed transfers."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, ActiveLoop, SlotSet, UserUttered
from rasa_sdk.executor import CollectingDispatcher

from actions import contract
from actions.cn_numbers import speak_digits
from actions.common import bank_service, call_id, clear_task_slots, in_form, keyed_digits
from actions.handoff import hand_off
from actions.keypad import HUMAN_KEY, MENU_KEY, intent_for_key, menu_text
from call_contract import elderly_caller

logger = logging.getLogger(__name__)

OFFER_HUMAN = "human"
OFFER_CALLBACK = "callback"
# A human offered for a reason the handoff should carry: "human:pin_locked", "human:password_help".
OFFER_HUMAN_FOR = OFFER_HUMAN + ":{reason}"


def offered_handoff_reason(offer: str | None) -> str:
    """The handoff reason of an open human offer ("human_agent" when the offer named none)."""
    _, _, reason = (offer or "").partition(":")
    return reason or "human_agent"


def call_metadata(tracker: Tracker) -> dict[str, Any]:
    """Metadata the gateway sent with /call_start (caller_number, channel, asr_available)."""
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            metadata = event.get("metadata") or {}
            return metadata if isinstance(metadata, dict) else {}
    return {}


class ActionCallStart(Action):
    """Greets the caller: 光银岁月 (personal, slower, 「人工」/0) for elderly customers, the standard greeting otherwise."""

    def name(self) -> str:
        return "action_call_start"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        metadata = call_metadata(tracker)
        caller_number = str(metadata.get("caller_number") or "")[:32] or None
        asr_available = metadata.get("asr_available") is not False
        events = [
            SlotSet("caller_number", caller_number),
            SlotSet("call_channel", str(metadata.get("channel") or "voice")[:16]),
            SlotSet("asr_available", asr_available),
        ]
        customer = self._customer(caller_number)
        if customer is not None:
            events.append(SlotSet("caller_ref", customer.ref))
        if customer is not None and customer.is_elderly:
            dispatcher.utter_message(json_message=contract.speech_rate(contract.ELDERLY_SPEECH_RATE))
            dispatcher.utter_message(json_message=elderly_caller())  # for the call record and the KPIs
            dispatcher.utter_message(response="utter_greet_elderly", surname=customer.surname, title=customer.title,
                                     human_key=HUMAN_KEY)
            events += [SlotSet("elderly", True), SlotSet("speech_rate", contract.ELDERLY_SPEECH_RATE)]
        else:
            dispatcher.utter_message(response="utter_greet_standard")
        if not asr_available:
            # Keypad-only portal: the caller cannot be understood by voice, so the menu is the way in.
            dispatcher.utter_message(response="utter_keypad_only_menu", menu=menu_text())
        return events

    @staticmethod
    def _customer(caller_number: str | None):
        if not caller_number:
            return None
        try:
            return bank_service().customer_by_phone(caller_number)
        except Exception:  # noqa: BLE001 - a dead bank store must not cost the caller the greeting
            logger.exception("customer lookup failed at call start")
            return None


class ActionDtmf(Action):
    """Keypad input outside a form: `*` menu, 0 human, 1/2 answer an open offer, single digits pick a menu task."""

    def name(self) -> str:
        return "action_dtmf"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        digits = keyed_digits(tracker)
        offer = tracker.get_slot("pending_offer")
        if digits == MENU_KEY and in_form(tracker):
            # `*` inside an entry (card, PIN, amount): the task is left and the menu read, as the keypad promises
            dispatcher.utter_message(response="utter_entry_cancelled", menu=menu_text())
            return [ActiveLoop(None), SlotSet("requested_slot", None), *clear_task_slots()]
        if digits == MENU_KEY:
            dispatcher.utter_message(text=menu_text())
            return []
        if digits == HUMAN_KEY:
            return hand_off(dispatcher, tracker, reason=offered_handoff_reason(offer))
        if offer and digits in ("1", "2"):
            answer = answer_offer if digits == "1" else decline_offer
            return answer(dispatcher, tracker)
        intent = intent_for_key(digits or "")
        if intent is None:
            dispatcher.utter_message(response="utter_keypad_choose_task", menu=menu_text())
            return []
        # Replay the key as if the caller had said the task, so the same rules and forms handle it.
        return [
            ActionExecuted("action_listen"),
            UserUttered(text=f"/{intent}", parse_data={"intent": {"name": intent, "confidence": 1.0}, "entities": []}),
        ]


def answer_offer(dispatcher: CollectingDispatcher, tracker: Tracker) -> list[dict[str, Any]]:
    offer = tracker.get_slot("pending_offer")
    if offer and offer.startswith(OFFER_HUMAN):
        return hand_off(dispatcher, tracker, reason=offered_handoff_reason(offer))
    if offer == OFFER_CALLBACK:
        return _create_callback(dispatcher, tracker)
    dispatcher.utter_message(response="utter_anything_else")
    return []


def decline_offer(dispatcher: CollectingDispatcher, tracker: Tracker) -> list[dict[str, Any]]:
    if tracker.get_slot("pending_offer") == OFFER_CALLBACK:
        dispatcher.utter_message(response="utter_callback_declined")
    else:
        dispatcher.utter_message(response="utter_anything_else")
    return [SlotSet("pending_offer", None)]


def _create_callback(dispatcher: CollectingDispatcher, tracker: Tracker) -> list[dict[str, Any]]:
    try:
        ticket = bank_service().create_work_order(
            kind="callback",
            description="人工转接失败，客户要求回电",
            call_id=call_id(tracker),
            customer_ref=tracker.get_slot("customer_ref") or tracker.get_slot("caller_ref"),
            request_id=f"{call_id(tracker)}:callback",
        )
    except Exception:  # noqa: BLE001 - tell the caller instead of going silent
        logger.exception("could not create a callback work order")
        dispatcher.utter_message(response="utter_callback_failed")
        return [SlotSet("pending_offer", None)]
    dispatcher.utter_message(json_message=contract.interruptible(False))
    dispatcher.utter_message(response="utter_callback_registered", ticket=speak_digits(ticket))
    dispatcher.utter_message(json_message=contract.interruptible(True))
    dispatcher.utter_message(response="utter_anything_else")
    return [SlotSet("pending_offer", None)]


class ActionAffirm(Action):
    """「是」 outside a form: accepts the open offer (human or callback)."""

    def name(self) -> str:
        return "action_affirm"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        return answer_offer(dispatcher, tracker)


class ActionDeny(Action):
    """「不用」 outside a form: declines the open offer."""

    def name(self) -> str:
        return "action_deny"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        return decline_offer(dispatcher, tracker)


class ActionTransferFailed(Action):
    """The telephony transfer failed: apologise and offer a callback ticket."""

    def name(self) -> str:
        return "action_transfer_failed"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        dispatcher.utter_message(response="utter_transfer_failed")
        return [SlotSet("pending_offer", OFFER_CALLBACK)]
