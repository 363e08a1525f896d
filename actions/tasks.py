"""Base of the actions that carry out a verified task once its form is complete."""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABCMeta, abstractmethod
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.bank.errors import NotYourCard
from actions.bank.service import BankService, commit_deadline
from actions.call import OFFER_HUMAN_FOR
from actions.common import bank_service, clear_task_slots
from actions.handoff import HANDOFF_UNAVAILABLE_RESPONSE, hand_off
from actions.keypad import HUMAN_KEY
from settings import get_settings

logger = logging.getLogger(__name__)

# Time kept back from the action budget for the reply to reach Rasa after the bank committed.
COMMIT_MARGIN_S = 0.5


class VerifiedTaskAction(Action, metaclass=ABCMeta):  # abstract: rasa_sdk registers no action for it
    """Runs `perform` for a verified caller; explains a locked PIN service; never leaves the caller in silence."""

    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def perform(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, bank: BankService, customer_ref: str, domain: dict
    ) -> list[dict[str, Any]]:
        """Carry out the task and say the outcome (`domain` for the wording of list items, actions/wording.py)."""

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        if not tracker.get_slot("verified"):
            return refuse_unverified(dispatcher, tracker) + clear_task_slots()
        # The bank work (SQL, row locks) runs off the action server's event loop, and a money movement commits only
        # while Rasa still waits for this action: later, the caller has already heard an apology.
        deadline = time.monotonic() + get_settings().actions.timeout_s - COMMIT_MARGIN_S
        try:
            events = await asyncio.to_thread(self._perform_by, deadline, dispatcher, tracker, domain)
        except NotYourCard:
            dispatcher.utter_message(response="utter_card_not_own", card=tracker.get_slot("card_last4") or "")
            events = []
        except Exception:  # noqa: BLE001 - a failing bank store becomes an apology and a handoff, never silence
            logger.exception("task %s failed", self.name())
            return hand_off(dispatcher, tracker, reason="action_unavailable", response=HANDOFF_UNAVAILABLE_RESPONSE)
        return events + clear_task_slots()

    def _perform_by(self, deadline: float, dispatcher: CollectingDispatcher, tracker: Tracker,
                    domain: dict) -> list[dict[str, Any]]:
        with commit_deadline(deadline):
            return self.perform(dispatcher, tracker, bank_service(), tracker.get_slot("customer_ref"), domain)


def refuse_unverified(dispatcher: CollectingDispatcher, tracker: Tracker) -> list[dict[str, Any]]:
    if tracker.get_slot("pin_locked"):
        dispatcher.utter_message(response="utter_pin_locked", human_key=HUMAN_KEY)
        return [SlotSet("pending_offer", OFFER_HUMAN_FOR.format(reason="pin_locked"))]
    dispatcher.utter_message(response="utter_not_verified")
    return []
