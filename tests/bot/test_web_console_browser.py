"""The /console page in headless Chromium against a scripted Rasa: call, chat, keypad, secure PIN, debug panel."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from bot.web.app import create_app
from settings import Settings
from tests.bot.browser import chromium_page
from tests.bot.fake_rasa import TOKEN, FakeRasa

SCREENSHOT_DIR = Path(os.environ.get("CONSOLE_SCREENSHOT_DIR", "/tmp"))


@pytest.fixture
async def console_url(tmp_path):
    fake = FakeRasa()
    rasa = TestServer(fake.app())
    await rasa.start_server()
    settings = Settings.from_env({"RASA_URL": str(rasa.make_url("")).rstrip("/"), "RASA_TOKEN": TOKEN,
                                  "CALL_RECORDS_DIR": str(tmp_path / "calls")})
    gateway = TestServer(create_app(settings))
    await gateway.start_server()
    yield str(gateway.make_url("/console")), fake
    await gateway.close()
    await rasa.close()


async def test_console_call_chat_keypad_and_debug_panel(console_url):
    url, fake = console_url
    async with chromium_page() as page:
        await page.goto(url)
        await page.click(".quick-caller[data-number='13800000002']")
        assert await page.input_value("#caller") == "13800000002"
        await page.click("#new-call")
        await page.wait_for_selector(".turn.bot >> text=欢迎致电")
        assert fake.received[0]["metadata"] == {"caller_number": "13800000002", "channel": "text"}
        assert "speech_rate 0.8" in await page.inner_text("#transcript")

        await page.fill("#message", "我要挂失")
        await page.press("#message", "Enter")
        await page.wait_for_selector(".turn.caller >> text=我要挂失")
        await page.wait_for_selector("#debug summary >> text=report_card_loss")

        for key in "1234#":
            await page.click(f".key[data-key='{key}']")
        await page.wait_for_selector(".turn.bot >> text=请输入六位电话银行密码")
        assert fake.received[-1]["message"] == '/dtmf{"digits":"1234"}'
        # The bot now expects a PIN: the field is masked and the keypad display shows dots.
        assert await page.get_attribute("#message", "type") == "password"
        assert await page.is_visible("#secure-hint")
        for key in "135790":
            await page.click(f".key[data-key='{key}']")
        assert await page.inner_text("#keypad-buffer") == "••••••"
        await page.click(".key[data-key='#']")
        await page.wait_for_selector(".turn.bot >> text=余额为52340.50元")
        assert fake.received[-1]["message"] == '/dtmf{"digits":"135790"}'

        transcript = await page.inner_text("#transcript")
        debug = await page.inner_text("#debug")
        assert "135790" not in transcript and "••••••" in transcript
        assert "confidence" in debug and "caller_number" in debug and "entities" in debug
        assert await page.locator("#debug details").count() == 4
        await page.screenshot(path=str(SCREENSHOT_DIR / "console_fake_rasa.png"), full_page=True)
        assert await page.is_hidden("#error")


async def test_console_shows_a_clear_error_when_rasa_is_down(unused_tcp_port, tmp_path):
    settings = Settings.from_env({"RASA_URL": f"http://127.0.0.1:{unused_tcp_port}", "RASA_TIMEOUT_S": "1",
                                  "CALL_RECORDS_DIR": str(tmp_path / "calls")})
    gateway = TestServer(create_app(settings))
    await gateway.start_server()
    try:
        async with chromium_page() as page:
            await page.goto(str(gateway.make_url("/console")))
            await page.click("#new-call")
            await page.wait_for_selector("#error:not([hidden])")
            error = await page.inner_text("#error")
            await page.click(".key[data-key='#']")
            assert "Start a call first" in await page.inner_text("#error")
    finally:
        await gateway.close()
    assert "Rasa" in error and "Traceback" not in error


async def test_console_behind_a_token_works_once_opened_with_it(unused_tcp_port, tmp_path):
    """CONSOLE_TOKEN set: the page opened with ?token= drops it from the address bar, and its fetches carry the
    session cookie (the API refuses them otherwise); a page opened without it says how to get in."""
    fake = FakeRasa()
    rasa = TestServer(fake.app())
    await rasa.start_server()
    token = "browser-test-console-token-0123456789"
    settings = Settings.from_env({"RASA_URL": str(rasa.make_url("")).rstrip("/"), "RASA_TOKEN": TOKEN,
                                  "CONSOLE_TOKEN": token, "CALL_RECORDS_DIR": str(tmp_path / "calls")})
    gateway = TestServer(create_app(settings))
    await gateway.start_server()
    try:
        async with chromium_page() as page:
            refused = await page.goto(str(gateway.make_url("/console")))
            assert refused.status == 401 and "token" in await page.inner_text("body")
            await page.goto(str(gateway.make_url(f"/console?token={token}")))
            assert page.url.endswith("/console")
            await page.click("#new-call")
            await page.wait_for_selector(".turn.bot >> text=王先生您好")
            await page.fill("#message", "我要挂失")
            await page.press("#message", "Enter")
            await page.wait_for_selector("#debug summary >> text=report_card_loss")
            assert await page.is_hidden("#error")
    finally:
        await gateway.close()
        await rasa.close()
    assert [p["message"] for p in fake.received] == ["/call_start", "我要挂失"]
