"""The text console: the `/console` page and its JSON API, which talks the call contract to Rasa server-side.

API (all JSON; errors are `{"error": "..."}` with 400 for bad input and 502 when Rasa cannot be reached):
    POST /console/api/calls                       {"caller_number"}                      -> turn of /call_start
    POST /console/api/calls/{call_id}/messages    {"caller_number", "text", "secure"}    -> turn
    POST /console/api/calls/{call_id}/dtmf        {"caller_number", "digits", "secure", "expecting_digits"} -> turn
A turn is {"call_id", "items", "texts", "events", "expect", "ended", "debug"}; see `turn_payload`.

Access (bot/web/access.py): the API takes `Content-Type: application/json` only (415 otherwise), refuses a foreign
`Origin` (403) and, when CONSOLE_TOKEN is set, a browser without the session cookie the page issued (401). A call
id is `console-<uuid4>`, registered under the browser's session: any other id (a telephony call's, another
browser's, a made-up one) is answered 404, exactly like an id that never existed.

Every console call gets a call record with channel "console" (bot/web/console_records.py says when it is written).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from bot.call_ids import DOOR_CONSOLE, new_call_id
from bot.call_records import CallRecordWriter
from bot.rasa_client import BotReply, RasaClient, RasaUnavailable
from bot.web.access import ACCESS_KEY, ConsoleAccess, Refused, console_access
from bot.web.console_records import ConsoleRecords
from call_contract import CALL_START, HUMAN_AGENT, SECURE_MASK, dtmf_message, valid_keyed_digits
from settings import Settings

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
RASA_CLIENT_KEY: web.AppKey[RasaClient] = web.AppKey("console_rasa_client", RasaClient)
SETTINGS_KEY: web.AppKey[Settings] = web.AppKey("console_settings", Settings)
RECORDS_KEY: web.AppKey[ConsoleRecords] = web.AppKey("console_records", ConsoleRecords)

CALL_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CALLER_RE = re.compile(r"^\+?[0-9]{0,20}$")

CONSOLE_TURNS = Counter("ivr_console_turns_total", "Console turns sent to Rasa", ["kind", "outcome"])
CONSOLE_REFUSED = Counter("ivr_console_refused_total", "Console API requests refused", ["reason"])
UNKNOWN_CALL = "unknown call id: start a new call"


class BadRequest(ValueError):
    """The browser sent something the console cannot forward; the message is shown to the user."""


def add_console_routes(app: web.Application, settings: Settings) -> None:
    """Registers the page, its static assets and the JSON API, plus the Rasa client's lifecycle."""
    app[SETTINGS_KEY] = settings
    console_access(app, settings.gateway)
    app.cleanup_ctx.append(_rasa_client_ctx)
    app.router.add_get("/console", console_page)
    app.router.add_static("/console/static", STATIC_DIR, name="console_static")
    app.router.add_post("/console/api/calls", start_call)
    app.router.add_post("/console/api/calls/{call_id}/messages", send_text)
    app.router.add_post("/console/api/calls/{call_id}/dtmf", send_dtmf)


async def _rasa_client_ctx(app: web.Application):
    settings = app[SETTINGS_KEY]
    client = RasaClient(settings.rasa.url, settings.rasa.token, settings.rasa_reply_timeout_s)
    app[RASA_CLIENT_KEY] = client
    app[RECORDS_KEY] = records = ConsoleRecords(settings, CallRecordWriter.from_settings(settings))
    yield
    records.close()  # the calls still open are on the books too
    await client.close()


async def console_page(request: web.Request) -> web.StreamResponse:
    return await request.app[ACCESS_KEY].page(
        request, lambda: web.FileResponse(STATIC_DIR / "console.html", headers={"Cache-Control": "no-cache"}))


async def start_call(request: web.Request) -> web.Response:
    access = request.app[ACCESS_KEY]
    session = _check_api_request(request, access)
    body = await _json_body(request)
    caller = _caller_number(body)
    call_id = new_console_call_id()
    response = await _turn(request, "call_start", call_id, caller, CALL_START, secure=False)
    if response.status != 200:
        return response
    if session is None:  # a client the page never saw (curl, tests): its cookie jar keeps the session
        session = access.new_session(response, request)
    access.add_call(session, call_id)
    return response


def new_console_call_id() -> str:
    """Globally unique and unguessable; it addresses nothing until registered under a console session."""
    return new_call_id(DOOR_CONSOLE)


async def send_text(request: web.Request) -> web.Response:
    call_id = _own_call_id(request)
    body = await _json_body(request)
    text = body.get("text")
    if not isinstance(text, str):
        raise BadRequest("text must be a string")
    max_chars = request.app[SETTINGS_KEY].gateway.console_max_chars
    if len(text) > max_chars:
        raise BadRequest(f"message too long: {len(text)} characters, the console forwards at most {max_chars}")
    # An empty line is still a turn: a caller can say nothing, and the bot must cope.
    return await _turn(request, "text", call_id, _caller_number(body), text.strip(), secure=bool(body.get("secure")))


async def send_dtmf(request: web.Request) -> web.Response:
    call_id = _own_call_id(request)
    body = await _json_body(request)
    digits = body.get("digits")
    if not valid_keyed_digits(digits):
        raise BadRequest("digits must be 1 to 32 keypad keys (0-9 * #)")
    human_key = request.app[SETTINGS_KEY].voice.human_key
    # Same rule as the voice loop: the human key alone, when no digits are expected, asks for an agent.
    if digits == human_key and not body.get("expecting_digits"):
        message = HUMAN_AGENT
    else:
        message = dtmf_message(digits)
    return await _turn(request, "dtmf", call_id, _caller_number(body), message, secure=bool(body.get("secure")))


async def _turn(request: web.Request, kind: str, call_id: str, caller: str, message: str,
                *, secure: bool) -> web.Response:
    rasa = request.app[RASA_CLIENT_KEY]
    metadata = {"caller_number": caller, "channel": "text"}
    try:
        reply = await rasa.send(call_id, message, metadata)
    except RasaUnavailable as exc:
        CONSOLE_TURNS.labels(kind, "rasa_unavailable").inc()
        log.warning("console call %s: Rasa unavailable: %s", call_id, exc)
        return web.json_response(
            {"error": "The dialogue server (Rasa) is not reachable right now. Is `make run` up? Try again shortly."},
            status=502)
    CONSOLE_TURNS.labels(kind, "ok").inc()
    records = request.app[RECORDS_KEY]
    secure = secure or records.expects_secure(call_id)  # the page's flag is the client's: the server's counts too
    debug = await _debug_info(rasa, call_id, secure=secure)
    if kind == "call_start":
        records.start(call_id, caller)
    records.turn(call_id, kind=kind, text=message, secure=secure, reply=reply, intent=debug.get("intent"))
    return web.json_response(turn_payload(call_id, reply, debug))


def turn_payload(call_id: str, reply: BotReply, debug: dict[str, Any]) -> dict[str, Any]:
    events = reply.events
    expect = next((e for e in reversed(events) if e.get("event") == "expect"), None)
    return {
        "call_id": call_id,
        "items": reply.items,
        "texts": reply.texts,
        "events": events,
        "expect": expect,
        "ended": any(e.get("event") in ("hangup", "handoff") for e in events),
        "debug": debug,
    }


async def _debug_info(rasa: RasaClient, call_id: str, *, secure: bool) -> dict[str, Any]:
    """Intent, confidence, entities, slots and actions of the last turn, from Rasa's tracker API."""
    try:
        tracker = await rasa.tracker(call_id)
    except RasaUnavailable as exc:
        return {"error": f"tracker unavailable: {exc}"}
    return debug_from_tracker(tracker, secure=secure)


def debug_from_tracker(tracker: dict[str, Any], *, secure: bool) -> dict[str, Any]:
    latest = tracker.get("latest_message") or {}
    intent = latest.get("intent") or {}
    entities = [
        {"entity": e.get("entity"), "value": SECURE_MASK if secure else e.get("value"),
         "extractor": e.get("extractor")}
        for e in latest.get("entities") or [] if isinstance(e, dict)
    ]
    slots = {name: value for name, value in (tracker.get("slots") or {}).items() if value not in (None, [], "")}
    return {
        "intent": intent.get("name"),
        "confidence": intent.get("confidence"),
        "entities": entities,
        "slots": slots,
        "actions": _actions_since_last_user_event(tracker.get("events") or []),
        "active_loop": (tracker.get("active_loop") or {}).get("name"),
    }


def _actions_since_last_user_event(events: list[dict[str, Any]]) -> list[str]:
    actions: list[str] = []
    for event in reversed(events):
        if event.get("event") == "user":
            break
        if event.get("event") == "action" and event.get("name") not in ("action_listen", None):
            actions.append(event["name"])
    return list(reversed(actions))


def _check_api_request(request: web.Request, access: ConsoleAccess) -> str | None:
    """CSRF and access checks of every API request; returns the browser's console session, if any."""
    if request.content_type != "application/json":
        CONSOLE_REFUSED.labels("content_type").inc()
        raise Refused(415, "the console API takes JSON only (Content-Type: application/json)")
    try:
        return access.check_api(request)
    except Refused as refused:
        CONSOLE_REFUSED.labels(str(refused.status)).inc()
        raise


def _own_call_id(request: web.Request) -> str:
    """The path's call id, if this browser's session started it; 404 for every other id, known or not."""
    access = request.app[ACCESS_KEY]
    session = _check_api_request(request, access)
    call_id = request.match_info["call_id"]
    if not CALL_ID_RE.match(call_id) or not access.owns(session, call_id):
        CONSOLE_REFUSED.labels("unknown_call").inc()
        raise Refused(404, UNKNOWN_CALL)
    return call_id


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # RecursionError: "[[[[…" nested deeper than the parser recurses
        raise BadRequest("the request body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _caller_number(body: dict[str, Any]) -> str:
    caller = body.get("caller_number", "")
    if not isinstance(caller, str) or not CALLER_RE.match(caller.strip()):
        raise BadRequest("caller number must be up to 20 digits, optionally starting with +")
    return caller.strip()
