"""The /trainer page in headless Chromium: its script labels a turn by the JSON API (CSP `script-src 'self'`) and
shows the answer, including a refusal."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.web.app import json_errors_middleware
from bot.web.trainer import add_trainer_routes
from tests.bot.browser import chromium_page
from tests.bot.test_web_trainer import SAID, key, setup  # noqa: F401 - `setup` is a fixture


@pytest.fixture
async def trainer_url(setup):  # noqa: F811
    settings, project = setup
    app = web.Application(middlewares=[json_errors_middleware])
    add_trainer_routes(app, dataclasses.replace(settings))
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url("/trainer")), project
    await server.close()


async def test_a_trainer_labels_a_turn_in_the_browser(trainer_url):
    url, project = trainer_url
    errors: list[str] = []
    async with chromium_page() as page:
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        await page.goto(url)
        row = page.locator(f"tr[data-key='{key(1)}']")
        await row.locator("select").select_option("check_balance")
        await row.locator("button.label").click()
        await row.locator(".result >> text=added: check_balance").wait_for()
        refused = page.locator(f"tr[data-key='{key(3)}']")  # a line of the (test's) external evaluation set
        await refused.locator("button.oos").click()
        await refused.locator(".result.error >> text=external evaluation set").wait_for()
    data = yaml.safe_load((project / "data" / "nlu" / "review.yml").read_text(encoding="utf-8"))
    assert data["nlu"] == [{"intent": "check_balance", "examples": f"- {SAID}\n"}]
    assert not [e for e in errors if "Content Security Policy" in e]
