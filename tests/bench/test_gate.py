"""The regression gate's arithmetic and checks (bench/gate.py); the real loop runs in tests/integration/test_regression_gate.py."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from gate import CallOutcome, Thresholds, figures, gate, read_baseline, write_baseline  # noqa: E402


def outcome(audio: str, heard: str, *, text: str = "잔액 확인", intent: str | None = "check_balance",
            expected_intent: str = "check_balance", ms: float | None = 600.0, failed: bool = False) -> CallOutcome:
    return CallOutcome(audio, text, expected_intent, heard=heard, intent=intent, voice_to_voice_ms=ms, failed=failed)


BLESSED = [outcome("a.wav", "잔액 확인"), outcome("b.wav", "잔액 학인", intent="deny"), outcome("c.wav", "자 확인")]


@pytest.fixture
def baseline(tmp_path) -> dict:
    path = tmp_path / "baseline.json"
    write_baseline(path, BLESSED, "test")
    return read_baseline(path)


def test_figures_count_characters_intents_and_latency(baseline):
    run = figures(BLESSED, baseline)

    assert run.cer == pytest.approx(3 / 12)  # b: 확→학; c: 잔→자 and 액 lost; 4 characters each
    assert run.agreement == 1.0
    assert run.intent_accuracy == pytest.approx(2 / 3)
    assert run.p50_ms == 600.0 and run.failed_calls == 0


def test_the_blessed_run_itself_passes(baseline):
    _, results = gate(BLESSED, baseline, Thresholds())

    assert results and all(passed for _, passed, _ in results)


def test_a_run_that_hears_something_else_fails_on_agreement(baseline):
    garbled = [outcome(o.audio, "다른 말", intent=o.intent) for o in BLESSED]  # e.g. a broken resampler

    _, results = gate(garbled, baseline, Thresholds())

    assert failing(results) >= {"agreement", "cer"}


def test_a_slow_run_fails_on_p95_and_a_silent_one_on_failed_calls(baseline):
    slow = [outcome(o.audio, o.heard, intent=o.intent, ms=o.voice_to_voice_ms + 2500) for o in BLESSED]
    silent = [outcome(o.audio, "", intent=None, ms=None, failed=True) for o in BLESSED]

    assert failing(gate(slow, baseline, Thresholds())[1]) == {"p95"}
    assert "failed_calls" in failing(gate(silent, baseline, Thresholds())[1])
    assert math.isnan(figures(silent, baseline).p95_ms)


def test_an_intent_drop_fails_only_beyond_its_threshold(baseline):
    one_less = [outcome(o.audio, o.heard, intent="deny") if o.audio == "a.wav" else o for o in BLESSED]

    assert failing(gate(one_less, baseline, Thresholds())[1]) == {"intent_accuracy"}
    assert failing(gate(one_less, baseline, Thresholds(max_intent_drop=0.5))[1]) == set()


def test_files_the_baseline_does_not_know_give_no_checks(baseline):
    _, results = gate([*BLESSED, outcome("new.wav", "새 파일")], baseline, Thresholds())

    assert results == []


def failing(results: list) -> set[str]:
    return {name for name, passed, _ in results if not passed}


def test_an_empty_run_fails(baseline):
    assert gate([], baseline, Thresholds())[1] == []


def test_checks_a_baseline_makes_vacuous_say_so(tmp_path):
    path = tmp_path / "proxy.json"
    write_baseline(path, [outcome("a.wav", "다른", intent="deny")], "a proxy model: everything wrong")

    results = {name: why for name, _, why in gate([outcome("a.wav", "")], read_baseline(path), Thresholds())[1]}

    assert "cannot fail" in results["intent_accuracy"]
