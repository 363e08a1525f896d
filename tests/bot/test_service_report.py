import json

from bot.service_report import compute, main, read_jsonl, render


def _write(path, records, damaged_line=False):
    lines = [json.dumps(record, ensure_ascii=False) for record in records]
    if damaged_line:
        lines.append('{"outcome": "served_by')  # a line cut by a crash
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


CALLS = [
    {"outcome": "served_by_bot", "turn_metrics": [{"voice_to_voice_ms": 400.0}, {"voice_to_voice_ms": 600.0}]},
    {"outcome": "served_by_bot", "turn_metrics": [{"voice_to_voice_ms": None}]},
    {"outcome": "handoff", "handoff_reason": "green_channel", "turn_metrics": []},
    {"outcome": "handoff", "handoff_reason": "nlu_fallback"},
    {"outcome": "abandoned"},
]
CDRS = [
    {"green_channel": True, "time_to_agent_s": 3.5},
    {"green_channel": False, "time_to_agent_s": 9.0},
    {"green_channel": True, "time_to_agent_s": None},
]


def test_figures_follow_their_definitions():
    figures = compute(CALLS, CDRS)
    assert (figures.calls, figures.abandoned, figures.served_by_bot, figures.handoffs) == (5, 1, 2, 2)
    assert figures.service_share == 2 / 4  # abandoned calls are left out
    assert figures.resolution_rate == 2 / 3  # the green-channel transfer was the caller's choice
    assert figures.voice_to_voice_ms == [400.0, 600.0]
    assert figures.green_time_to_agent_s == [3.5]


def test_no_calls_gives_no_ratio_rather_than_a_crash():
    text = render(compute([], []))
    assert "n/a (no calls)" in text and "n/a (no samples)" in text


def test_reads_folder_and_skips_damaged_lines(tmp_path, capsys):
    _write(tmp_path / "calls-20261126.jsonl", CALLS, damaged_line=True)
    _write(tmp_path / "cdr-20261126.jsonl", CDRS)
    assert len(list(read_jsonl([tmp_path / "calls-20261126.jsonl"]))) == len(CALLS)
    assert main(["--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "智能服务占比 (bot service share): 50.0%" in out
    assert "智能交互解决率 (bot resolution rate): 66.7%" in out
    assert "green channel time to agent: n=1 p50=3.5s" in out


def test_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["--dir", str(tmp_path / "nothing")]) == 1
    assert "no call records yet" in capsys.readouterr().err
