"""Call records and CDRs in a real PostgreSQL (CALL_RECORDS_DB_URL), as every gateway of a cluster writes them.

The records land with their indexed columns, `make report` gives from the database what it gives from the files for
the same calls, a PostgreSQL restart mid-run loses nothing and reaches no call, and hostile text is stored safely.
The `stores` fixture (tests/cluster/conftest.py, registered for every folder in tests/conftest.py) is one PostgreSQL
for the session: a test that stops it starts it again in a `finally`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy

from bot.call_ids import DOOR_AUDIOSOCKET, DOOR_SIP, DOOR_WEB, new_call_id
from bot.call_records import CallRecord, CallRecordWriter
from bot.call_session import CallSession
from bot.cdr import CallDetailRecord, CdrWriter, finish_call
from bot.kpis import Period
from bot.record_sinks import JsonlSink, RecordSink, close_record_sinks, record_sink
from bot.records_db import TABLES, DatabaseSink, records_engine, spool_backlog
from bot.service_report import figures_from_database, figures_from_files, main, render
from settings import Settings, get_settings
from tests.bot.voice_doubles import CallHarness, QuietCall, ScriptedRasa

CALLER = "13812345678"


@pytest.fixture
def records_url(stores) -> str:
    """A fresh database per test, so counts are this test's own."""
    return stores.database(f"records_{uuid.uuid4().hex[:12]}", "postgresql+psycopg")


@pytest.fixture
def sink_for(tmp_path):
    made: list[RecordSink] = []

    def make(url: str, folder: str = "calls") -> DatabaseSink:
        sink = DatabaseSink(url, tmp_path / folder / DatabaseSink.SPOOL_FOLDER)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close(timeout_s=5)
    close_record_sinks(timeout_s=5)


@pytest.fixture
def postgres_restored(stores):
    """For a test that stops PostgreSQL: whatever happens, it is up again for the session's other tests."""
    yield stores
    if stores.procs["postgres"].poll() is not None:
        stores.start("postgres")
    stores.wait_ready("postgres", timeout_s=60)


def rows(url: str, kind: str) -> list[dict]:
    engine = records_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(sqlalchemy.select(TABLES[kind]))]
    finally:
        engine.dispose()


def a_day_of_calls() -> tuple[list[CallRecord], list[CallDetailRecord]]:
    """Calls of every outcome the report counts, with latencies and a green-channel transfer."""
    records, cdrs = [], []
    shapes = [("served", DOOR_SIP, [420.0, 610.0]), ("served", DOOR_WEB, [380.0]),
              ("handoff", DOOR_SIP, [500.0]), ("green", DOOR_SIP, []), ("human", DOOR_AUDIOSOCKET, [700.0]),
              ("abandoned", DOOR_SIP, []), ("served", DOOR_AUDIOSOCKET, [None, 450.0])]
    for shape, door, latencies in shapes:
        call_id = new_call_id(door)
        record = CallRecord(call_id, CALLER)
        record.add_caller_turn("查一下余额", source="speech", secure=False)
        record.add_caller_turn('/dtmf{"digits":"135790"}', source="keypad", secure=True)
        record.turn_metrics = [{"voice_to_voice_ms": ms} for ms in latencies]
        cdr = CallDetailRecord.begin(call_id, door, caller=CALLER, peer_call_id=f"{uuid.uuid4()}@pbx", codec="PCMA")
        if shape != "abandoned":
            record.add_bot_texts(["您的余额是一千元。"])
            record.bot_replied(to_caller=True)
            cdr.answered()
        if shape == "served":
            record.completed_tasks.append("check_balance")  # the balance was read: served (bot/kpis.py)
        if shape == "handoff":
            record.mark_handoff({"reason": "nlu_fallback", "queue": "general"})
        if shape in ("green", "human"):
            reason = "green_channel" if shape == "green" else "human_agent"
            record.mark_handoff({"reason": reason, "queue": "elderly_priority"})
            cdr.transfer_requested("elderly_priority", "sip:agents@pbx", green_channel=shape == "green")
            cdr.transfer_finished(True, "202 Accepted", time_to_agent_s=3.25 if shape == "green" else 8.5)
        record.finish("remote_hangup")
        records.append(record)
        cdrs.append(cdr)
    return records, cdrs


def write_all(sink: RecordSink, records: list[CallRecord], cdrs: list[CallDetailRecord]) -> None:
    calls, cdr_writer = CallRecordWriter(sink), CdrWriter(sink)
    for record in records:
        calls.write(record)
    for cdr in cdrs:
        if cdr.ended_at is None:
            finish_call(cdr, "remote_bye", cdr_writer)
        else:
            cdr_writer.write(cdr)


def test_records_and_cdrs_land_with_their_columns_and_no_more_than_the_files_hold(records_url, sink_for):
    records, cdrs = a_day_of_calls()
    sink = sink_for(records_url)
    write_all(sink, records, cdrs)
    assert sink.flush(timeout_s=30)

    stored = {row["call_id"]: row for row in rows(records_url, "calls")}
    assert set(stored) == {record.call_id for record in records}
    for record in records:
        row = stored[record.call_id]
        assert row["door"] == record.call_id.split("-")[0] and row["caller"] == "138****5678"
        assert row["outcome"] == record.outcome
        assert row["started_at"].timestamp() == pytest.approx(record.started_at, abs=1e-3)
        assert row["ended_at"].timestamp() == pytest.approx(record.ended_at, abs=1e-3)
        assert row["document"] == json.loads(json.dumps(record.to_json()))  # the whole document, as the files hold
    cdr_rows = {row["call_id"]: row for row in rows(records_url, "cdr")}
    assert set(cdr_rows) == {cdr.call_id for cdr in cdrs}
    for cdr in cdrs:
        row = cdr_rows[cdr.call_id]
        assert (row["door"], row["caller"], row["outcome"]) == (cdr.door, "138****5678", cdr.outcome)
        assert row["ended_at"].timestamp() == pytest.approx(cdr.ended_at, abs=2e-3)

    engine = records_engine(records_url)
    try:
        with engine.connect() as conn:
            everything = conn.execute(sqlalchemy.text(
                "SELECT string_agg(t::text, '') FROM (SELECT * FROM call_records UNION ALL "
                "SELECT * FROM call_detail_records) t")).scalar_one()
            indexes = set(conn.execute(sqlalchemy.text(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'call_records'")).scalars())
    finally:
        engine.dispose()
    assert CALLER not in everything and "135790" not in everything  # masked number, masked PIN, as in the files
    assert {f"ix_call_records_{column}" for column in ("call_id", "door_started_at", "started_at", "ended_at",
                                                       "caller", "outcome")} <= indexes


def test_the_report_gives_the_same_figures_from_the_database_as_from_the_files(
        records_url, sink_for, tmp_path, monkeypatch, capsys):
    records, cdrs = a_day_of_calls()
    write_all(JsonlSink(tmp_path / "files"), records, cdrs)
    sink = sink_for(records_url)
    write_all(sink, records, cdrs)
    assert sink.flush(timeout_s=30)

    period, now = Period(time.time() - 3600, time.time() + 60), time.time()
    from_files = figures_from_files(tmp_path / "files", period, now=now)
    from_db = figures_from_database(records_url, period, now=now)
    assert from_db is not None
    assert (from_db.calls, from_db.abandoned, from_db.served_by_bot, from_db.handoffs, from_db.attempted) == \
        (7, 1, 3, 3, 5)
    assert from_db.voice_to_voice_ms == from_files.voice_to_voice_ms and from_db.voice_to_voice_ms.n == 6
    assert from_db.green_channel == from_files.green_channel  # the CDR's time to agent: the record has none
    assert from_db.green_channel.reached_agent.percentiles == {"p50": 3.25, "p90": 3.25}
    assert render(from_db) == render(from_files)

    assert main(["--dir", str(tmp_path / "files")]) == 0
    files_out = capsys.readouterr().out
    # `make report` as a cluster runs it: CALL_RECORDS_DB_URL in the environment, no arguments
    monkeypatch.setenv("CALL_RECORDS_DB_URL", records_url)
    monkeypatch.setenv("CALL_RECORDS_DIR", str(tmp_path / "nothing-here"))
    get_settings.cache_clear()
    try:
        assert main([]) == 0
    finally:
        get_settings.cache_clear()
    # the same but for the period's first line (each run's default period ends at its own now)
    assert capsys.readouterr().out.splitlines()[1:] == files_out.splitlines()[1:]
    assert "智能服务占比 (bot service share): 50.0%" in files_out


def test_the_report_on_an_empty_or_dead_database_says_so(stores, unused_tcp_port, capsys):
    empty = stores.database(f"records_{uuid.uuid4().hex[:12]}", "postgresql+psycopg")
    assert main(["--db", empty]) == 1
    assert "no call records yet" in capsys.readouterr().err
    assert main(["--db", f"postgresql://ivr:secret@127.0.0.1:{unused_tcp_port}/records"]) == 1
    err = capsys.readouterr().err
    assert "cannot read the call records database" in err and "secret" not in err


async def test_postgres_restarting_mid_run_loses_no_record_and_reaches_no_call(
        records_url, sink_for, postgres_restored, caplog, tmp_path):
    stores = postgres_restored
    sink = sink_for(records_url)
    cdr_writer, call_writer = CdrWriter(sink), CallRecordWriter(sink)
    loop = asyncio.get_running_loop()

    async def a_call(n: int) -> str:
        session = CallSession(QuietCall, DOOR_SIP, caller=CALLER, cdr_writer=cdr_writer)
        assert await session.start(on_audio=lambda pcm: None, on_clear=lambda: None)
        record = CallRecord(session.id, CALLER)
        record.add_caller_turn(f"第{n}通电话", source="speech", secure=False)
        record.finish("remote_hangup")
        started = loop.time()
        call_writer.write(record)
        await session.stop("remote_bye")
        assert loop.time() - started < 0.5  # the call's end never waits for the database
        return session.id

    async def a_voice_loop_call() -> str:
        """A whole call through the real per-call pipeline (scripted Rasa, espeak), hung up by the caller."""
        rasa = ScriptedRasa(replies={"/call_start": [{"text": "您好。"}]})
        await rasa.start()
        harness = CallHarness.create(rasa, script=[], tmp_path=tmp_path)
        harness.runtime.record_writer = call_writer
        try:
            await harness.call.start()
            await harness.wait_until_quiet()
            await harness.call.stop("remote_hangup")  # the record is written here
        finally:
            await harness.close()
            await rasa.stop()
        return harness.call.info.call_id

    before = [await a_call(n) for n in range(3)]
    assert sink.flush(timeout_s=30)
    with caplog.at_level(logging.WARNING, logger="bot.records_db"):
        stores.stop("postgres", sig=signal.SIGINT)  # a fast shutdown, as restarts do
        during = [await a_call(n) for n in range(3, 13)]
        voice_loop_call = await a_voice_loop_call()
        await asyncio.sleep(1.0)  # the worker meets the dead database meanwhile
        assert not sink.flush(timeout_s=1)
        assert spool_backlog(sink.spool.directory) >= 21
        stores.start("postgres")
        stores.wait_ready("postgres", timeout_s=60)
        after = [await a_call(n) for n in range(13, 16)]
        assert await asyncio.to_thread(sink.flush, 60)
    assert "records wait in" in caplog.text and "database back" in caplog.text

    every_call = sorted(before + during + after)
    calls = sorted(row["call_id"] for row in rows(records_url, "calls"))
    assert calls == sorted(every_call + [voice_loop_call])  # each once: nothing lost, nothing twice
    [voice_loop_row] = [row for row in rows(records_url, "calls") if row["call_id"] == voice_loop_call]
    assert voice_loop_row["document"]["transcript"][0]["text"] == "您好。"
    assert sorted(row["call_id"] for row in rows(records_url, "cdr")) == every_call
    assert spool_backlog(sink.spool.directory) == 0
    assert not list(sink.spool.directory.glob("rejected-*"))


def test_a_spool_left_by_a_stopped_gateway_is_sent_at_its_next_start(records_url, sink_for, tmp_path):
    dead = f"postgresql+psycopg://ivr:x@127.0.0.1:1/records"
    first = DatabaseSink(dead, tmp_path / "gw" / DatabaseSink.SPOOL_FOLDER)
    records, cdrs = a_day_of_calls()
    write_all(first, records, cdrs)
    first.close(timeout_s=5)
    assert spool_backlog(tmp_path / "gw" / DatabaseSink.SPOOL_FOLDER) == 14

    second = sink_for(records_url, folder="gw")
    assert second.flush(timeout_s=30)
    assert len(rows(records_url, "calls")) == 7 and len(rows(records_url, "cdr")) == 7


def test_a_damaged_or_refused_spool_line_is_set_aside_and_the_rest_is_stored(records_url, sink_for, tmp_path):
    """A line cut by a crash, and one the database refuses (an id longer than the column): each lands in
    rejected-<kind>.jsonl with its reason, once, and the lines around them are stored."""
    spool_dir = tmp_path / "calls" / DatabaseSink.SPOOL_FOLDER
    spool_dir.mkdir(parents=True)
    good = [CallRecord(new_call_id(DOOR_SIP), CALLER) for _ in range(2)]
    for record in good:
        record.finish("remote_hangup")
    lines = [json.dumps({"id": uuid.uuid4().hex, "document": good[0].to_json()}),
             json.dumps({"id": "x" * 40, "document": {"call_id": "sip-refused"}}),
             '{"id": "cut by a cra',
             json.dumps({"id": uuid.uuid4().hex, "document": good[1].to_json()})]
    (spool_dir / "pending-calls.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    sink = sink_for(records_url)
    assert sink.flush(timeout_s=30)
    assert sorted(row["call_id"] for row in rows(records_url, "calls")) == sorted(r.call_id for r in good)
    rejected = {entry["line"]: entry["reason"] for entry in map(
        json.loads, (spool_dir / "rejected-calls.jsonl").read_text().splitlines())}
    assert set(rejected) == set(lines[1:3])
    assert "DataError: value too long" in rejected[lines[1]]
    assert rejected[lines[2]].startswith("damaged spool line")
    assert spool_backlog(spool_dir) == 0


def test_a_record_spooled_after_an_append_cut_short_is_stored_and_only_the_cut_line_rejected(
        records_url, sink_for, tmp_path):
    """The disk filled mid-append: the spool ends in part of a line, no newline. The next record, spooled once
    there is room again, lands in the database; only the cut line goes to rejected-calls.jsonl."""
    spool_dir = tmp_path / "calls" / DatabaseSink.SPOOL_FOLDER
    spool_dir.mkdir(parents=True)
    cut = '{"id": "' + uuid.uuid4().hex + '", "document": {"call_id": "sip-cut", "transcr'
    (spool_dir / "pending-calls.jsonl").write_text(cut, encoding="utf-8")
    record = CallRecord(new_call_id(DOOR_SIP), CALLER)
    record.finish("remote_hangup")
    dead = DatabaseSink("postgresql+psycopg://ivr:x@127.0.0.1:1/records", spool_dir)
    CallRecordWriter(dead).write(record)
    dead.close(timeout_s=5)

    sink = sink_for(records_url)
    assert sink.flush(timeout_s=30)
    assert [row["call_id"] for row in rows(records_url, "calls")] == [record.call_id]
    [rejected] = map(json.loads, (spool_dir / "rejected-calls.jsonl").read_text().splitlines())
    assert rejected["line"] == cut and rejected["reason"].startswith("damaged spool line")
    assert spool_backlog(spool_dir) == 0


def test_two_gateways_writing_at_once_create_the_tables_once_and_keep_every_record(records_url, sink_for):
    sinks = [sink_for(records_url, folder=f"gateway{n}") for n in range(2)]
    written: list[str] = []

    def gateway(sink: DatabaseSink) -> None:
        for _ in range(50):
            record = CallRecord(new_call_id(DOOR_SIP), CALLER)
            record.finish("remote_hangup")
            written.append(record.call_id)
            CallRecordWriter(sink).write(record)

    threads = [threading.Thread(target=gateway, args=(sink,)) for sink in sinks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(sink.flush(timeout_s=30) for sink in sinks)
    assert sorted(row["call_id"] for row in rows(records_url, "calls")) == sorted(written)


def test_hostile_text_is_stored_safely(records_url, sink_for, tmp_path):
    huge = "我要查余额" * 400_000  # 2 million characters, ~6 MB of UTF-8
    odd = "\x00NUL \udcff\udcfe bytes \ud800 lone 👩‍👩‍👧 ‮RTL \u2028 e\u0301 \ufeff \U0010ffff"
    record = CallRecord(new_call_id(DOOR_SIP), "1380000\x000001")
    record.add_caller_turn(huge, source="speech", secure=False)
    record.add_caller_turn(odd, source="speech", secure=False)
    record.add_bot_texts([odd])
    record.mark_handoff({"reason": "nlu\x00fallback", "queue": odd})
    record.finish("remote_hangup\x00")
    cdr = CallDetailRecord.begin("sip-" + "\x00" * 3000, DOOR_SIP, caller="\x00" * 20,
                                 peer_call_id="\udcff\x00" + "x" * 10_000)
    cdr.transfer_finished(False, odd)

    sink = sink_for(records_url)
    write_all(sink, [record], [cdr])
    write_all(JsonlSink(tmp_path / "files"), [record], [cdr])
    assert sink.flush(timeout_s=60)
    assert not list(sink.spool.directory.glob("rejected-*"))

    [row] = rows(records_url, "calls")
    transcript = row["document"]["transcript"]
    assert transcript[0]["text"] == huge
    # with another lone surrogate beside them, undecodable bytes read \\udcNN (bot/record_sinks.printable_text)
    assert transcript[1]["text"] == "\\x00NUL \\udcff\\udcfe bytes \\ud800" + odd[odd.index(" lone"):]
    assert row["document"]["handoff_reason"] == "nlu\\x00fallback" and row["outcome"] == "handoff"
    assert row["caller"] == row["document"]["caller_number"] and "0001" in row["caller"]
    [cdr_row] = rows(records_url, "cdr")
    assert len(cdr_row["call_id"]) == 200 and len(cdr_row["document"]["call_id"]) > 3000
    assert cdr_row["document"]["peer_call_id"].startswith("\\xff\\x00x")
    assert cdr_row["document"]["transfer_detail"] == transcript[1]["text"]
    # the files keep the same calls, every line valid JSON
    for path in Path(tmp_path / "files").glob("*.jsonl"):
        [line] = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
        json.loads(line)


def test_the_gateway_picks_the_database_from_settings(records_url, tmp_path):
    settings = Settings.from_env({"CALL_RECORDS_DB_URL": records_url, "CALL_RECORDS_DIR": str(tmp_path / "calls")})
    try:
        writer = CdrWriter.from_settings(settings)
        assert isinstance(writer.sink, DatabaseSink) and writer.sink is record_sink(settings)
        finish_call(CallDetailRecord.begin(new_call_id(DOOR_SIP), DOOR_SIP, caller=CALLER), "remote_bye", writer)
        assert writer.sink.flush(timeout_s=30)
    finally:
        close_record_sinks(timeout_s=5)
    assert len(rows(records_url, "cdr")) == 1
    assert not list((tmp_path / "calls").glob("cdr-*.jsonl"))  # the database instead of the files, not as well
