"""Fixtures shared by the voice-loop pipeline tests."""

from __future__ import annotations

import pytest

from tests.bot.voice_doubles import CallHarness, ScriptedRasa


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
