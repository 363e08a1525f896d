"""Call detail records: masking, outcomes, the JSON line, one line per call, and no crash on a bad directory."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from bot.cdr import CallDetailRecord, CdrWriter, finish_call, handoff_is_green_channel
from bot.door_metrics import DOOR_SIP


def lines(directory: Path) -> list[dict]:
    return [json.loads(line) for path in directory.glob("cdr-*.jsonl") for line in path.read_text().splitlines()]


def active_sip_calls() -> float:
    return REGISTRY.get_sample_value("ivr_telephony_active_calls", {"door": DOOR_SIP}) or 0.0


def test_a_transferred_call_is_one_json_line_with_everything_the_operator_needs(tmp_path):
    record = CallDetailRecord.begin("sip-7", DOOR_SIP, caller="13812345678", peer_call_id="abc@pbx", codec="PCMA")
    record.answered()
    record.transfer_requested("elderly_priority", "sip:elderly@pbx", green_channel=True)
    record.transfer_finished(True, "200 OK", time_to_agent_s=3.21456)
    record.media(packets_in=500, packets_out=480, packets_lost=3, jitter_ms=1.5)
    finish_call(record, "transferred", CdrWriter(tmp_path))
    [cdr] = lines(tmp_path)
    assert cdr["caller"] == "138****5678"
    assert (cdr["call_id"], cdr["door"], cdr["peer_call_id"], cdr["codec"]) == ("sip-7", "sip", "abc@pbx", "PCMA")
    assert (cdr["cause"], cdr["outcome"]) == ("transferred", "transferred")
    assert (cdr["packets_in"], cdr["packets_out"], cdr["packets_lost"], cdr["jitter_ms"]) == (500, 480, 3, 1.5)
    assert (cdr["transfer_queue"], cdr["transfer_uri"], cdr["transfer_result"]) == ("elderly_priority",
                                                                                  "sip:elderly@pbx", "ok")
    assert cdr["green_channel"] is True and cdr["time_to_agent_s"] == 3.215
    assert cdr["started_at"].endswith("Z") and cdr["started_at"] <= cdr["answered_at"] <= cdr["ended_at"]
    assert cdr["duration_s"] >= 0
    assert "13812345678" not in next(tmp_path.glob("cdr-*.jsonl")).read_text()


@pytest.mark.parametrize("answered,cause,expected", [
    (False, "cancelled", "cancelled"),
    (False, "rejected 503", "rejected"),
    (True, "remote_bye", "completed"),
    (True, "bot_hangup", "completed"),
    (True, "media_timeout", "failed"),
    (True, "internal_error", "failed"),
])
def test_the_outcome_follows_from_how_far_the_call_got(answered, cause, expected):
    record = CallDetailRecord.begin("c", DOOR_SIP)
    if answered:
        record.answered()
    finish_call(record, cause, None)
    assert record.outcome == expected


def test_a_failed_transfer_has_no_time_to_agent():
    record = CallDetailRecord.begin("c", DOOR_SIP)
    record.answered()
    record.transfer_finished(False, "REFER rejected: 603 Decline", time_to_agent_s=2.0)
    finish_call(record, "bot_hangup", None)
    assert (record.transfer_result, record.time_to_agent_s, record.outcome) == ("failed", None, "completed")


@pytest.mark.parametrize("number,masked", [
    ("13800000001", "138****0001"), ("+8613800000001", "+86*******0001"), ("02512345678", "025****5678"),
    ("95588", "*****"), ("1234", "****"), ("", ""),
])
def test_caller_numbers_keep_at_most_the_first_three_and_last_four_digits(number, masked):
    record = CallDetailRecord.begin("c", DOOR_SIP, caller=number)
    finish_call(record, "remote_bye", None)
    assert record.to_json()["caller"] == masked


def test_finishing_twice_writes_one_line_and_counts_one_call(tmp_path):
    before = active_sip_calls()
    record = CallDetailRecord.begin("c", DOOR_SIP)
    assert active_sip_calls() == before + 1
    writer = CdrWriter(tmp_path)
    finish_call(record, "remote_bye", writer)
    finish_call(record, "bridge_closed", writer)
    assert [cdr["cause"] for cdr in lines(tmp_path)] == ["remote_bye"]
    assert active_sip_calls() == before


def test_an_unwritable_directory_is_logged_not_raised(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the records directory should be")
    record = CallDetailRecord.begin("sip-9", DOOR_SIP)
    with caplog.at_level(logging.ERROR, logger="bot.cdr"):
        finish_call(record, "remote_bye", CdrWriter(blocker / "calls"))
    assert record.ended_at is not None
    assert any(r.getMessage().startswith("call=sip-9 CDR not written") for r in caplog.records)


def test_records_go_to_one_file_per_utc_day(tmp_path):
    writer = CdrWriter(tmp_path)
    assert writer.path_for(0.0).name == "cdr-19700101.jsonl"
    assert writer.path_for(86_400.0 * 365).name == "cdr-19710101.jsonl"


@pytest.mark.parametrize("event,green", [
    ({"reason": "green_channel", "context": {}}, True),
    ({"reason": "human_agent", "context": {"green_channel": True}}, True),
    ({"reason": "human_agent", "context": {"green_channel": False}}, False),
    ({"reason": "human_agent", "context": "garbage"}, False),
    ({}, False),
])
def test_green_channel_handoffs_are_recognised(event, green):
    assert handoff_is_green_channel(event) is green


def test_a_call_id_with_undecodable_bytes_still_gets_its_line(tmp_path):
    """A peer's Call-ID is bytes; the SIP parser keeps non-UTF-8 ones as surrogate escapes. Writing such a record
    used to raise UnicodeEncodeError and lose the line."""
    from telephony.sip.message import parse_message

    invite = parse_message(b"OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\nCall-ID: \xff\xfe-abc@\xc3pbx\r\n"
                           b"Content-Length: 0\r\n\r\n")
    record = CallDetailRecord.begin("sip-8", DOOR_SIP, caller="13812345678", peer_call_id=invite.call_id)
    record.transfer_finished(False, "refused: odd \ud800 text")
    finish_call(record, "remote_bye", CdrWriter(tmp_path))
    [cdr] = lines(tmp_path)
    assert cdr["call_id"] == "sip-8" and cdr["peer_call_id"] == "\\xff\\xfe-abc@\\xc3pbx"
    assert cdr["transfer_detail"] == "refused: odd \\ud800 text"
