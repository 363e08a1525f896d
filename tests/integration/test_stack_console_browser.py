"""The console in headless Chromium against the real stack: call, greeting, text, keypad, debug panel."""

from __future__ import annotations

import pytest

from tests.bot.browser import chromium_page

pytestmark = pytest.mark.integration


async def test_console_against_the_real_stack(stack):
    async with chromium_page() as page:
        await page.goto(f"{stack.gateway_url}/console")
        await page.click(".quick-caller[data-number='13800000001']")
        await page.click("#new-call")
        await page.wait_for_selector(".turn.bot >> text=王先生", timeout=30_000)

        await page.fill("#message", "我要查余额")
        await page.press("#message", "Enter")
        await page.wait_for_function("document.querySelectorAll('.turn.bot').length >= 2", timeout=30_000)
        for key in "1234#":
            await page.click(f".key[data-key='{key}']")
        await page.wait_for_function("document.querySelectorAll('.turn.bot').length >= 3", timeout=30_000)

        latest = await page.inner_text("#debug details[open]")
        assert "intent" in latest and "caller_number" in latest
        summaries = await page.locator("#debug summary").all_inner_texts()
        assert any("check_balance" in s for s in summaries), summaries
        assert await page.is_hidden("#error")
        await page.screenshot(path=str(stack.workdir / "console_real_stack.png"), full_page=True)
