"""`make call` (bot/call_cli.py): how it reads the voice socket's events."""

from __future__ import annotations

from bot.call_cli import CallReport, describe


def test_a_busy_gateway_ends_the_call_with_a_line_that_says_so():
    report = CallReport()
    line = describe({"type": "busy"}, report)
    assert line is not None and line.startswith("busy:") and report.ended.is_set()
