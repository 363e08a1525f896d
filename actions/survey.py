"""The post-call satisfaction survey (issue 10 §2): at the dialogue's goodbye, a sampled call is asked for a rating
by key (1 满意, 2 一般, 3 不满意) before the bot hangs up. docs/DIALOGUE.md, "Satisfaction survey".

survey_form asks (action_ask_survey_score), validate_survey_form reads the answer and action_end_call says
goodbye and hangs up. Whether a call is asked is settings' (SURVEY_ENABLED, SURVEY_SAMPLE_RATE), decided from the
call's id alone, so every turn of a call (a retried one too) gets the same decision. Elderly callers (光银岁月) hear
the question slower and get one retry after silence or an answer that is not a rating; others are thanked and let
go, since the survey is optional. 「人工」 at the question is honoured (the rules hand over), and 「再见」 or 「不用了」
ends the survey without a rating. A call hears the question once: a later goodbye (after 「人工」 and a failed
transfer) ends the call at once.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions.common import call_id, keyed_digits, latest_intent
from actions.contract import slower_rate
from actions.utterances import explicit_answer, human_request
from actions.verification import requested_slot
from call_contract import (
    ELDERLY_SPEECH_RATE, EVENT_SURVEY_OFFERED, SURVEY_SCORES, event_kind, speech_rate, survey_answer, survey_offered,
)
from settings import get_settings

SCORE_SLOT = "survey_score"
ATTEMPTS_SLOT = "survey_attempts"
NO_SCORE = "none"  # the survey is over without a rating
RETRY = "retry"  # extraction's word for "ask once more"; validation empties the slot and counts the attempt
# The caller is done with the call: no rating, no retry.
DECLINE_INTENTS = ("goodbye", "deny", "cancel")
# The caller asked to hear it again: a retry even for a caller who would get none after silence.
AGAIN_INTENTS = ("repeat", "speak_slower")
PERSON_INTENTS = ("human_agent", "green_channel")
# A rating said instead of keyed. A negator before 满意 / 好, with only degree words between (「不是太满意」
# 「没那么满意」「谈不上满意」「不很好」), is 不满意: looked for first, since every one of them contains 满意 or 很好.
# Not a negation: 不 after 满 / 好 (「满不满意」, a question), and 好 of 「不好意思」「不好说」.
_NEGATOR = r"(?<![满好])(?:不|没)"
_DEGREE = r"(?:是|有|算|上|太|很|怎么|那么|特别|非常|十分|大|够|咋)*"
_GOOD = r"(?:满意|好(?!意思|说))"
NEGATED_RATING = re.compile(_NEGATOR + _DEGREE + _GOOD)
# 「没有不满意」「不是不满意」: not dissatisfied, not clearly satisfied either — no rating, so never 不满意.
DOUBLE_NEGATION = re.compile(_NEGATOR + _DEGREE + r"不" + _DEGREE + _GOOD)
A_NOT_A = re.compile(r"满不满意|好不好")
SPOKEN_SCORES = (
    (re.compile(r"很差|太差"), 3),
    (re.compile(r"满意|很好|非常好"), 1),
    (re.compile(r"一般|还行|还可以|凑合"), 2),
)
SPOKEN_DIGITS = {"1": 1, "一": 1, "幺": 1, "2": 2, "二": 2, "两": 2, "3": 3, "三": 3}


def sampled(conversation_id: str, rate: float) -> bool:
    """Whether the call with this id falls in the surveyed share `rate` (0..1): the same answer for the same id in
    every process, so a retried turn or another Rasa server of a cluster decides as the first did."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    digest = hashlib.sha256(conversation_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def survey_wanted(tracker: Tracker) -> bool:
    settings = get_settings().actions
    return settings.survey_enabled and sampled(call_id(tracker), settings.survey_sample_rate)


def asked_before(tracker: Tracker) -> bool:
    """Whether this call has heard the question already: once is enough, even when a survey given up for a person
    (「人工」, then a failed transfer) is followed by another goodbye. Told by the question's `survey_offered` in the
    bot's past turns: the form runs its ask action inside its own, so no event names that action."""
    return any(event.get("event") == "bot"
               and event_kind((event.get("data") or {}).get("custom")) == EVENT_SURVEY_OFFERED
               for event in tracker.events)


def said_score(text: str) -> int | None:
    """A rating in the caller's words: 「满意」「不太满意」「一般」, or the key's digit said alone (「一」「3」).
    Clause by clause, the first that rates: a negator never reaches across a comma (「没有，满意」 is 满意)."""
    words = re.sub(r"\s+", "", text)  # the recogniser spaces its words: 「不 满意」
    clauses = (clause for clause in re.split(r"[,.;:!?，。；：！？、]+", words) if clause)
    return next((score for score in map(_clause_score, clauses) if score is not None), None)


def _clause_score(words: str) -> int | None:
    if words in SPOKEN_DIGITS:
        return SPOKEN_DIGITS[words]
    if DOUBLE_NEGATION.search(words) or A_NOT_A.search(words):
        return None
    if NEGATED_RATING.search(words):
        return 3
    return next((score for pattern, score in SPOKEN_SCORES if pattern.search(words)), None)


def answered_score(tracker: Tracker) -> int | None:
    """The rating of the latest message: a single key 1-3, or one said; None for anything else (other keys too)."""
    keyed = keyed_digits(tracker)
    if keyed is not None:
        return int(keyed) if len(keyed) == 1 and keyed.isdigit() and int(keyed) in SURVEY_SCORES else None
    text = tracker.latest_message.get("text") or ""
    return None if text.startswith("/") else said_score(text)


class ValidateSurveyForm(FormValidationAction):
    """Asks nothing when the call is not surveyed (the form ends at once and the call with it)."""

    def name(self) -> str:
        return "validate_survey_form"

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        if requested_slot(tracker) == SCORE_SLOT:
            return domain_slots  # the question is out: this survey goes on
        return domain_slots if survey_wanted(tracker) and not asked_before(tracker) else []

    async def extract_survey_score(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                                   domain: DomainDict) -> dict:
        if requested_slot(tracker) != SCORE_SLOT:
            return {}  # the goodbye that opened the form is not an answer
        text, intent = tracker.latest_message.get("text") or "", latest_intent(tracker)
        if intent in PERSON_INTENTS or human_request(text):
            return {}  # the rules hand the call over: the survey is optional, a person is not
        score = answered_score(tracker)
        if score is not None:
            return {SCORE_SLOT: str(score)}
        if intent in DECLINE_INTENTS or explicit_answer(text) is False:
            return {SCORE_SLOT: NO_SCORE}
        attempts = int(tracker.get_slot(ATTEMPTS_SLOT) or 0)
        if attempts == 0 and (tracker.get_slot("elderly") or intent in AGAIN_INTENTS):
            return {SCORE_SLOT: RETRY}
        return {SCORE_SLOT: NO_SCORE}

    def validate_survey_score(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                              domain: DomainDict) -> dict:
        if value == RETRY:  # the form asks once more (survey_attempts: rasa_sdk keeps only validated extra slots)
            return {SCORE_SLOT: None, ATTEMPTS_SLOT: float(int(tracker.get_slot(ATTEMPTS_SLOT) or 0) + 1)}
        known = value == NO_SCORE or (isinstance(value, str) and value.isdigit() and int(value) in SURVEY_SCORES)
        return {SCORE_SLOT: value if known else None}


class ActionAskSurveyScore(Action):
    """The survey question (or its retry), announced to the gateway so its silence ladder stands aside."""

    def name(self) -> str:
        return "action_ask_survey_score"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        dispatcher.utter_message(json_message=survey_offered())
        intent = latest_intent(tracker)
        rate = float(tracker.get_slot("speech_rate") or 1.0)
        if intent == "speak_slower":  # 「说慢一点」 at the question: slower for the rest of the call, as anywhere
            rate = slower_rate(rate)
        if tracker.get_slot("elderly"):
            # never faster than the elderly rate, even if the caller's rate was changed during the call
            rate = min(rate, ELDERLY_SPEECH_RATE)
        if intent == "speak_slower" or tracker.get_slot("elderly"):
            dispatcher.utter_message(json_message=speech_rate(rate))
            events.append(SlotSet("speech_rate", rate))
        # The apology for no answer only after silence or an answer that is no rating; asked to hear it again
        # (「再说一遍」「说慢一点」), the caller gets the question itself.
        retry = int(tracker.get_slot(ATTEMPTS_SLOT) or 0) > 0 and intent not in AGAIN_INTENTS
        dispatcher.utter_message(response="utter_ask_survey_score_again" if retry else "utter_ask_survey_score")
        return events


class ActionEndCall(Action):
    """The farewell and hang-up: the survey's answer first when it was asked, then thanks for it or a goodbye."""

    def name(self) -> str:
        return "action_end_call"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list[dict[str, Any]]:
        answer = tracker.get_slot(SCORE_SLOT)
        if answer is None:  # not surveyed
            dispatcher.utter_message(response="utter_goodbye")
            return []
        score = int(answer) if answer.isdigit() and int(answer) in SURVEY_SCORES else None
        dispatcher.utter_message(json_message=survey_answer(score))
        dispatcher.utter_message(response="utter_survey_thanks" if score else "utter_goodbye")
        return []
