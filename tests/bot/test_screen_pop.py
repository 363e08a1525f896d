"""The agent's screen-pop: the store (bot/screen_pop.py) and GET /agent/{ref} (bot/web/agent.py), attacked too:
enumeration, expiry, PINs and card numbers, script in ASR text, caching and referrers."""

from __future__ import annotations

import dataclasses

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.call_records import CallRecord
from bot.screen_pop import REF_RE, ScreenPopStore, mask_long_digits, screen_pop_for
from bot.web.agent import NOT_FOUND, add_agent_routes
from bot.web.app import json_errors_middleware
from settings import Settings

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


class SteppedClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def handoff_event(call_id: str = "sip-1") -> dict:
    return {"event": "handoff", "queue": "elderly_priority", "priority": 9, "reason": "green_channel",
            "context": {"intent": "report_loss", "verified": True, "customer_ref": "c-7", "green_channel": True,
                        "call_id": call_id}}


def record_with_turns() -> CallRecord:
    record = CallRecord(call_id="sip-1", caller_number="13800000001")
    record.add_bot_texts(["您好，请问有什么可以帮您？"])
    record.add_caller_turn("我的卡丢了", source="asr", secure=False)
    record.add_bot_texts(["请输入密码"])
    record.add_caller_turn("135790", source="keypad", secure=True)  # the PIN: masked by the record
    record.add_caller_turn("卡号是 6222 0212 3456 7890 123", source="asr", secure=False)  # a card number said aloud
    record.add_caller_turn("密码一三五七九零", source="asr", secure=False)  # a PIN said outside a secure prompt
    record.add_caller_turn(XSS, source="asr", secure=False)
    return record


def a_pop() -> dict:
    return screen_pop_for(handoff_event(), caller="13800000001", record=record_with_turns())


# ---- the store ------------------------------------------------------------------------------

def test_references_are_long_random_and_never_kept_in_clear():
    store = ScreenPopStore(60.0)
    refs = {store.create({"n": n}) for n in range(200)}
    assert len(refs) == 200 and all(REF_RE.match(ref) and len(ref) >= 32 for ref in refs)  # 192 bits each
    assert not any(ref in repr(store._pops) for ref in refs)  # filed under a hash


def test_a_pop_expires_after_its_ttl_and_unknown_or_malformed_refs_are_none():
    clock = SteppedClock()
    store = ScreenPopStore(1800.0, clock=clock)
    ref = store.create({"caller": "138****0001"})
    clock.now += 1799.9
    assert store.get(ref) == {"caller": "138****0001"}
    clock.now += 0.1
    assert store.get(ref) is None and len(store) == 0
    for wrong in ("", "x", ref[:-1] + ("A" if ref[-1] != "A" else "B"), "../../etc/passwd", "a" * 5000, None):
        assert store.get(wrong) is None


def test_the_store_is_bounded_and_drops_the_oldest():
    store = ScreenPopStore(60.0, max_pops=3)
    refs = [store.create({"n": n}) for n in range(5)]
    assert [store.get(ref) for ref in refs] == [None, None, {"n": 2}, {"n": 3}, {"n": 4}]


def test_a_returned_pop_is_a_copy():
    store = ScreenPopStore(60.0)
    ref = store.create({"caller": "138****0001"})
    store.get(ref)["caller"] = "13800000001"
    assert store.get(ref)["caller"] == "138****0001"


# ---- what a pop holds -----------------------------------------------------------------------

def test_the_pop_holds_the_flags_the_masked_caller_and_no_pin_or_card_number():
    pop = a_pop()
    assert (pop["caller"], pop["queue"], pop["reason"], pop["intent"]) == (
        "138****0001", "elderly_priority", "green_channel", "report_loss")
    assert pop["elderly"] and pop["green_channel"] and pop["verified"] and pop["call_id"] == "sip-1"
    texts = [turn["text"] for turn in pop["transcript"]]
    assert "****" in texts
    flat = repr(pop)
    for secret in ("135790", "6222", "3456 7890", "一三五七九零", "13800000001"):
        assert secret not in flat
    assert "customer_ref" not in pop and "c-7" not in flat


def test_only_the_last_turns_are_kept():
    record = CallRecord(call_id="sip-1", caller_number="")
    for n in range(20):
        record.add_caller_turn(f"turn {n}", source="asr", secure=False)
    pop = screen_pop_for({"queue": "general"}, caller="", record=record, last_turns=8)
    assert [turn["text"] for turn in pop["transcript"]] == [f"turn {n}" for n in range(12, 20)]
    assert not pop["elderly"] and not pop["green_channel"] and not pop["verified"] and pop["intent"] is None


@pytest.mark.parametrize("text,expected", [
    ("卡号 6222021234567890123", "卡号 ****"), ("1234", "1234"), ("尾号 5678 的卡", "尾号 5678 的卡"),
    ("１３５７９０", "****"), ("幺三五七九零", "****"), ("138-0000-0001", "****"),
    # what ASR writes for digits said in groups: every separator it puts between them
    ("123，456", "****"), ("123、456", "****"), ("123.456", "****"), ("123 456", "****"), ("123,456", "****"),
    ("一二三，四五六", "****"), ("两三四。五六七", "****"), ("１２３－４５６", "****"), ("幺二三·四五六", "****"),
    ("密码是123，456，好的", "密码是****，好的"), ("卡号6222、0212、3456、7890。", "卡号****。"),
    # short numbers stay: an amount, the last four digits of a card, a menu key
    ("转账500元", "转账500元"), ("12，345", "12，345"), ("尾号1234，金额500", "尾号1234，金额500"), ("按0", "按0"),
])
def test_long_digit_runs_are_masked(text, expected):
    assert mask_long_digits(text) == expected


@pytest.mark.parametrize("said", ["123，456", "123、456", "123.456", "123 456", "一二三，四五六"])
def test_a_pin_said_with_punctuation_reaches_neither_the_pop_nor_the_record(said):
    record = CallRecord(call_id="sip-1", caller_number="13800000001")
    record.add_caller_turn(f"我的密码是{said}", source="asr", secure=False)
    pop = screen_pop_for(handoff_event(), caller="13800000001", record=record)
    assert pop["transcript"][-1]["text"] == "我的密码是****"
    assert record.to_json()["transcript"][-1]["text"] == "我的密码是****"


def test_the_pop_and_the_record_mask_by_one_rule():
    import bot.call_records
    import bot.masking

    assert mask_long_digits is bot.masking.mask_long_digits
    assert bot.call_records.mask_long_digits is bot.masking.mask_long_digits


# ---- GET /agent/{ref} -----------------------------------------------------------------------

def settings_with(token: str = "") -> Settings:
    base = Settings()
    return dataclasses.replace(base, gateway=dataclasses.replace(base.gateway, console_token=token))


@pytest.fixture
def clock():
    return SteppedClock()


@pytest.fixture
def store(clock):
    return ScreenPopStore(1800.0, clock=clock)


async def agent_client(store: ScreenPopStore, token: str = "") -> TestClient:
    app = web.Application(middlewares=[json_errors_middleware])
    add_agent_routes(app, settings_with(token), store)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_the_page_shows_the_agent_the_context_escaped(store):
    ref = store.create(a_pop())
    client = await agent_client(store)
    try:
        response = await client.get(f"/agent/{ref}")
        body = await response.text()
    finally:
        await client.close()
    assert response.status == 200 and response.content_type == "text/html"
    for shown in ("138****0001", "光银岁月", "绿色通道", "report_loss", "green_channel", "我的卡丢了", "****"):
        assert shown in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body
    assert "<script" not in body and "<img" not in body
    for secret in ("135790", "6222", "13800000001", "一三五七九零"):
        assert secret not in body
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


async def test_json_for_a_client_that_asks_for_it(store):
    ref = store.create(a_pop())
    client = await agent_client(store)
    try:
        response = await client.get(f"/agent/{ref}", headers={"Accept": "application/json"})
        data = await response.json()
    finally:
        await client.close()
    assert response.status == 200
    assert data == a_pop()


async def test_unknown_expired_and_malformed_refs_are_the_same_404(store, clock):
    ref = store.create(a_pop())
    client = await agent_client(store)
    try:
        assert (await client.get(f"/agent/{ref}")).status == 200
        clock.now += 1800.0
        answers = []
        for wrong in (ref, "A" * 32, "short", "%3Cscript%3E"):
            response = await client.get(f"/agent/{wrong}")
            answers.append((response.status, await response.text()))
        json_answer = await client.get(f"/agent/{ref}", headers={"Accept": "application/json"})
        assert json_answer.status == 404 and await json_answer.json() == {"error": NOT_FOUND}
    finally:
        await client.close()
    assert answers == [(404, NOT_FOUND + "\n")] * 4


async def test_with_a_console_token_the_page_needs_it(store):
    ref = store.create(a_pop())
    token = "t" * 32
    client = await agent_client(store, token=token)
    try:
        assert (await client.get(f"/agent/{ref}")).status == 401
        assert (await client.get(f"/agent/{ref}", headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await client.get(f"/agent/{ref}", headers={"Authorization": f"Bearer {token}"})).status == 200
        assert (await client.get(f"/agent/{ref}?token={token}")).status == 200
    finally:
        await client.close()


def test_the_gateway_serves_the_agent_page_from_its_voice_loops_store():
    from bot.web.app import create_app
    from bot.web.agent import SCREEN_POP_KEY
    from bot.web.voice_loop import VOICE_LOOP_KEY

    app = create_app(Settings(), voice_runtime=object())
    assert app[SCREEN_POP_KEY] is app[VOICE_LOOP_KEY].screen_pops
    assert any(resource.canonical == "/agent/{ref}" for resource in app.router.resources())
