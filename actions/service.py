"""Service intents, available at any point of a call: human, green channel, repeat, slower, cancel, menu, not understood."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import contract
from actions.call import OFFER_HUMAN, answer_offer, decline_offer, offered_handoff_reason
from actions.common import clear_task_slots, event_intent, in_form, user_events
from actions.handoff import hand_off
from actions.keypad import HUMAN_KEY, menu_text
from actions.utterances import GREEN_CHANNEL, explicit_answer, human_request
from call_contract import NOT_UNDERSTOOD_INTENTS, REASON_NLU_FALLBACK

# custom payloads 「重复」 replays with the texts: those that shape a prompt. The others act on the call or report a
# fact once (handoff, hangup, speech_rate, task_completed, survey_*): replayed, a task would count twice.
REPEATABLE_EVENTS = ("expect", "interruptible")


class ActionHumanHandoff(Action):
    def name(self) -> str:
        return "action_human_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        # after 「密码锁定…需要人工吗」 the agent should know why the caller is coming
        return hand_off(dispatcher, tracker, reason=offered_handoff_reason(tracker.get_slot("pending_offer")))


class ActionGreenChannel(Action):
    """绿色通道: straight to the elderly priority queue, in this very turn, no verification and no questions."""

    def name(self) -> str:
        return "action_green_channel"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        return green_channel(dispatcher, tracker)


def green_channel(dispatcher: CollectingDispatcher, tracker: Tracker) -> list[dict[str, Any]]:
    return hand_off(dispatcher, tracker, reason="green_channel", green_channel=True, response="utter_green_channel")


def honour_human_request(dispatcher: CollectingDispatcher, tracker: Tracker, reason: str = "human_agent") -> list | None:
    """The handoff when the caller's words ask for a person (whatever the classifier made of them), else None."""
    asked = human_request(tracker.latest_message.get("text"))
    if asked == GREEN_CHANNEL:
        return green_channel(dispatcher, tracker)
    return hand_off(dispatcher, tracker, reason=reason) if asked else None


def last_bot_turn(tracker: Tracker) -> list[dict[str, Any]]:
    """The bot messages of the turn before the latest user message, in order."""
    events = list(tracker.events)
    user_indexes = [i for i, event in enumerate(events) if event.get("event") == "user"]
    if not user_indexes:
        return []
    end = user_indexes[-1]
    start = user_indexes[-2] + 1 if len(user_indexes) > 1 else 0
    return [event for event in events[start:end] if event.get("event") == "bot"]


def replay(dispatcher: CollectingDispatcher, bot_events: list[dict[str, Any]]) -> bool:
    """Sends the texts and prompt payloads (e.g. expect) of `bot_events` again, word for word; False if nothing to say."""
    said = False
    for event in bot_events:
        custom = (event.get("data") or {}).get("custom")
        if event.get("text"):
            dispatcher.utter_message(text=event["text"])
            said = True
        if isinstance(custom, dict) and custom.get("event") in REPEATABLE_EVENTS:
            dispatcher.utter_message(json_message=custom)
    return said


class ActionRepeat(Action):
    """「再说一遍」: the last bot prompt again, word for word (repeating a repeat gives the same words).

    Inside a form the form itself asks its question again, word for word, right after this action.
    """

    def name(self) -> str:
        return "action_repeat"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        if in_form(tracker):
            return []
        if not replay(dispatcher, last_bot_turn(tracker)):
            dispatcher.utter_message(response="utter_greet_again")
        return []


class ActionSpeakSlower(Action):
    """「说慢一点」: a slower speech_rate for the rest of the call, then the last prompt again at the new rate."""

    def name(self) -> str:
        return "action_speak_slower"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        current = float(tracker.get_slot("speech_rate") or 1.0)
        rate = contract.slower_rate(current)
        dispatcher.utter_message(json_message=contract.speech_rate(rate))
        dispatcher.utter_message(response="utter_speaking_slower")
        if not in_form(tracker):
            replay(dispatcher, last_bot_turn(tracker))
        return [SlotSet("speech_rate", rate)]


class ActionCancelTask(Action):
    """「取消」: abandons the task or form in progress."""

    def name(self) -> str:
        return "action_cancel_task"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        in_task = tracker.active_loop.get("name") is not None
        dispatcher.utter_message(response="utter_cancelled" if in_task else "utter_ok_anything_else")
        return [ActiveLoop(None), SlotSet("requested_slot", None), SlotSet("pending_offer", None), *clear_task_slots()]


class ActionKeypadMenu(Action):
    def name(self) -> str:
        return "action_keypad_menu"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        dispatcher.utter_message(text=menu_text())
        return []


def consecutive_not_understood(tracker: Tracker) -> int:
    """How many of the latest user turns in a row were not understood (any understood turn resets the count)."""
    count = 0
    for event in reversed(user_events(tracker)):
        if event_intent(event) not in NOT_UNDERSTOOD_INTENTS:
            break
        count += 1
    return count


class ActionNotUnderstood(Action):
    """1st: reprompt with examples; 2nd in a row: offer a human and the keypad menu; 3rd: hand off."""

    def name(self) -> str:
        return "action_not_understood"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        handoff = honour_human_request(dispatcher, tracker)
        if handoff is not None:
            return handoff
        if tracker.get_slot("pending_offer") and not in_form(tracker):
            # 「好的」 / 「不用」 to an open offer that the classifier was unsure about
            answer = explicit_answer(tracker.latest_message.get("text"))
            if answer is not None:
                return (answer_offer if answer else decline_offer)(dispatcher, tracker)
        count = consecutive_not_understood(tracker)
        if count >= 3:
            return hand_off(dispatcher, tracker, reason=REASON_NLU_FALLBACK, response="utter_not_understood_handoff")
        if count == 2:
            dispatcher.utter_message(response="utter_not_understood_second", menu=menu_text(), human_key=HUMAN_KEY)
            return [SlotSet("pending_offer", OFFER_HUMAN)]
        dispatcher.utter_message(response="utter_not_understood_first")
        return []


class ActionFiller(Action):
    """「嗯」「哦」「那个」: never a yes. Inside a form the form asks its question again right after this action; an
    open offer is asked again with how to answer it; otherwise the bot says it is listening."""

    def name(self) -> str:
        return "action_filler"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        if in_form(tracker):
            return []
        if tracker.get_slot("pending_offer"):
            dispatcher.utter_message(response="utter_offer_unclear")
        else:
            dispatcher.utter_message(response="utter_listening")
        return []
