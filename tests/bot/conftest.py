"""Fixtures shared by the voice-loop pipeline tests."""

from __future__ import annotations

import logging
import sys

import pytest
from loguru import logger as loguru_logger

from bot.call_log import CallIdFilter, route_loguru_to_logging
from tests.bot.voice_doubles import CallHarness, ScriptedRasa


class _LineCollector(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines():
    """Every line the process logs during the test, at DEBUG (the most the gateway ever logs), as the gateway's
    handler sees it (bot/call_log.py): stdlib and pipecat's loguru alike, `call=<id>` on each."""
    lines: list[str] = []
    handler = _LineCollector(lines)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(CallIdFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    sink = route_loguru_to_logging("DEBUG")
    yield lines
    loguru_logger.remove(sink)
    loguru_logger.add(sys.stderr)  # pipecat's own default
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
async def make_call(tmp_path):
    """Builds call harnesses on a scripted Rasa and closes every one of them at the end of the test."""
    harnesses: list[CallHarness] = []

    def _make(rasa: ScriptedRasa, **kwargs) -> CallHarness:
        harness = CallHarness.create(rasa, tmp_path=tmp_path, **kwargs)
        harnesses.append(harness)
        return harness

    yield _make
    for harness in harnesses:
        await harness.close()
