"""Real SIP peers: sipp (Debian `sip-tester`) scenarios against our server on 127.0.0.1 and a free port.

The application here is a small test call handler (answers, optionally hangs up or REFERs); media is
not exercised at this level. Each sipp runs in its own process group, killed in a finalizer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from telephony.sip.sdp import LocalMedia
from telephony.sip.transport import SipServer, free_port
from telephony.sip.uas import CallAnswered, CallEnded, DtmfInfo, IncomingCall, TransferResult
from tests.telephony.sip_peers import SIPP, run_sipp

SIPP_TIMEOUT_S = 20  # signalling only: a scenario that takes longer is stuck

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed (Debian package sip-tester; run `make apt`)"),
]


@dataclass
class ScriptedCallApp:
    """Answers every call; then, per test, hangs up after a delay or REFERs to a queue."""

    server: SipServer | None = None
    answer: bool = True
    hangup_after_s: float | None = None
    refer_queue: str | None = None
    events: list = field(default_factory=list)

    def __call__(self, event) -> None:
        self.events.append(event)
        assert self.server is not None
        loop = asyncio.get_running_loop()
        if isinstance(event, IncomingCall):
            self.server.ringing(event.call)
            if self.answer:
                self.server.answer(event.call, LocalMedia("127.0.0.1", 20000))
        elif isinstance(event, CallAnswered):
            if self.hangup_after_s is not None:
                loop.call_later(self.hangup_after_s, self.server.hangup, event.call)
            if self.refer_queue is not None:
                context = {"intent": "human_agent", "verified": False, "green_channel": True, "call_id": event.call.id}
                loop.call_later(0.1, self.server.refer_to_queue, event.call, self.refer_queue, context)

    def of_type(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
async def sip_server(sip_settings):
    app = ScriptedCallApp()
    server = SipServer(sip_settings, app)
    app.server = server
    await server.start("127.0.0.1", free_port())
    try:
        yield server, app
    finally:
        await server.close()


async def settle(app: ScriptedCallApp, kind: type, count: int = 1, timeout: float = 3.0) -> None:
    """Wait until the app has seen `count` events of `kind` (sipp may exit just before our last event)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(app.of_type(kind)) < count and loop.time() < deadline:
        await asyncio.sleep(0.02)


async def test_basic_call_with_bye_from_caller(sip_server, tmp_path):
    server, app = sip_server
    await run_sipp("basic_call.xml", server.address, tmp_path, timeout=SIPP_TIMEOUT_S)
    await settle(app, CallEnded)
    assert len(app.of_type(CallAnswered)) == 1
    assert [e.cause for e in app.of_type(CallEnded)] == ["remote_bye"]
    assert server.active_calls == []


async def test_bye_from_our_side(sip_server, tmp_path):
    server, app = sip_server
    app.hangup_after_s = 0.2
    await run_sipp("bye_from_ivr.xml", server.address, tmp_path, timeout=SIPP_TIMEOUT_S)
    assert [e.cause for e in app.of_type(CallEnded)] == ["local_hangup"]


async def test_cancel_before_answer(sip_server, tmp_path):
    server, app = sip_server
    app.answer = False  # the test app holds the call in ringing so the caller can cancel
    await run_sipp("cancel.xml", server.address, tmp_path, timeout=SIPP_TIMEOUT_S)
    assert [e.cause for e in app.of_type(CallEnded)] == ["cancelled"]
    assert app.of_type(CallAnswered) == []


async def test_options(sip_server, tmp_path):
    server, _ = sip_server
    await run_sipp("options.xml", server.address, tmp_path, timeout=SIPP_TIMEOUT_S)


async def test_info_dtmf(sip_server, tmp_path):
    server, app = sip_server
    await run_sipp("info_dtmf.xml", server.address, tmp_path, timeout=SIPP_TIMEOUT_S)
    assert [(e.digit, e.duration_ms) for e in app.of_type(DtmfInfo)] == [("5", 160), ("#", 160)]


async def test_refer_accepted_ends_our_leg(sip_server, tmp_path):
    server, app = sip_server
    app.refer_queue = "general"
    await run_sipp("refer_accepted.xml", server.address, tmp_path, timeout=SIPP_TIMEOUT_S)
    assert [(e.ok, e.detail) for e in app.of_type(TransferResult)] == [(True, "200 OK")]
    assert [e.cause for e in app.of_type(CallEnded)] == ["transferred"]


async def test_refer_refused_keeps_the_call(sip_server, tmp_path):
    server, app = sip_server
    app.refer_queue = "general"
    await run_sipp("refer_refused.xml", server.address, tmp_path, timeout=SIPP_TIMEOUT_S)
    results = app.of_type(TransferResult)
    assert len(results) == 1 and not results[0].ok and "503" in results[0].detail
    assert [e.cause for e in app.of_type(CallEnded)] == ["remote_bye"]  # the caller hung up later, not us


async def test_basic_call_over_tcp(sip_server, tmp_path):
    server, app = sip_server
    await run_sipp("basic_call.xml", server.address, tmp_path, "-t", "t1", timeout=SIPP_TIMEOUT_S)
    await settle(app, CallEnded)
    assert [e.cause for e in app.of_type(CallEnded)] == ["remote_bye"]
