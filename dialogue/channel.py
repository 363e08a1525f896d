"""CallChannel: the REST channel of the call contract (docs/ARCHITECTURE.md), hardened for callers.

It is Rasa's REST channel (name "rest", so the URL stays /webhooks/rest/webhook) with four additions:
- `/call_start` always starts a fresh conversation, even for a sender id seen before: the stored tracker is
  restarted first, so no slot, form, verification state or failure counter of an earlier call carries over
  (defence in depth behind the gateway's unique call ids);
- the request's `metadata` (caller_number, channel, asr_available) reaches the tracker, checked and trimmed;
- bad input never reaches the dialogue as is: empty or huge text, control characters, malformed
  `/dtmf{...}` payloads and unknown `/intent` strings are normalised (unknown → out_of_scope);
- the caller is never left in silence: if the action server is down or slower than
  `settings.actions.timeout_s`, or a turn produced no reply at all, the reply is an apology and a handoff;
- a turn is run at most once: the request's `message_id` (the gateway's id for the turn, kept on the UserUttered
  event) is looked up in the stored conversation under its lock first, and a turn already stored is answered with
  its stored reply instead of being run again. The gateway sends a turn again when the Rasa server that had it died
  (bot/rasa_client.py); if that server had saved the turn, the caller hears its reply, and money moves once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import unicodedata
from typing import Any, Awaitable, Callable

import rasa.core.actions.action as rasa_action
from rasa.core.channels.channel import CollectingOutputChannel, UserMessage
from rasa.core.channels.rest import RestInput
from rasa.shared.core.events import BotUttered, Restarted, UserUttered
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

import settings as app_settings
from dialogue.tracker_store import TURN_STORE_FAILURES
from call_contract import (
    CALL_START,
    DTMF_INTENT,
    QUEUE_ELDERLY,
    QUEUE_GENERAL,
    REASON_ACTION_UNAVAILABLE,
    UNAVAILABLE_APOLOGY,
    handoff,
    handoff_context,
    valid_keyed_digits,
)

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 500
MAX_SENDER_CHARS = 128
FALLBACK_INTENT = "out_of_scope"
INTENT_MESSAGE = re.compile(r"^/(?P<intent>[A-Za-z_][A-Za-z0-9_]{0,63})(?P<entities>\{.*\})?$", re.DOTALL)
METADATA_LIMITS = {"caller_number": 32, "channel": 16}
# The gateway's turn id: token characters only, short (it is logged and stored on the event).
MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# Rasa's own intents that rewind or restart the tracker: not something a caller may send.
TRACKER_CONTROL_INTENTS = {"restart", "back", "session_start"}


def clean_text(text: Any) -> str:
    """The message as text: control characters dropped, trimmed, at most MAX_TEXT_CHARS characters."""
    if not isinstance(text, str):
        return ""
    visible = "".join(char for char in text if unicodedata.category(char)[0] != "C" or char == " ")
    return visible.strip()[:MAX_TEXT_CHARS]


def normalise_message(text: Any, known_intents: set[str] | None) -> str:
    """Text Rasa can always handle: empty becomes out_of_scope, `/intent{json}` is checked strictly."""
    cleaned = clean_text(text)
    if not cleaned:
        return f"/{FALLBACK_INTENT}"
    if not cleaned.startswith("/"):
        return cleaned
    match = INTENT_MESSAGE.match(cleaned)
    allowed = known_intents - TRACKER_CONTROL_INTENTS if known_intents is not None else None
    if not match or match.group("intent") in TRACKER_CONTROL_INTENTS or (allowed is not None and match.group("intent") not in allowed):
        return f"/{FALLBACK_INTENT}"
    intent, raw_entities = match.group("intent"), match.group("entities")
    entities = parse_entities(raw_entities) if raw_entities else {}
    if entities is None or (intent == DTMF_INTENT and not valid_dtmf(entities)):
        return f"/{FALLBACK_INTENT}"
    return f"/{intent}{json.dumps(entities, ensure_ascii=False)}" if entities else f"/{intent}"


def parse_entities(raw: str) -> dict[str, str] | None:
    """`{"name": "value"}` with short string values only; None for anything else."""
    try:
        entities = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(entities, dict) or len(entities) > 8:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) and len(v) <= MAX_TEXT_CHARS for k, v in entities.items()):
        return None
    return entities


def clean_message_id(message_id: Any) -> str | None:
    """The request's message_id if it is a short token; None (Rasa makes its own) for anything else."""
    if isinstance(message_id, str) and MESSAGE_ID.match(message_id):
        return message_id
    return None


def valid_dtmf(entities: dict[str, str]) -> bool:
    return set(entities) == {"digits"} and valid_keyed_digits(entities["digits"])


def clean_metadata(metadata: Any) -> dict[str, Any]:
    """Only the contract's metadata keys, as short strings / a bool."""
    if not isinstance(metadata, dict):
        return {}
    cleaned: dict[str, Any] = {}
    for key, limit in METADATA_LIMITS.items():
        value = metadata.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            cleaned[key] = clean_text(str(value))[:limit]
    if isinstance(metadata.get("asr_available"), bool):
        cleaned["asr_available"] = metadata["asr_available"]
    return cleaned


def apology_reply(sender_id: str, slots: dict[str, Any], text: str = UNAVAILABLE_APOLOGY) -> list[dict[str, Any]]:
    """The reply when the dialogue could not answer: say sorry (`text`: the domain's wording, read by
    `_apology_text`) and hand the call to a person."""
    queue = QUEUE_ELDERLY if slots.get("elderly") else QUEUE_GENERAL
    context = handoff_context(sender_id, verified=bool(slots.get("verified")),
                              customer_ref=slots.get("customer_ref") or slots.get("caller_ref"))
    event = handoff(queue, REASON_ACTION_UNAVAILABLE, context)
    return [{"recipient_id": sender_id, "text": text}, {"recipient_id": sender_id, "custom": event}]


APOLOGY_RESPONSE = "utter_handoff_unavailable"  # domain/service.yml


class CallChannel(RestInput):
    """Rasa's REST channel plus metadata, input hardening and the never-silent guarantee."""

    @classmethod
    def name(cls) -> str:
        return "rest"

    def __init__(self, timeout_s: float | None = None) -> None:
        actions = app_settings.get_settings().actions
        if timeout_s:
            actions = dataclasses.replace(actions, timeout_s=float(timeout_s))
        self.timeout_s = actions.timeout_s
        self.turn_budget_s = actions.turn_budget_s  # the gateway waits longer than this (Settings.rasa_reply_timeout_s)
        # Rasa 3.6 has no setting for the action-server request timeout (it waits 5 minutes); a caller cannot.
        rasa_action.DEFAULT_REQUEST_TIMEOUT = self.timeout_s

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> "CallChannel":
        return cls(timeout_s=(credentials or {}).get("timeout_s"))

    def get_metadata(self, request: Request) -> dict[str, Any]:
        body = request.json if isinstance(request.json, dict) else {}
        return clean_metadata(body.get("metadata"))

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = Blueprint(f"custom_webhook_{type(self).__name__}", __name__)

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            body = _json_body(request)
            sender = body.get("sender") if body else None
            if not isinstance(sender, (str, int)) or isinstance(sender, bool) or not str(sender).strip():
                return response.json({"error": "a JSON body with a non-empty 'sender' is required"}, status=400)
            sender_id = clean_text(str(sender))[:MAX_SENDER_CHARS]
            text = normalise_message(body.get("message"), _known_intents(request))
            message_id = clean_message_id(body.get("message_id"))
            if body.get("message_id") is not None and message_id is None:
                logger.warning("turn of %s: message_id ignored (not a short token)", sender_id)
            messages = await self._handle(on_new_message, request, sender_id, text, self.get_metadata(request),
                                          message_id=message_id)
            return response.json(messages)

        return webhook

    async def _handle(
        self,
        on_new_message: Callable[[UserMessage], Awaitable[Any]],
        request: Request,
        sender_id: str,
        text: str,
        metadata: dict[str, Any],
        message_id: str | None = None,
    ) -> list[dict[str, Any]]:
        message_id = clean_message_id(message_id)
        collector = CollectingOutputChannel()
        message = UserMessage(text, collector, sender_id, input_channel=self.name(), metadata=metadata,
                              message_id=message_id)
        store_failures: list[str] = []
        TURN_STORE_FAILURES.set(store_failures)  # this request's own task: the next request sets its own list
        try:
            # the budget covers the whole turn, the look for a repeat included (it may wait out a dead server's lock
            # lease); each action call also times out after timeout_s (set above)
            replayed = await asyncio.wait_for(
                self._run_once(on_new_message, request, message, sender_id, text, message_id),
                timeout=self.turn_budget_s)
        except asyncio.TimeoutError:
            logger.warning("turn of %s exceeded %.1f s; apologising and handing off", sender_id, self.turn_budget_s)
            return apology_reply(sender_id, await _slots(request, sender_id), _apology_text(request))
        except Exception:  # noqa: BLE001 - any failure becomes an apology, never a 500
            logger.exception("turn of %s failed; apologising and handing off", sender_id)
            return apology_reply(sender_id, await _slots(request, sender_id), _apology_text(request))
        if store_failures:
            # Fail closed: the turn ran on a conversation that could not be read (Rasa made a fresh, unverified one)
            # or its outcome could not be stored; the caller hears the apology, the stored conversation is intact.
            logger.warning("turn of %s hit the tracker store (%s); apologising and handing off", sender_id,
                           ", ".join(store_failures))
            return apology_reply(sender_id, {}, _apology_text(request))
        if replayed is not None:
            if replayed:
                return replayed
            logger.warning("turn of %s: repeat of %s, which stored no reply; apologising and handing off",
                           sender_id, message_id)
            return apology_reply(sender_id, await _slots(request, sender_id), _apology_text(request))
        if not collector.messages:
            # every dialogue turn says something; silence means an action failed (e.g. the action server is down)
            logger.warning("turn of %s produced no reply; apologising and handing off", sender_id)
            return apology_reply(sender_id, await _slots(request, sender_id), _apology_text(request))
        return collector.messages

    async def _run_once(
        self,
        on_new_message: Callable[[UserMessage], Awaitable[Any]],
        request: Request,
        message: UserMessage,
        sender_id: str,
        text: str,
        message_id: str | None,
    ) -> list[dict[str, Any]] | None:
        """Runs the turn, unless it is stored already: then its stored reply (None when the turn was run)."""
        if message_id is not None:
            replay = await _stored_reply(request, sender_id, message_id)
            if replay is not None:
                logger.info("turn of %s: %s was already run and stored; answering with its stored reply, not "
                            "running it again", sender_id, message_id)
                return replay
        if text == CALL_START:
            await _start_fresh_conversation(request, sender_id)
        await on_new_message(message)
        return None


async def _stored_reply(request: Request, sender_id: str, message_id: str) -> list[dict[str, Any]] | None:
    """The reply the conversation stored for its user event with `message_id`, shaped as the channel's reply
    (CollectingOutputChannel: the bot events after that user event, up to the next one); None if there is no such
    event. Read under the conversation's lock: a turn still running on another server finishes (or its server's
    lease runs out) first. Raises when the stores cannot be reached (the channel apologises)."""
    agent = _agent(request)
    store = getattr(agent, "tracker_store", None)
    if store is None:
        return None
    async with agent.lock_store.lock(sender_id):
        tracker = await store.retrieve(sender_id)
    if tracker is None:
        return None
    events = list(tracker.events)
    start = next((i for i in range(len(events) - 1, -1, -1)
                  if isinstance(events[i], UserUttered) and events[i].message_id == message_id), None)
    if start is None:
        return None
    collector = CollectingOutputChannel()
    for event in events[start + 1:]:
        if isinstance(event, UserUttered):
            break
        if isinstance(event, BotUttered):
            await collector.send_response(sender_id, event.message())  # as Rasa's processor sends it
    return collector.messages


def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = request.json
    except Exception:  # noqa: BLE001 - sanic raises on a body that is not JSON
        return None
    return body if isinstance(body, dict) else None


def _agent(request: Request) -> Any:
    return getattr(getattr(request.app, "ctx", None), "agent", None)


def _apology_text(request: Request) -> str:
    """The trainers' wording of the apology (domain response APOLOGY_RESPONSE); the contract's text when the
    loaded model's domain has none (the channel must never be silent)."""
    responses = getattr(getattr(_agent(request), "domain", None), "responses", None) or {}
    variants = responses.get(APOLOGY_RESPONSE) or [{}]
    text = variants[0].get("text") if isinstance(variants[0], dict) else None
    return text if isinstance(text, str) and text.strip() else UNAVAILABLE_APOLOGY


def _known_intents(request: Request) -> set[str] | None:
    agent = _agent(request)
    domain = getattr(agent, "domain", None)
    return set(domain.intents) if domain is not None else None


async def _start_fresh_conversation(request: Request, sender_id: str) -> None:
    """Restart a stored conversation under the sender's lock, so the call that follows begins with nothing.

    After `Restarted` the tracker has no applied events, so Rasa opens a new session (`action_session_start`)
    for the `/call_start` message that follows. Raises when the stores cannot be reached: a call must not go on
    over a conversation that may hold another caller's verification.
    """
    agent = _agent(request)
    store = getattr(agent, "tracker_store", None)
    if store is None:
        return
    async with agent.lock_store.lock(sender_id):
        tracker = await store.retrieve(sender_id)
        if tracker is None or not tracker.events:
            return
        logger.info("call %s: /call_start on a conversation seen before; restarting it", sender_id)
        tracker.update(Restarted())
        await store.save(tracker)


async def _slots(request: Request, sender_id: str) -> dict[str, Any]:
    """The caller's slots, for the handoff context; empty if the tracker store cannot be read."""
    agent = _agent(request)
    try:
        tracker = await agent.tracker_store.retrieve(sender_id)
    except Exception:  # noqa: BLE001
        return {}
    return tracker.current_slot_values() if tracker is not None else {}
