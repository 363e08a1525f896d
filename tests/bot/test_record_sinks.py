"""Where call records and CDRs go (bot/record_sinks.py): the sink chosen from settings, the documents made safe for
each store, and a database sink that never makes a call wait or fail when its database is not there.

Against a real PostgreSQL (records landing, the report, a restart mid-run, hostile text): test_records_db.py."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time

import pytest

from bot.call_ids import DOOR_SIP
from bot.call_records import CallRecord, CallRecordWriter
from bot.cdr import CallDetailRecord, CdrWriter, finish_call
from bot.record_sinks import (JsonlSink, close_record_sinks, postgres_document, printable_document, record_sink)
from bot.records_db import DatabaseSink, Spool, row_for, spool_backlog
from settings import Settings


@pytest.fixture(autouse=True)
def _sinks_closed():
    yield
    close_record_sinks(timeout_s=0.5)


def dead_db_url(port: int) -> str:
    return f"postgresql+psycopg://ivr:secret@127.0.0.1:{port}/records"


def settings(tmp_path, db_url: str = "") -> Settings:
    return Settings.from_env({"CALL_RECORDS_DIR": str(tmp_path / "calls"), "CALL_RECORDS_DB_URL": db_url})


def test_files_unless_a_database_is_set_and_one_sink_per_process(tmp_path, unused_tcp_port):
    files = settings(tmp_path)
    assert isinstance(record_sink(files), JsonlSink)
    assert CdrWriter.from_settings(files).sink is CallRecordWriter.from_settings(files).sink is record_sink(files)

    database = settings(tmp_path, dead_db_url(unused_tcp_port))
    sink = record_sink(database)
    assert isinstance(sink, DatabaseSink)
    assert CdrWriter.from_settings(database).sink is CallRecordWriter.from_settings(database).sink is sink
    assert sink.spool.directory == tmp_path / "calls" / "db-spool"


@pytest.mark.parametrize("url, words", [("sqlite:///records.db", "must be a PostgreSQL URL"),
                                        ("nonsense", "not a database URL")])
def test_a_records_url_that_is_not_postgres_stops_the_gateway_at_start(tmp_path, url, words):
    with pytest.raises(ValueError, match=words):
        record_sink(settings(tmp_path, url))


def test_the_rasa_venvs_url_is_read_with_psycopg_3(tmp_path, unused_tcp_port):
    sink = record_sink(settings(tmp_path, f"postgresql://ivr:x@127.0.0.1:{unused_tcp_port}/records"))
    assert sink.engine.url.drivername == "postgresql+psycopg"


def ended_record(call_id: str, text: str = "查余额") -> CallRecord:
    record = CallRecord(call_id, "13800000001")
    record.add_caller_turn(text, source="speech", secure=False)
    record.bot_replied(to_caller=True)
    record.finish("remote_hangup")
    return record


@pytest.fixture
def silent_server():
    """A port that takes connections and never says a word: a database hung, the worst case for a writer that
    waited (every connection attempt lasts the whole connect timeout)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield server.getsockname()[1]
    server.close()


async def test_a_hung_database_costs_a_call_nothing_and_loses_nothing(tmp_path, silent_server, caplog):
    sink = DatabaseSink(dead_db_url(silent_server), tmp_path / "spool", connect_timeout_s=2)
    calls, cdrs = CallRecordWriter(sink), CdrWriter(sink)
    loop = asyncio.get_running_loop()
    slowest = 0.0
    for n in range(20):
        started = loop.time()
        assert calls.write(ended_record(f"sip-{n:032x}")) is None
        finish_call(CallDetailRecord.begin(f"sip-{n:032x}", DOOR_SIP, caller="13800000001"), "remote_bye", cdrs)
        slowest = max(slowest, loop.time() - started)
        await asyncio.sleep(0.05)  # the worker is trying the database meanwhile
    assert slowest < 0.5  # a local append each: the database's 2 s connect timeout is never waited for
    assert not await asyncio.to_thread(sink.flush, 3)
    assert sink.database_down
    assert spool_backlog(sink.spool.directory) == 40
    sink.close(timeout_s=1)  # the worker may still be waiting on the database: close does not wait for it
    assert spool_backlog(sink.spool.directory) == 40  # still there for the next start
    assert "records wait in" in caplog.text and "secret" not in caplog.text


def test_a_spool_left_by_an_earlier_run_is_kept_until_the_database_takes_it(tmp_path, unused_tcp_port):
    spool = Spool(tmp_path / "spool")
    spool.append("cdr", json.dumps({"id": "a" * 32, "document": {"call_id": "sip-1"}}))
    claimed = spool.claim()
    assert [kind for kind, _ in claimed] == ["cdr"] and claimed[0][1].name.startswith("claimed-cdr-")
    sink = DatabaseSink(dead_db_url(unused_tcp_port), tmp_path / "spool")
    try:
        assert not sink.flush(timeout_s=0.5)
    finally:
        sink.close(timeout_s=5)
    assert spool_backlog(tmp_path / "spool") == 1


def test_an_append_after_one_cut_short_starts_a_new_line(tmp_path):
    """A disk-full append leaves part of a line with no newline: the next record must not be joined onto it (both
    would be one damaged line, the good record rejected with the cut one). The same for the rejected file."""
    spool = Spool(tmp_path / "spool")
    spool.directory.mkdir()
    cut = '{"id": "cut by a full di'
    (spool.directory / "pending-calls.jsonl").write_text(cut, encoding="utf-8")
    good = json.dumps({"id": "b" * 32, "document": {"call_id": "sip-2"}})
    spool.append("calls", good)
    spool.append("calls", good)
    assert (spool.directory / "pending-calls.jsonl").read_text(encoding="utf-8").split("\n") == [cut, good, good, ""]
    (spool.directory / "rejected-calls.jsonl").write_text('{"reason": "x", "li', encoding="utf-8")
    spool.reject("calls", cut, "damaged spool line")
    last = (spool.directory / "rejected-calls.jsonl").read_text(encoding="utf-8").split("\n")[1]
    assert json.loads(last) == {"reason": "damaged spool line", "line": cut}


def test_documents_are_made_safe_for_postgres_without_losing_what_the_files_keep():
    document = {"text": "a\x00b", "bytes": "Call-ID \udcff\udcfe", "lone": "x\ud800y", "nan": math.nan,
                "inf": -math.inf, "ok": 1.5, "flags": [True, None, 3], "nested": {"k\x00": ["\x00"]},
                "emoji": "👩‍👩‍👧 ‮rtl \u2028 e\u0301"}
    clean = postgres_document(document)
    assert clean["text"] == "a\\x00b" and clean["nested"] == {"k\\x00": ["\\x00"]}
    assert clean["bytes"] == "Call-ID \\xff\\xfe" and clean["lone"] == "x\\ud800y"
    assert clean["nan"] is None and clean["inf"] is None and clean["ok"] == 1.5 and clean["flags"] == [True, None, 3]
    assert clean["emoji"] == document["emoji"]
    json.dumps(clean, allow_nan=False).encode("utf-8")  # strict JSON, encodable
    assert printable_document(document)["text"] == "a\x00b"  # JSON Lines keep the NUL (as \u0000)


def test_a_call_record_with_an_undecodable_byte_still_gets_a_valid_line(tmp_path):
    """The record's line used to be cleaned after JSON encoding: a peer's undecodable byte became `\\xff` inside a
    JSON string, an invalid escape, and `make report` skipped the whole call as a damaged line."""
    record = ended_record("sip-1", text="坏字节 \udcff")
    path = CallRecordWriter(tmp_path).write(record)
    [line] = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["transcript"][0]["text"] == "坏字节 \\xff"


def test_row_columns_come_from_the_document_and_stay_short():
    record = ended_record("sip-" + "f" * 32)
    row = row_for("calls", "1" * 32, postgres_document(record.to_json()))
    assert (row["call_id"], row["door"], row["caller"], row["outcome"]) == (
        "sip-" + "f" * 32, "sip", "138****0001", "served_by_bot")
    assert row["started_at"].timestamp() == pytest.approx(record.started_at, abs=1e-3)

    cdr = CallDetailRecord.begin("x" * 5000, DOOR_SIP, caller="13800000001")
    cdr.finish("remote_bye")
    row = row_for("cdr", "2" * 32, postgres_document(cdr.to_json()))
    assert len(row["call_id"]) == 200 and row["door"] == "sip" and row["caller"] == "138****0001"
    assert row["ended_at"].timestamp() == pytest.approx(cdr.ended_at, abs=2e-3)
    assert row["document"]["call_id"] == "x" * 5000

    odd = row_for("calls", "3" * 32, {"call_id": None, "started_at": 1e300, "ended_at": "never", "outcome": 7})
    assert (odd["call_id"], odd["door"], odd["started_at"], odd["ended_at"], odd["outcome"]) == (
        None, None, None, None, "7")


def test_write_never_raises_even_when_the_spool_cannot_be_written(tmp_path, unused_tcp_port, caplog):
    blocker = tmp_path / "calls"
    blocker.write_text("a file where the records folder should be")
    sink = DatabaseSink(dead_db_url(unused_tcp_port), blocker / "db-spool")
    try:
        started = time.monotonic()
        finish_call(CallDetailRecord.begin("sip-7", DOOR_SIP), "remote_bye", CdrWriter(sink))
        assert time.monotonic() - started < 0.5
    finally:
        sink.close(timeout_s=5)
    assert "kept in memory" in caplog.text
