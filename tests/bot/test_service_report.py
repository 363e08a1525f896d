"""`make report`: the KPIs as text from a folder of call records, with bot/kpis.py's definitions."""

import json
import time

from bot.kpi_sources import read_jsonl
from bot.kpis import Period
from bot.service_report import figures_from_files, main, render

NOW = time.time()
START = NOW - 3600


def _write(path, records, damaged_line=False):
    lines = [json.dumps(record, ensure_ascii=False) for record in records]
    if damaged_line:
        lines.append('{"outcome": "served_by')  # a line cut by a crash
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _call(n, outcome, **fields):
    return {"call_id": f"sip-{n}", "started_at": START + n, "ended_at": START + n + 30, "outcome": outcome,
            "channel": "sip", "caller_key": f"k{n}", **fields}


CALLS = [
    _call(1, "served_by_bot", completed_tasks=["check_balance"],
          turn_metrics=[{"voice_to_voice_ms": 400.0}, {"voice_to_voice_ms": 600.0}]),
    _call(2, "served_by_bot", turn_metrics=[{"voice_to_voice_ms": None}],
          bot_hangup="goodbye"),  # said goodbye, nothing done: served by the bot, not resolved
    _call(3, "handoff", handoff_reason="green_channel", turn_metrics=[]),
    _call(4, "handoff", handoff_reason="nlu_fallback"),
    _call(5, "abandoned"),
    _call(6, "served_by_bot", channel="console", completed_tasks=["check_balance"]),  # left out by default
]
CDRS = [
    {"call_id": "sip-3", "green_channel": True, "time_to_agent_s": 3.5},
    {"call_id": "sip-4", "green_channel": False, "time_to_agent_s": 9.0},
]


def test_the_report_uses_the_kpi_definitions(tmp_path):
    day = time.strftime("%Y%m%d", time.gmtime(START))
    _write(tmp_path / f"calls-{day}.jsonl", CALLS, damaged_line=True)
    _write(tmp_path / f"cdr-{day}.jsonl", CDRS)
    figures = figures_from_files(tmp_path, Period(START, NOW + 1), now=NOW)
    assert (figures.calls, figures.abandoned, figures.served_by_bot, figures.handoffs, figures.skipped) == \
        (5, 1, 2, 2, 1)
    assert figures.service_share == 2 / 4  # abandoned calls are left out
    assert figures.resolution_rate == 1 / 3  # one task done, out of the calls the bot tried (no green channel)
    assert figures.voice_to_voice_ms.n == 2
    assert figures.green_channel.reached_agent.percentiles["p50"] == 3.5
    assert figures_from_files(tmp_path, Period(START, NOW + 1), now=NOW, include_console=True).calls == 6


def test_no_calls_gives_no_ratio_rather_than_a_crash(tmp_path):
    text = render(figures_from_files(tmp_path, Period(START, NOW), now=NOW))
    assert "n/a (no calls)" in text and "n/a (no samples)" in text


def test_reads_folder_and_skips_damaged_lines(tmp_path, capsys):
    day = time.strftime("%Y%m%d", time.gmtime(START))
    _write(tmp_path / f"calls-{day}.jsonl", CALLS, damaged_line=True)
    _write(tmp_path / f"cdr-{day}.jsonl", CDRS)
    assert list(read_jsonl([tmp_path / f"calls-{day}.jsonl"]))[-1] is None  # the cut line, counted as skipped
    assert main(["--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "智能服务占比 (bot service share): 50.0%" in out
    assert "智能交互解决率 (bot resolution rate): 33.3%" in out
    assert "green channel time to agent: n=1 p50=3.5s" in out
    assert "damaged records skipped=1" in out


def test_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["--dir", str(tmp_path / "nothing")]) == 1
    assert "no call records yet" in capsys.readouterr().err


def test_a_bad_period_is_a_clear_error(tmp_path, capsys):
    assert main(["--dir", str(tmp_path), "--from", "last week"]) == 2
    assert "bad period" in capsys.readouterr().err
