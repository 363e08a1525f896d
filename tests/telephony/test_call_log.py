"""The per-call logger: `call=<id>` on every line and `record.call_id` for structured handlers."""

from __future__ import annotations

import logging

from telephony.call_log import call_logger


def test_every_line_names_the_call(caplog):
    log = call_logger(logging.getLogger("telephony.test"), "sip-42")
    with caplog.at_level(logging.DEBUG, logger="telephony.test"):
        log.info("answered (%s)", "PCMU")
        log.debug("dtmf key received (%s)", "sip info")
        log.warning("extra survives", extra={"peer": "pbx"})
    assert [r.getMessage() for r in caplog.records] == [
        "call=sip-42 answered (PCMU)", "call=sip-42 dtmf key received (sip info)", "call=sip-42 extra survives"]
    assert {r.call_id for r in caplog.records} == {"sip-42"}
    assert caplog.records[-1].peer == "pbx"


def test_a_call_without_an_id_yet_is_marked_unknown(caplog):
    with caplog.at_level(logging.INFO, logger="telephony.test"):
        call_logger(logging.getLogger("telephony.test"), None).info("stream opened")
    assert caplog.records[0].getMessage() == "call=- stream opened"
