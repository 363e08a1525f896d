"""The logging convention shared by the gateway and the action server (call_logging.py): call ids as a log line
may show them. How lines get their call is tested per process: tests/bot/test_call_log.py (the gateway) and
tests/actions/test_action_server_logs.py (the action server)."""

from __future__ import annotations

import logging

from call_logging import MAX_CALL_ID_CHARS, UNKNOWN_CALL, CallIdFilter, call_context, call_logger, safe_call_id


def test_an_id_is_printable_without_spaces_and_cut():
    assert safe_call_id("sip-5f0c9a1e") == "sip-5f0c9a1e"
    assert len(safe_call_id("9" * 100_000)) == MAX_CALL_ID_CHARS
    assert safe_call_id("a b\u2028c\x00\n") == "a?b?c??"
    assert safe_call_id("") == UNKNOWN_CALL
    assert safe_call_id(None) == UNKNOWN_CALL


def test_a_peer_chosen_id_cannot_break_a_line(caplog):
    forged = "x\n2026-11-29 09:00:00 ERROR fake line"
    handler_filter = CallIdFilter()
    with caplog.at_level(logging.INFO, logger="call.test"):
        call_logger(logging.getLogger("call.test"), forged).info("answered")
        with call_context(forged):
            record = logging.getLogger("call.test").makeRecord("call.test", logging.INFO, __file__, 1, "ok", (), None)
            handler_filter.filter(record)
    assert "\n" not in caplog.records[0].getMessage()
    assert caplog.records[0].getMessage().startswith("call=x?2026-11-29?09:00:00?ERROR")
    assert record.getMessage() == f"call={safe_call_id(forged)} ok"


def test_an_adapter_made_directly_writes_its_id_safely(caplog):
    from call_logging import CallLoggerAdapter

    with caplog.at_level(logging.INFO, logger="call.test"):
        CallLoggerAdapter(logging.getLogger("call.test"), {"call_id": "a\nERROR forged: line"}).info("hello")
    assert caplog.records[0].getMessage() == "call=a?ERROR?forged:?line hello"
