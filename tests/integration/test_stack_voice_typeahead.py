"""Issue 7 §2 against the real stack: card and PIN keyed ahead of the prompts on `/voice/ws` verify the caller.

王建国 presses 1 (balance) and, before the bot has answered it, keys his card's last four, his PIN and `#` in one
go, as callers key it at any bank IVR. The voice loop must hold those keys until each prompt is in (card, then the
secure PIN prompt), so the call ends with his balance read out once verified, the PIN prompt said once, no agent,
and no PIN digit sent as a menu key or written in clear to a log line, the call record or the tracker.

Issue 7's reproduction: the gatherer before type-ahead (e682318) sent each key after the `1` to Rasa as a menu key,
as no digits were expected yet: the PIN one digit a turn (`/dtmf{"digits":"3"}`, logged and recorded), its 0 as
/human_agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import aiohttp
import pytest

from actions.bank.seed import CUSTOMERS
from actions.keypad import KEYPAD_MENU
from bot.frames import SECURE_MASK
from call_contract import HUMAN_AGENT as HUMAN_AGENT_MESSAGE

pytestmark = pytest.mark.integration

WANG = next(customer for customer in CUSTOMERS if customer.surname + customer.given_name == "王建国")
CARD = next(card for card in WANG.cards if card.kind == "debit")
BALANCE_KEY = next(key for key, (intent, _) in KEYPAD_MENU.items() if intent == "check_balance")
# The amount is read as Arabic yuan (52340元5角): its whole yuan are in the digits of the reply.
BALANCE_YUAN_DIGITS = str(int(Decimal(CARD.balance)))
TYPED_AHEAD = CARD.last4 + WANG.pin + "#"
# The only keypad entries the dialogue may see in the clear: the menu choice and the card's last four.
CLEAR_ENTRIES = {BALANCE_KEY, CARD.last4}
HUMAN_AGENT_INTENT = HUMAN_AGENT_MESSAGE.lstrip("/")  # what the PIN's 0 became as a menu key
DIGITS_RE = re.compile(r'"digits"\s*:\s*"([^"]*)"')
REPLY_TIMEOUT_S = 60.0  # the elderly caller's prompts are slow to speak, but their texts come with each reply


@dataclass
class SocketLog:
    """Every JSON event the gateway sent on the socket, with its arrival time (audio is read and dropped)."""

    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for _, event in self.events if event.get("type") == kind]

    def bot_texts(self) -> list[str]:
        return [text for event in self.of("bot") for text in event.get("texts", [])]

    async def wait_for(self, condition: Callable[[], object], timeout_s: float = REPLY_TIMEOUT_S) -> None:
        async def until() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout_s)


async def read_socket(ws: aiohttp.ClientWebSocketResponse, log: SocketLog) -> None:
    async for message in ws:
        if message.type == aiohttp.WSMsgType.TEXT:
            log.events.append((time.monotonic(), json.loads(message.data)))
            log.changed.set()
    log.changed.set()


async def key(ws: aiohttp.ClientWebSocketResponse, keys: str) -> None:
    """Keys as fast as a caller types them: one message each, no waiting for any prompt in between."""
    for one in keys:
        await ws.send_str(json.dumps({"type": "dtmf", "key": one}))


def balance_read_out(log: SocketLog) -> bool:
    return any(BALANCE_YUAN_DIGITS in "".join(re.findall(r"\d", text)) for text in log.bot_texts())


def call_record(calls_dir: Path, call_id: str) -> dict[str, Any]:
    for path in sorted(calls_dir.glob("calls-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("call_id") == call_id:
                return record
    raise AssertionError(f"no call record for {call_id} in {calls_dir}")


def clear_values(data: Any) -> Iterator[str]:
    """Every text a JSON document holds (keys, strings, integers); floats are timestamps and confidences."""
    if isinstance(data, dict):
        for name, value in data.items():
            yield str(name)
            yield from clear_values(value)
    elif isinstance(data, list):
        for value in data:
            yield from clear_values(value)
    elif isinstance(data, str):
        yield data
    elif isinstance(data, int) and not isinstance(data, bool):
        yield str(data)


def keypad_entries(texts: list[str]) -> list[str]:
    """The digits of each `/dtmf{"digits": ...}` message among `texts`."""
    return [match for text in texts for match in DIGITS_RE.findall(text)]


def pin_keys(entries: list[str]) -> list[str]:
    """Entries that carry a digit of the PIN, other than the clear ones (the no-input ladder's `*` carries none)."""
    return [entry for entry in entries if entry not in CLEAR_ENTRIES and set(entry) & set(WANG.pin)]


@dataclass
class TypeaheadCall:
    """The finished call: what the socket said, and when the keys left (to show they were typed ahead)."""

    call_id: str
    log: SocketLog
    first_key_at: float  # just before the balance key left
    last_key_at: float  # just after the `#` left


async def typeahead_call(gateway_url: str) -> TypeaheadCall:
    """The call: greeting, then the balance key and card + PIN + # in one go; hangs up once the balance is read.

    Never raises on a call that goes wrong (an agent, silence): the tests say what was wrong with it.
    """
    log = SocketLog()
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{gateway_url}/voice/ws", params={"caller": WANG.phone}) as ws:
            reader = asyncio.create_task(read_socket(ws, log))
            try:
                await log.wait_for(lambda: log.of("ready") and log.of("bot"))  # the greeting's reply is in
                first_key_at = time.monotonic()
                await key(ws, BALANCE_KEY + TYPED_AHEAD)
                last_key_at = time.monotonic()
                with contextlib.suppress(asyncio.TimeoutError):
                    await log.wait_for(lambda: balance_read_out(log) or log.of("ended"))
                await asyncio.sleep(1.0)  # anything a stray key could still set off (an agent, a menu choice)
                if not log.of("ended"):
                    await ws.send_str(json.dumps({"type": "hangup"}))
                with contextlib.suppress(asyncio.TimeoutError):
                    await log.wait_for(lambda: log.of("ended"), timeout_s=15)
            finally:
                await ws.close()
                await asyncio.wait_for(reader, 10)
    return TypeaheadCall(log.of("ready")[0]["call_id"], log, first_key_at, last_key_at)


@pytest.fixture(scope="module")
def typeahead(stack) -> TypeaheadCall:
    """One call for all the checks below (the stack is shared; a call takes a few seconds)."""
    return asyncio.run(typeahead_call(stack.gateway_url))


@pytest.fixture(scope="module")
def tracker(stack, typeahead) -> dict[str, Any]:
    return stack.tracker(typeahead.call_id)


def user_events(tracker: dict[str, Any]) -> list[dict[str, Any]]:
    return [event for event in tracker["events"] if event["event"] == "user"]


def test_the_keys_were_typed_ahead_of_the_reply_to_the_balance_key(typeahead):
    replies_while_keying = [event for at, event in typeahead.log.events
                            if event.get("type") == "bot" and typeahead.first_key_at < at <= typeahead.last_key_at]
    assert replies_while_keying == [], "a reply came in before all keys were sent: this call tests no type-ahead"


def test_card_and_pin_keyed_ahead_verify_the_caller_and_his_balance_is_read_out(typeahead, tracker):
    texts = typeahead.log.bot_texts()
    assert balance_read_out(typeahead.log), f"balance {BALANCE_YUAN_DIGITS} not read out: {texts}"
    assert tracker["slots"].get("verified") is True, tracker["slots"]
    assert not typeahead.log.of("handoff"), typeahead.log.of("handoff")
    secure_prompts = [event.get("text") for event in tracker["events"] if event["event"] == "bot"
                      and ((event.get("data") or {}).get("custom") or {}).get("secure") is True]
    assert len(secure_prompts) == 1, f"the PIN prompt said {len(secure_prompts)} times: {texts}"


def test_no_key_of_the_pin_reaches_the_dialogue_as_a_menu_key_or_the_agent_key(stack, typeahead, tracker):
    # What the voice loop sent (the socket's caller turns, the gateway's log of each message to Rasa), and
    # what Rasa recorded: the menu key and the card in the clear, the PIN once as masked secure input.
    caller_turns = [event["text"] for event in typeahead.log.of("caller")]
    assert keypad_entries(caller_turns) == [BALANCE_KEY, CARD.last4], caller_turns
    assert caller_turns.count(SECURE_MASK) == 1 and HUMAN_AGENT_MESSAGE not in caller_turns, caller_turns
    gateway_log = stack.log_path("gateway").read_text(errors="replace").splitlines()
    sent = [line for line in gateway_log if typeahead.call_id in line]
    assert pin_keys(keypad_entries(sent)) == [], sent
    assert not any(HUMAN_AGENT_MESSAGE in line for line in sent), sent
    user_texts = [event.get("text") or "" for event in user_events(tracker)]
    intents = [((event.get("parse_data") or {}).get("intent") or {}).get("name") for event in user_events(tracker)]
    assert pin_keys(keypad_entries(user_texts)) == [], user_texts
    assert HUMAN_AGENT_INTENT not in intents and HUMAN_AGENT_MESSAGE not in user_texts, intents


def test_the_call_record_holds_no_pin_digit(stack, typeahead):
    record = call_record(Path(stack.settings.gateway.call_records_dir), typeahead.call_id)
    recorded = [turn["text"] for turn in record["transcript"] if turn["who"] == "caller"]
    assert keypad_entries(recorded) == [BALANCE_KEY, CARD.last4], recorded
    assert recorded.count(SECURE_MASK) == 1 and HUMAN_AGENT_MESSAGE not in recorded, recorded
    assert HUMAN_AGENT_INTENT not in record["intents"], record["intents"]
    assert record["outcome"] != "handoff" and record["handoff_reason"] is None, record
    assert WANG.pin not in json.dumps(record, ensure_ascii=False)


def test_no_log_line_socket_event_or_tracker_holds_the_pin(stack, typeahead, tracker):
    assert not any(WANG.pin in json.dumps(event, ensure_ascii=False) for _, event in typeahead.log.events)
    assert not any(WANG.pin in value for value in clear_values(tracker))
    for name in ("gateway", "rasa", "actions"):
        leaked = [line for line in stack.log_path(name).read_text(errors="replace").splitlines() if WANG.pin in line]
        assert leaked == [], f"{name}.log: {leaked[:3]}"
