"""The CLI chat: line parsing, reply formatting, and a session against a scripted Rasa over HTTP."""

from __future__ import annotations

import asyncio
import re
import sys

import pytest
from aiohttp.test_utils import TestServer

from bot import chat
from bot.chat import ChatSession, Command, format_reply, handle, parse_line, parse_secure_line, read_line
from bot.rasa_client import BotReply, RasaClient
from tests.bot.fake_rasa import ASK_PIN, TOKEN, FakeRasa


@pytest.mark.parametrize("line, expected", [
    ("我要挂失", Command("text", "我要挂失")),
    ("  1234 ", Command("text", "1234")),  # without a prefix, digits are speech
    ("#135790", Command("dtmf", "135790")),
    (":dtmf 1 2 3 4", Command("dtmf", "1234")),
    ("#*", Command("dtmf", "*")),
    ("#", Command("text", "#")),
    ("#12a", Command("error", "keypad input is 1 to 32 keys of 0-9 * # (e.g. #1234)")),
    ("/new", Command("new")),
    ("/QUIT", Command("quit")),
    ("/caller 13900000003", Command("caller", "13900000003")),
    ("/caller", Command("caller", "")),
    ("", Command("text", "")),
])
def test_parse_line(line, expected):
    assert parse_line(line) == expected


def test_parse_line_rejects_a_bad_caller_number():
    assert parse_line("/caller 138'; drop").kind == "error"


@pytest.mark.parametrize("line, expected", [
    ("135790", Command("dtmf", "135790")),
    ("#135790", Command("dtmf", "135790")),
    ("幺三五七九零", Command("text", "幺三五七九零")),
])
def test_parse_secure_line(line, expected):
    assert parse_secure_line(line) == expected


def test_format_reply_lists_texts_and_events_in_order():
    reply = BotReply(items=ASK_PIN + [{"custom": {"event": "handoff", "queue": "general", "priority": 1,
                                                  "reason": "pin_locked"}}])
    assert format_reply(reply) == [
        "bot> 请输入六位电话银行密码。",
        "     [expect] digits up to 6  secure: your next line is hidden",
        "     [handoff] queue=general priority=1 reason=pin_locked  (the call goes to an agent; /new for another)",
    ]
    assert format_reply(BotReply()) == ["bot> (no reply)"]


@pytest.fixture
async def session():
    fake = FakeRasa()
    server = TestServer(fake.app())
    await server.start_server()
    rasa = RasaClient(str(server.make_url("")), TOKEN, timeout_s=2)
    chat_session = ChatSession(rasa, "13800000001")
    chat_session.fake = fake
    yield chat_session
    await rasa.close()
    await server.close()


async def test_session_talks_the_call_contract(session):
    out: list[str] = []
    await handle(session, Command("new"), out.append)
    await handle(session, Command("text", "我要挂失"), out.append)
    await handle(session, Command("dtmf", "1234"), out.append)
    sent = session.fake.received
    assert [p["message"] for p in sent] == ["/call_start", "我要挂失", '/dtmf{"digits":"1234"}']
    assert all(p["metadata"] == {"caller_number": "13800000001", "channel": "text"} for p in sent)
    assert len({p["sender"] for p in sent}) == 1
    assert session.secure_expected
    assert "     [speech_rate] 0.8" in out


async def test_new_call_and_caller_switch_change_the_sender(session):
    await handle(session, Command("new"), lambda _: None)
    first = session.call_id
    await handle(session, Command("caller", "13900000003"), lambda _: None)
    assert session.call_id != first
    assert re.fullmatch(r"chat-[0-9a-f]{32}", session.call_id)  # uuid4, never a guessable id
    assert session.fake.received[-1]["metadata"]["caller_number"] == "13900000003"


async def test_hangup_marks_the_call_ended(session):
    await handle(session, Command("new"), lambda _: None)
    await handle(session, Command("text", "再见"), lambda _: None)
    assert session.ended


async def test_quit_and_errors_do_not_reach_rasa(session):
    out: list[str] = []
    assert await handle(session, Command("quit"), out.append) is False
    assert await handle(session, Command("error", "bad keys"), out.append) is True
    assert out == ["!! bad keys"] and session.fake.received == []


async def test_dead_rasa_prints_a_clear_message(unused_tcp_port):
    rasa = RasaClient(f"http://127.0.0.1:{unused_tcp_port}", TOKEN, timeout_s=1)
    out: list[str] = []
    try:
        assert await handle(ChatSession(rasa, ""), Command("new"), out.append) is True
    finally:
        await rasa.close()
    assert out[0].startswith("!! Rasa is not reachable")


async def test_secure_input_is_read_hidden_and_never_printed(session, monkeypatch, capsys):
    await handle(session, Command("new"), print)
    await handle(session, Command("dtmf", "1234"), print)  # the fake now expects a secure PIN
    monkeypatch.setattr(chat.getpass, "getpass", lambda prompt: "135790")
    monkeypatch.setattr("builtins.input", lambda prompt: pytest.fail("visible input used for a PIN"))
    command = read_line(session)
    assert command == Command("dtmf", "135790")
    await handle(session, command, print)
    assert "135790" not in capsys.readouterr().out
    assert session.fake.received[-1]["message"] == '/dtmf{"digits":"135790"}'


async def test_cli_end_to_end_over_a_pipe(session):
    """`python -m bot.chat` as a user runs it: typed lines in, readable transcript out, the PIN never shown."""
    url = session.rasa._base_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.chat", "--caller", "13800000001", "--rasa", url,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate("我要挂失\n#1234\n135790\n/quit\n".encode()), timeout=30)
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "bot> 王先生您好" in text and "[expect] digits up to 6  secure" in text
    assert "bot> 余额为52340.50元。" in text
    assert "135790" not in text + err.decode()
    assert [p["message"] for p in session.fake.received][-1] == '/dtmf{"digits":"135790"}'
