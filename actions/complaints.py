"""Complaints: collect what happened, where and when (free text), file one work order, read back a summary and the
ticket number, then ask 「还有要补充的吗」: what the caller adds right after goes to the same ticket.

Everything said inside the complaint form is complaint text, never a command for another task: 「上周五在海淀支行…」
names a branch, and it must not start a branch search.
"""

from __future__ import annotations

import re
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions import contract
from actions.cn_numbers import speak_digits
from actions.common import bank_service, call_id, latest_intent, request_id, task_done
from actions.handoff import HANDOFF_UNAVAILABLE_RESPONSE, hand_off
from actions.utterances import explicit_answer, human_request, is_filler
from actions.verification import requested_slot

MAX_COMPLAINT_CHARS = 500
MAX_PART_CHARS = 40
MIN_COMPLAINT_CHARS = 2
OPENING_WITH_DESCRIPTION_CHARS = 12
DETAIL_SLOTS = ("complaint_text", "complaint_where", "complaint_when")
# While the caller describes, these still act as commands instead of being written into the complaint.
COMMAND_INTENTS = ("cancel", "human_agent", "green_channel", "repeat", "speak_slower", "goodbye", "dtmf", "filler")
# 「没有了」「不用了」「谢谢」 at 「还有要补充的吗」: the complaint is complete. Not 「再见」: that ends the call.
DONE_INTENTS = ("deny", "thank", "cancel")
NO_MORE = "no"
# Where: a named branch (「海淀支行」) or a channel. 「你们网点」 names no place, so it is asked for.
BRANCH_SUFFIX = re.compile(r"支行|分行|营业厅|营业部|网点")
CHANNEL = re.compile(r"手机银行|网上银行|网银|[Aa][Pp][Pp]|ATM|取款机|存款机|电话银行|客服电话|热线|微信银行")
BRANCH_NAME_CHARS = 4
# the branch's name is what follows the last of these: 「上周五在海淀」→「海淀」, 「我要投诉你们」→ nothing
NAME_BREAKS = re.compile(r".*[在去到们个是了的，,。\s]")
# When: a run of day, date and time-of-day words (「上周五」「昨天下午」「3月5号上午」).
_DAY = "[一二三四五六日天]"
TIME = re.compile(
    rf"(?:今天|昨天|前天|刚才|刚刚|上午|下午|中午|晚上|早上|傍晚|上周{_DAY}?|上星期{_DAY}?|这周|本周|上个月|这个月|前几天|"
    rf"上次|去年|(?:周|星期|礼拜){_DAY}|[0-9一二三四五六七八九十]+(?:号|日|月|点半?|年))+"
)


def named_place(text: str) -> str | None:
    for match in BRANCH_SUFFIX.finditer(text):
        before = text[max(0, match.start() - BRANCH_NAME_CHARS):match.start()].rstrip("的")
        name = NAME_BREAKS.sub("", before)
        if len(name) >= 2:
            return name + match.group()
    channel = CHANNEL.search(text)
    return channel.group() if channel else None


def named_time(text: str) -> str | None:
    match = TIME.search(text)
    return match.group() if match else None


def details_from(text: str, slots: dict[str, Any]) -> dict[str, str]:
    """What a sentence tells about the complaint's missing parts: 「上周五在海淀支行…」 gives where and when at once."""
    found: dict[str, str] = {}
    if not slots.get("complaint_where") and named_place(text):
        found["complaint_where"] = named_place(text)
    if not slots.get("complaint_when") and named_time(text):
        found["complaint_when"] = named_time(text)
    return found


def complaint_summary(slots: dict[str, Any]) -> str:
    """The work order's description: a record for the agents, not words the caller hears (utter_complaint_filed)."""
    return f"时间：{slots.get('complaint_when')}；地点：{slots.get('complaint_where')}；经过：{slots.get('complaint_text')}"


class ValidateComplaintForm(FormValidationAction):
    def name(self) -> str:
        return "validate_complaint_form"

    @staticmethod
    def _said(tracker: Tracker) -> str | None:
        """The caller's free text of this turn, or None when the turn is a command (cancel, human, repeat, keypad)."""
        text = (tracker.latest_message.get("text") or "").strip()
        if latest_intent(tracker) in COMMAND_INTENTS or text.startswith("/") or human_request(text) or is_filler(text):
            return None
        return text[:MAX_COMPLAINT_CHARS]

    async def extract_complaint_text(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        asked, text = requested_slot(tracker), self._said(tracker)
        if asked is None and latest_intent(tracker) == "complaint" and text:
            # 「我要投诉你们网点的柜员态度太差了」: the request already says what happened
            opening = {"complaint_text": text} if len(text) >= OPENING_WITH_DESCRIPTION_CHARS else {}
            return {**opening, **details_from(text, tracker.slots)} if opening else {}
        if asked not in DETAIL_SLOTS or text is None:
            return {}
        # every detail answer adds to the description, and may also say where and when
        known = tracker.get_slot("complaint_text")
        description = f"{known}；{text}" if known and asked != "complaint_text" else text
        found = {**details_from(text, tracker.slots), "complaint_text": description[:MAX_COMPLAINT_CHARS]}
        if asked in ("complaint_where", "complaint_when") and asked not in found:
            found[asked] = text[:MAX_PART_CHARS]  # free text: 「记不清了」 is an answer too
        return found

    def validate_complaint_text(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        if isinstance(value, str) and len(value) >= MIN_COMPLAINT_CHARS:
            return {"complaint_text": value}
        dispatcher.utter_message(response="utter_complaint_unclear")
        return {"complaint_text": None}

    async def extract_complaint_more(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> dict:
        """At 「还有要补充的吗」: done on no/thanks, otherwise the words go to the same ticket and the question repeats."""
        if requested_slot(tracker) != "complaint_more":
            return {}
        text = (tracker.latest_message.get("text") or "").strip()
        if latest_intent(tracker) == "goodbye":
            # The ticket is filed: the form rejects the turn and the goodbye rules end the call as anywhere (the
            # survey, then the hang-up), never 「请问还有什么可以帮您？」.
            return {}
        if latest_intent(tracker) in DONE_INTENTS or explicit_answer(text) is False:
            return {"complaint_more": NO_MORE}
        said = self._said(tracker)
        if said is None:
            return {}
        if explicit_answer(said) is True and len(said) <= 3:
            dispatcher.utter_message(response="utter_complaint_go_on")  # 「有」「是的」: go on, please
            return {"complaint_more": None}
        ticket = tracker.get_slot("complaint_ticket")
        add_to_ticket(tracker, ticket, said)
        dispatcher.utter_message(response="utter_complaint_added", ticket=speak_digits(ticket))
        return {"complaint_more": None}

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        events = await super().run(dispatcher, tracker, domain)
        slots = {**tracker.slots, **{e["name"]: e["value"] for e in events if e.get("event") == "slot"}}
        if all(slots.get(slot) for slot in DETAIL_SLOTS) and not slots.get("complaint_ticket"):
            events += file_complaint(dispatcher, tracker, slots)
        return events


def file_complaint(dispatcher: CollectingDispatcher, tracker: Tracker, slots: dict[str, Any]) -> list[dict[str, Any]]:
    """Open the work order once the details are in, and read back the summary and the ticket number."""
    try:
        ticket = bank_service().create_work_order(
            kind="complaint", description=complaint_summary(slots), call_id=call_id(tracker),
            customer_ref=tracker.get_slot("customer_ref") or tracker.get_slot("caller_ref"),
            request_id=request_id(tracker, "complaint"),
        )
    except Exception:  # noqa: BLE001 - apology and handoff instead of silence
        return hand_off(dispatcher, tracker, reason="action_unavailable", response=HANDOFF_UNAVAILABLE_RESPONSE)
    dispatcher.utter_message(json_message=contract.interruptible(False))  # the ticket number must be heard
    dispatcher.utter_message(response="utter_complaint_filed", when=slots["complaint_when"],
                             where=slots["complaint_where"], what=slots["complaint_text"], ticket=speak_digits(ticket))
    dispatcher.utter_message(json_message=contract.interruptible(True))
    task_done(dispatcher, "complaint")
    return [SlotSet("complaint_ticket", ticket)]


def add_to_ticket(tracker: Tracker, ticket: str, text: str) -> None:
    """Details given after the ticket was read out, recorded against that ticket number.

    The bank service has no "amend a work order" call yet, so the addition is a work order of its own whose
    description starts with the ticket it completes (additions are found by that number).
    """
    bank_service().create_work_order(
        kind="complaint", description=f"补充工单{ticket}：{text}"[:MAX_COMPLAINT_CHARS], call_id=call_id(tracker),
        customer_ref=tracker.get_slot("customer_ref") or tracker.get_slot("caller_ref"),
        request_id=request_id(tracker, "complaint_addition", ticket, text),
    )


class ActionCloseComplaint(Action):
    """The complaint form is complete (the caller has nothing to add): thank them and clear the complaint."""

    def name(self) -> str:
        return "action_close_complaint"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        if tracker.get_slot("complaint_ticket"):
            dispatcher.utter_message(response="utter_complaint_closed")
        dispatcher.utter_message(response="utter_anything_else")
        return [SlotSet(slot, None) for slot in (*DETAIL_SLOTS, "complaint_ticket", "complaint_more")]
