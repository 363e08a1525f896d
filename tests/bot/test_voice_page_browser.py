"""The voice page in headless Chromium with a fake microphone playing a caller WAV: the page's AudioWorklet
capture, the WebSocket and the live transcript / timings display, against the real voice loop."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.bot.browser import CHROMIUM, CHROMIUM_ARGS
from tests.bot.test_voice_page import gateway, rasa, write_wav  # noqa: F401 (fixtures)
from tests.bot.voice_doubles import espeak_pcm

FAKE_MIC_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 "--autoplay-policy=no-user-gesture-required"]


@contextlib.asynccontextmanager
async def page_with_microphone(wav: Path):
    if not CHROMIUM.exists():
        pytest.skip(f"Debian chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS + FAKE_MIC_ARGS + [f"--use-file-for-fake-audio-capture={wav}"])
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


async def test_talking_into_the_page_shows_transcript_reply_and_timings(gateway, tmp_path):  # noqa: F811
    # Chromium loops the file: two seconds of silence first, so the caller speaks after the greeting.
    speech = espeak_pcm("我要查余额", tmp_path / "q16.raw", rate=16000)
    wav = write_wav(tmp_path / "mic.wav", b"\x00\x00" * 32000 + speech + b"\x00\x00" * 64000, 16000)
    async with page_with_microphone(wav) as page:
        await page.goto(f"{gateway}/voice")
        await page.click("#call")
        await page.wait_for_function("document.querySelector('#status').textContent.startsWith('in call')",
                                     timeout=10_000)
        await page.wait_for_function("document.querySelector('#log').textContent.includes('您的余额是一百元')",
                                     timeout=20_000)
        log = await page.text_content("#log")
        assert "您好，请讲。" in log and "我要查余额" in log
        await page.wait_for_selector("#timings tbody tr", timeout=10_000)
        cells = await page.locator("#timings tbody tr").first.locator("td").all_text_contents()
        assert cells[4] != "–" and int(cells[4]) > 0  # voice-to-voice measured
        await page.click("#hangup")
