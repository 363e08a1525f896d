"""Text chat with the bot over the call contract: `make chat` or `python -m bot.chat [--caller N] [--rasa URL]`.

Type what the caller says. Keypad digits: `#1234` or `:dtmf 1234`. Commands: `/new` (new call),
`/caller 13800000002` (new call from that number), `/help`, `/quit`. While the bot expects secure input
(a PIN), the next line is read hidden, like a password, and never echoed.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from bot.rasa_client import BotReply, RasaClient, RasaUnavailable
from call_contract import CALL_START, dtmf_message, valid_keyed_digits
from settings import get_settings

HELP = ("Type what the caller says.  Keypad: #1234 or :dtmf 1234.  "
        "/new  new call   /caller N  call from N   /help   /quit")


@dataclass(frozen=True)
class Command:
    """One parsed console line. kind: text | dtmf | new | caller | help | quit | error."""

    kind: str
    value: str = ""


def parse_line(line: str) -> Command:
    """What a typed line means. Keypad input needs a prefix so a spoken '1234' stays speech."""
    stripped = line.strip()
    if stripped.startswith(":dtmf"):
        return _keypad(stripped[len(":dtmf"):].strip())
    if stripped.startswith("#") and len(stripped) > 1:
        return _keypad(stripped[1:].strip())
    lowered = stripped.lower()
    if lowered in ("/new", "/quit", "/exit", "/help"):
        return Command({"/exit": "quit"}.get(lowered, lowered[1:]))
    if lowered.startswith("/caller"):
        number = stripped[len("/caller"):].strip()
        if not re.fullmatch(r"\+?[0-9]{0,20}", number):
            return Command("error", "caller number must be up to 20 digits (empty = no caller id)")
        return Command("caller", number)
    return Command("text", stripped)


def parse_secure_line(line: str) -> Command:
    """A hidden line: keyed digits go as keypad input, anything else (spoken digits) as text."""
    stripped = line.strip()
    if stripped.startswith(":dtmf"):
        return _keypad(stripped[len(":dtmf"):].strip())
    digits = stripped[1:] if stripped.startswith("#") else stripped
    if valid_keyed_digits(digits):
        return Command("dtmf", digits)
    return Command("text", stripped)


def _keypad(digits: str) -> Command:
    digits = digits.replace(" ", "")
    if not valid_keyed_digits(digits):
        return Command("error", "keypad input is 1 to 32 keys of 0-9 * # (e.g. #1234)")
    return Command("dtmf", digits)


def format_event(event: dict[str, Any]) -> str:
    kind = event.get("event")
    if kind == "handoff":
        return (f"[handoff] queue={event.get('queue')} priority={event.get('priority')} "
                f"reason={event.get('reason')}  (the call goes to an agent; /new for another)")
    if kind == "hangup":
        return "[hangup] the bot ended the call (/new for another)"
    if kind == "speech_rate":
        return f"[speech_rate] {event.get('rate')}"
    if kind == "expect":
        secure = "  secure: your next line is hidden" if event.get("secure") else ""
        return f"[expect] {event.get('input')} up to {event.get('max_length')}{secure}"
    if kind == "interruptible":
        return f"[interruptible] {event.get('value')}"
    return f"[{kind}] {event}"


def format_reply(reply: BotReply) -> list[str]:
    """The reply's items in order: bot texts, then events in brackets."""
    lines = []
    for item in reply.items:
        if item.get("text"):
            lines.append(f"bot> {item['text']}")
        if isinstance(item.get("custom"), dict):
            lines.append("     " + format_event(item["custom"]))
    return lines or ["bot> (no reply)"]


class ChatSession:
    """One simulated caller: a call id, a caller number and whether the bot expects secure input."""

    def __init__(self, rasa: RasaClient, caller_number: str) -> None:
        self.rasa = rasa
        self.caller_number = caller_number
        self.call_id = ""
        self.expect: dict[str, Any] | None = None
        self.ended = False

    @property
    def secure_expected(self) -> bool:
        return bool(self.expect and self.expect.get("secure"))

    async def new_call(self) -> BotReply:
        self.call_id = f"chat-{uuid.uuid4().hex}"  # a fresh conversation every call, never a guessable id
        self.expect, self.ended = None, False
        return await self._send(CALL_START)

    async def say(self, text: str) -> BotReply:
        return await self._send(text)

    async def keypad(self, digits: str) -> BotReply:
        return await self._send(dtmf_message(digits))

    async def _send(self, message: str) -> BotReply:
        metadata = {"caller_number": self.caller_number, "channel": "text"}
        reply = await self.rasa.send(self.call_id, message, metadata)
        events = reply.events
        self.expect = next((e for e in reversed(events) if e.get("event") == "expect"), None)
        self.ended = any(e.get("event") in ("hangup", "handoff") for e in events)
        return reply


async def handle(session: ChatSession, command: Command, out: Callable[[str], None]) -> bool:
    """Runs one command; returns False when the user wants to quit."""
    if command.kind == "quit":
        return False
    if command.kind == "help":
        out(HELP)
        return True
    if command.kind == "error":
        out(f"!! {command.value}")
        return True
    try:
        if command.kind == "caller":
            session.caller_number = command.value
            reply = await _start(session, out)
        elif command.kind == "new":
            reply = await _start(session, out)
        elif command.kind == "dtmf":
            reply = await session.keypad(command.value)
        else:
            reply = await session.say(command.value)
    except RasaUnavailable as exc:
        out(f"!! Rasa is not reachable ({exc}). Is `make run` up? Try again or /quit.")
        return True
    for line in format_reply(reply):
        out(line)
    return True


async def _start(session: ChatSession, out: Callable[[str], None]) -> BotReply:
    reply = await session.new_call()
    out(f"-- new call {session.call_id} from {session.caller_number or 'no caller id'}")
    return reply


def read_line(session: ChatSession) -> Command:
    """Blocking read of the next line; hidden when the bot expects a PIN."""
    if session.secure_expected:
        return parse_secure_line(getpass.getpass("you (hidden)> "))
    return parse_line(input("you> "))


def run(rasa_url: str, token: str, timeout_s: float, caller_number: str) -> int:
    """The interactive loop. Input is read on the main thread, so Ctrl-C ends the chat at once."""
    with asyncio.Runner() as runner:  # one event loop for the whole chat: the HTTP session lives on it
        rasa = RasaClient(rasa_url, token, timeout_s)
        session = ChatSession(rasa, caller_number)
        print(HELP)
        try:
            command = Command("new")
            while runner.run(handle(session, command, print)):
                command = read_line(session)
        except (EOFError, KeyboardInterrupt):
            print()
        finally:
            runner.run(rasa.close())
    return 0


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m bot.chat", description="Chat with the IVR bot as a caller.")
    parser.add_argument("--caller", default="13800000001", help="caller number (default 王建国's 13800000001)")
    parser.add_argument("--rasa", default=settings.rasa.url, help=f"Rasa server URL (default {settings.rasa.url})")
    args = parser.parse_args(argv)
    return run(args.rasa, settings.rasa.token, settings.rasa_reply_timeout_s, args.caller)


if __name__ == "__main__":
    sys.exit(main())
