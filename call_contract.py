"""The call contract between the voice loop (bot/, telephony/) and the dialogue (Rasa, dialogue/, actions/).

Every fact both sides must agree on lives here once: the messages the gateway sends, the custom events the dialogue
replies with (builders for the sender, parsers for the receiver), the handoff queues and priorities, the keypad's
keys, and the secure-input mask. docs/ARCHITECTURE.md describes the contract in prose; this module is what runs.

Standard library only (plus settings.py), so it loads in both venvs: .venv-rasa (Python 3.10: Rasa, actions) and
.venv (Python 3.11: gateway, pipecat). It knows no HTTP, no frames and no SIP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from settings import Settings, get_settings

# -- messages the gateway sends (besides the caller's own words) -----------------------------------------------

CALL_START = "/call_start"
HUMAN_AGENT_INTENT = "human_agent"
HUMAN_AGENT = f"/{HUMAN_AGENT_INTENT}"
TRANSFER_FAILED = "/transfer_failed"
# The caller keyed and said nothing while the satisfaction survey was open: the dialogue retries or ends the call.
SURVEY_NO_ANSWER_INTENT = "survey_no_answer"
SURVEY_NO_ANSWER = f"/{SURVEY_NO_ANSWER_INTENT}"
DTMF_INTENT = "dtmf"
# What Rasa's NLU names a message it is unsure of (FallbackClassifier): the dialogue asks again, 3 in a row hand
# the call over with this as the handoff's reason (actions/service.py), and the trainers' review lists it.
NLU_FALLBACK_INTENT = "nlu_fallback"
REASON_NLU_FALLBACK = NLU_FALLBACK_INTENT
# What a caller says that is no banking request at all (a spoken intent, trained like any other).
OUT_OF_SCOPE_INTENT = "out_of_scope"
# Turns the dialogue did not understand: three in a row hand the call over (actions/service.py), and the trainers'
# review marks exactly those turns as the 3 strikes (bot/nlu_review.py), so both count the same set.
NOT_UNDERSTOOD_INTENTS = frozenset({NLU_FALLBACK_INTENT, OUT_OF_SCOPE_INTENT})
# Intents only the gateway sends (as /intent{...}), never spoken: no training examples, never a trainer's label.
GATEWAY_ONLY_INTENTS = frozenset({CALL_START.lstrip("/"), DTMF_INTENT, TRANSFER_FAILED.lstrip("/"),
                                  SURVEY_NO_ANSWER_INTENT})

# -- the keypad ---------------------------------------------------------------------------------------------------

# The twelve keys of a phone keypad: all the dialogue is ever sent.
KEYPAD_KEYS = frozenset("0123456789*#")
# RFC 4733's sixteen keys: what a door may hand the voice loop (A-D exist on some desk sets; the dialogue ignores them).
DTMF_KEYS = KEYPAD_KEYS | frozenset("ABCD")
MENU_KEY = "*"  # alone, when no digits are expected: the keypad menu
END_KEY = "#"  # ends a digits entry
MAX_KEYED_DIGITS = 32  # longest keypad message: a card number and a PIN fit, a stuck key does not grow it


def human_key(settings: Settings | None = None) -> str:
    """The key that asks for an agent when no digits are expected (HUMAN_KEY): one digit, never the menu key."""
    key = (settings or get_settings()).voice.human_key
    if len(key) != 1 or not key.isascii() or not key.isdigit():
        raise ValueError(f"HUMAN_KEY={key!r}: the human key must be one digit 0-9")
    return key


def dtmf_message(digits: str) -> str:
    """The keypad message: /dtmf{"digits":"135790"}."""
    return f"/{DTMF_INTENT}" + json.dumps({"digits": digits}, separators=(",", ":"))


def valid_keyed_digits(digits: Any) -> bool:
    """Whether `digits` can be the payload of a keypad message: 1 to MAX_KEYED_DIGITS keypad keys."""
    return isinstance(digits, str) and 0 < len(digits) <= MAX_KEYED_DIGITS and set(digits) <= KEYPAD_KEYS


# -- handoff: queues, priorities, reasons -------------------------------------------------------------------------

QUEUE_GENERAL = "general"
QUEUE_ELDERLY = "elderly_priority"
QUEUE_COMPLAINT = "complaint"
QUEUE_CARD_SERVICES = "card_services"
QUEUES = (QUEUE_GENERAL, QUEUE_ELDERLY, QUEUE_COMPLAINT, QUEUE_CARD_SERVICES)

PRIORITY_ELDERLY = 9  # higher is sooner
PRIORITY_NORMAL = 1

REASON_HUMAN_AGENT = HUMAN_AGENT_INTENT  # the caller asked (or keyed the human key)
REASON_GREEN_CHANNEL = "green_channel"
REASON_ACTION_UNAVAILABLE = "action_unavailable"  # the dialogue ran but its actions failed or were too slow
REASON_DIALOGUE_UNAVAILABLE = "dialogue_unavailable"  # the gateway could not reach Rasa at all

# What the dialogue says when it hands over because it could not do the caller's business itself.
UNAVAILABLE_APOLOGY = "非常抱歉，系统暂时无法办理您的业务，正在为您转接人工客服，请稍候。"


def priority_for(queue: str) -> int:
    return PRIORITY_ELDERLY if queue == QUEUE_ELDERLY else PRIORITY_NORMAL


def handoff_context(call_id: str, *, intent: str | None = None, verified: bool = False,
                    customer_ref: str | None = None, green_channel: bool = False) -> dict[str, Any]:
    """What the agent's desk learns with the call; customer_ref is opaque, never a phone or card number."""
    return {"intent": intent, "verified": verified, "customer_ref": customer_ref, "green_channel": green_channel,
            "call_id": call_id}


def handoff(queue: str, reason: str, context: dict[str, Any]) -> dict[str, Any]:
    """The `handoff` event: after the texts of its reply, transfer the call to `queue`."""
    return {"event": "handoff", "queue": queue, "priority": priority_for(queue), "reason": reason, "context": context}


def fallback_handoff(call_id: str) -> dict[str, Any]:
    """The handoff the gateway makes on its own when Rasa cannot be reached: a general agent, knowing nothing."""
    return handoff(QUEUE_GENERAL, REASON_DIALOGUE_UNAVAILABLE, handoff_context(call_id))


# -- the other custom events: builders -----------------------------------------------------------------------------

NORMAL_SPEECH_RATE = 1.0
ELDERLY_SPEECH_RATE = 0.8
# A speech_rate outside these bounds is a mistake, not a wish: the receiver keeps the normal rate.
SPEECH_RATE_BOUNDS = (0.3, 3.0)


def hangup() -> dict[str, Any]:
    return {"event": "hangup"}


def speech_rate(rate: float) -> dict[str, Any]:
    return {"event": "speech_rate", "rate": round(rate, 2)}


def expect_digits(max_length: int, secure: bool) -> dict[str, Any]:
    return {"event": "expect", "input": "digits", "max_length": max_length, "secure": secure}


def interruptible(value: bool) -> dict[str, Any]:
    return {"event": "interruptible", "value": value}


# -- dialogue facts for the call record and the KPIs ---------------------------------------------------------------

# The business tasks a dialogue can complete (named as the intents that ask for them): `task_completed` names one
# when the caller's business is really done (money moved, card stopped, figures read out), never on a refusal,
# a cancellation, a failure or a handoff. The KPI dashboard counts a call as resolved by these.
TASKS = (
    "check_balance", "query_transactions", "credit_card_bill", "credit_card_repayment", "report_card_loss",
    "activate_card", "transfer_money", "branch_locator", "interest_rate", "exchange_rate", "complaint",
    "reset_password",
)
# The satisfaction survey's answers, by key: 1 满意, 2 一般, 3 不满意 (the KPIs' satisfaction is the share of 满意).
SURVEY_SATISFIED = 1
SURVEY_SCORES = {SURVEY_SATISFIED: "满意", 2: "一般", 3: "不满意"}
# The facts' event names: the gateway's Rasa bridge and the web console file them into the call record alike
# (bot/call_records.py CallRecord.note_dialogue_fact).
EVENT_TASK_COMPLETED = "task_completed"
EVENT_ELDERLY = "elderly"
EVENT_SURVEY_OFFERED = "survey_offered"
EVENT_SURVEY_ANSWER = "survey_answer"
DIALOGUE_FACT_EVENTS = frozenset({EVENT_TASK_COMPLETED, EVENT_ELDERLY, EVENT_SURVEY_OFFERED, EVENT_SURVEY_ANSWER})


def task_completed(task: str) -> dict[str, Any]:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: add it to call_contract.TASKS")
    return {"event": EVENT_TASK_COMPLETED, "task": task}


def elderly_caller() -> dict[str, Any]:
    """The caller is one of the bank's elderly customers (光银岁月): the dialogue knows it from the bank's data."""
    return {"event": EVENT_ELDERLY, "value": True}


def survey_offered() -> dict[str, Any]:
    """The satisfaction question is being asked: until `survey_answer`, silence is no answer, not a cue for the
    menu or an agent (the gateway sends SURVEY_NO_ANSWER instead of walking its no-input ladder)."""
    return {"event": EVENT_SURVEY_OFFERED}


def survey_answer(score: int | None) -> dict[str, Any]:
    """The survey is over: `score` 1-3 (SURVEY_SCORES), or None when the caller gave no usable answer."""
    if score is not None and score not in SURVEY_SCORES:
        raise ValueError(f"survey score {score!r} is not one of {sorted(SURVEY_SCORES)}")
    return {"event": EVENT_SURVEY_ANSWER, "score": score}


# -- custom events: parsers (what arrives may be anything) --------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """A parsed `expect` event: the next input is `input` ("digits"), at most max_length keys (0: not said)."""

    input: str
    max_length: int
    secure: bool


def event_kind(custom: Any) -> str | None:
    """The `event` of a custom payload, or None when it is not one."""
    return custom.get("event") if isinstance(custom, dict) and isinstance(custom.get("event"), str) else None


def is_secure_expect(custom: Any) -> bool:
    """Whether a custom payload announces secure input (the PIN): the answer to it is never logged or stored."""
    return event_kind(custom) == "expect" and custom.get("secure") is True


def parse_expect(event: dict[str, Any]) -> Expect:
    return Expect(input=str(event.get("input") or "digits"), max_length=_whole_number(event.get("max_length")),
                  secure=bool(event.get("secure", False)))


def parse_speech_rate(event: dict[str, Any]) -> float:
    try:
        rate = float(event.get("rate"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return NORMAL_SPEECH_RATE
    low, high = SPEECH_RATE_BOUNDS
    return rate if low <= rate <= high else NORMAL_SPEECH_RATE  # NaN fails both comparisons


def parse_interruptible(event: dict[str, Any]) -> bool:
    return bool(event.get("value", True))


def parse_task_completed(event: dict[str, Any]) -> str | None:
    """The task named, or None when it is not one of TASKS (a record never holds a name the KPIs do not know)."""
    task = event.get("task")
    return task if isinstance(task, str) and task in TASKS else None


def parse_elderly(event: dict[str, Any]) -> bool:
    return event.get("value") is True


def parse_survey_score(event: dict[str, Any]) -> int | None:
    """The score 1-3, or None for no answer and for anything else (a bool, "1", 1.5, 7)."""
    score = event.get("score")
    return score if type(score) is int and score in SURVEY_SCORES else None


def _whole_number(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError, OverflowError):
        return 0


# -- secure input --------------------------------------------------------------------------------------------------

# What logs, transcripts, records and consoles show in place of secure input (a PIN).
SECURE_MASK = "****"


def mask_secure(text: str, secure: bool) -> str:
    return SECURE_MASK if secure else text
