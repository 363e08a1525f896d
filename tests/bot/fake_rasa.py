"""A scripted stand-in for the Rasa server's HTTP API, for console and chat tests only.

It speaks the same wire format as Rasa (REST webhook, tracker API, /status) and records what it received,
so tests can assert the call contract the consoles send.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

TOKEN = "test-token"

GREETING = [
    {"recipient_id": "x", "text": "王先生您好，欢迎致电。说「人工」或按0可直接转人工。"},
    {"recipient_id": "x", "custom": {"event": "speech_rate", "rate": 0.8}},
]
ASK_PIN = [
    {"recipient_id": "x", "text": "请输入六位电话银行密码。"},
    {"recipient_id": "x", "custom": {"event": "expect", "input": "digits", "max_length": 6, "secure": True}},
]
ASK_CARD = [
    {"recipient_id": "x", "text": "请说出或输入卡号后四位。"},
    {"recipient_id": "x", "custom": {"event": "expect", "input": "digits", "max_length": 4, "secure": False}},
]
HANDOFF = [
    {"recipient_id": "x", "text": "正在为您转接人工。"},
    {"recipient_id": "x", "custom": {"event": "handoff", "queue": "elderly_priority", "priority": 9,
                                     "reason": "human_agent", "context": {"intent": "human_agent"}}},
]
BYE = [{"recipient_id": "x", "text": "再见。"}, {"recipient_id": "x", "custom": {"event": "hangup"}}]


@dataclass
class FakeRasa:
    """Replies by message: exact matches first, then a default echo."""

    received: list[dict[str, Any]] = field(default_factory=list)
    tracker_requests: list[tuple[str, str]] = field(default_factory=list)

    def reply_for(self, message: str) -> list[dict[str, Any]]:
        if message == "/call_start":
            return GREETING
        if message.startswith("/dtmf"):
            digits = json.loads(message[len("/dtmf"):])["digits"]
            return ASK_PIN if len(digits) == 4 else [{"recipient_id": "x", "text": "余额为52340.50元。"}]
        if message == "/human_agent":
            return HANDOFF
        if "挂失" in message:
            return ASK_CARD
        if "再见" in message:
            return BYE
        return [{"recipient_id": "x", "text": f"您说的是：{message[:20]}"}]

    def intent_for(self, message: str) -> str:
        if message.startswith("/"):
            return message[1:].split("{")[0]
        return "report_card_loss" if "挂失" in message else "inform"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/webhooks/rest/webhook", self._webhook)
        app.router.add_get("/conversations/{sender}/tracker", self._tracker)
        app.router.add_get("/status", self._status)
        app.router.add_get("/", self._root)
        return app

    async def _webhook(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.received.append(payload)
        return web.json_response(self.reply_for(payload["message"]))

    async def _tracker(self, request: web.Request) -> web.Response:
        sender = request.match_info["sender"]
        self.tracker_requests.append((sender, request.query.get("token", "")))
        if request.query.get("token") != TOKEN:
            return web.json_response({"message": "bad token"}, status=401)
        messages = [p["message"] for p in self.received if p["sender"] == sender]
        last = messages[-1] if messages else ""
        return web.json_response({
            "sender_id": sender,
            "latest_message": {"text": last, "intent": {"name": self.intent_for(last), "confidence": 0.97},
                               "entities": [{"entity": "card_last4", "value": "1234", "extractor": "DIETClassifier"}]},
            "slots": {"caller_number": "13800000001", "verified": False, "empty": None},
            "events": [{"event": "user", "text": last},
                       {"event": "action", "name": "utter_greet"},
                       {"event": "action", "name": "action_listen"}],
            "active_loop": {},
        })

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response({"model_file": "fake.tar.gz"})

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Hello from fake Rasa")


@contextlib.asynccontextmanager
async def running_fake_rasa() -> AsyncIterator[FakeRasa]:
    """A FakeRasa served on a free loopback port for the duration of the block (`fake.url` is set)."""
    fake = FakeRasa()
    server = TestServer(fake.app())
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    try:
        yield fake
    finally:
        await server.close()
