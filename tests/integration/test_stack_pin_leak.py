"""After every other integration test: no seeded PIN anywhere in the stack's logs, databases or call records."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import PINS

pytestmark = [pytest.mark.integration, pytest.mark.after_conversations]


def stack_files(workdir: Path) -> list[Path]:
    return [path for path in workdir.rglob("*") if path.is_file() and path.suffix != ".png"]


def test_no_pin_in_logs_or_databases(stack):
    files = stack_files(stack.workdir)
    names = {path.name for path in files}
    assert {"tracker.db", "bank.db", "rasa.log", "actions.log", "gateway.log"} <= names, names
    # The scan can find what callers said: the tracker stores their (non-secret) words.
    tracker_bytes = b"".join(p.read_bytes() for p in files if p.name.startswith("tracker.db"))
    assert b"call_start" in tracker_bytes
    leaks = [f"{path.relative_to(stack.workdir)} contains {pin}"
             for path in files for pin in PINS if pin.encode() in path.read_bytes()]
    assert leaks == []
