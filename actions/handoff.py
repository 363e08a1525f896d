"""Transfer to a human: choose the queue, build the contract's handoff payload, record it with the bank.

Elderly callers (光银岁月) and the green channel always go to the elderly priority queue.
"""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import ActiveLoop, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import contract
from actions.common import bank_service, call_id, clear_task_slots, latest_task_intent

logger = logging.getLogger(__name__)

QUEUE_BY_INTENT = {
    "complaint": contract.QUEUE_COMPLAINT,
    "report_card_loss": contract.QUEUE_CARD_SERVICES,
    "activate_card": contract.QUEUE_CARD_SERVICES,
    "reset_password": contract.QUEUE_CARD_SERVICES,
}

# What is said before the transfer: domain responses (domain/service.yml), so trainers reword them.
HANDOFF_RESPONSE = "utter_handoff"
HANDOFF_UNAVAILABLE_RESPONSE = "utter_handoff_unavailable"


def choose_queue(tracker: Tracker, intent: str | None, green_channel: bool) -> str:
    if green_channel or tracker.get_slot("elderly"):
        return contract.QUEUE_ELDERLY
    return QUEUE_BY_INTENT.get(intent or "", contract.QUEUE_GENERAL)


def handoff_context(tracker: Tracker, intent: str | None, green_channel: bool) -> dict[str, Any]:
    return {
        "intent": intent,
        "verified": bool(tracker.get_slot("verified")),
        "customer_ref": tracker.get_slot("customer_ref") or tracker.get_slot("caller_ref"),
        "green_channel": green_channel,
        "call_id": call_id(tracker),
    }


def hand_off(
    dispatcher: CollectingDispatcher,
    tracker: Tracker,
    reason: str,
    response: str = HANDOFF_RESPONSE,
    green_channel: bool = False,
) -> list[dict[str, Any]]:
    """Say `response`, send the handoff event and record it; returns the events that end any task in progress."""
    intent = latest_task_intent(tracker)
    queue = choose_queue(tracker, intent, green_channel)
    context = handoff_context(tracker, intent, green_channel)
    _record(queue, reason, context)
    dispatcher.utter_message(response=response)
    dispatcher.utter_message(json_message=contract.handoff(queue, reason, context))
    return [ActiveLoop(None), SlotSet("requested_slot", None), SlotSet("pending_offer", None), *clear_task_slots()]


def _record(queue: str, reason: str, context: dict[str, Any]) -> None:
    # A failing bank database must not stop the transfer: the caller is already waiting for a person.
    try:
        bank_service().record_handoff(
            call_id=context["call_id"], queue=queue, reason=reason, intent=context["intent"],
            verified=context["verified"], customer_ref=context["customer_ref"],
        )
    except Exception:  # noqa: BLE001 - any bank failure is logged and the handoff proceeds
        logger.exception("could not record the handoff")  # the line names its call (call_logging.py)
