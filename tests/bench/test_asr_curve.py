"""bench/asr_curve.py: the error measure, the settings it compares and the corpus format it reads."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from settings import REPO_ROOT


@pytest.fixture(scope="module")
def asr_curve():
    spec = importlib.util.spec_from_file_location("asr_curve", REPO_ROOT / "bench" / "asr_curve.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["asr_curve"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("expected", "heard", "errors"), [
    ("잔액을 확인하고", "잔액을 확인하고", 0), ("잔액을 확인하고", "잔액 을확인하고", 0),  # spaces do not count
    ("查余额", "查鱼额", 1), ("查余额", "", 3), ("", "嗯", 1), ("我要还信用卡", "我还信用卡了", 2),
])
def test_character_errors_are_edits_without_spaces(asr_curve, expected, heard, errors):
    assert asr_curve.character_errors(expected, heard) == errors


def test_settings_are_the_models_own_or_max_active_and_beam(asr_curve):
    settings = asr_curve.parse_limits("model, 1000/8,500")
    assert [name for name, _ in settings] == ["model", "1000/8", "500"]
    assert settings[0][1].is_default
    assert (settings[1][1].max_active, settings[1][1].beam) == (1000, 8.0)
    assert (settings[2][1].max_active, settings[2][1].beam) == (500, None)
    with pytest.raises(ValueError):
        asr_curve.parse_limits("10/8")  # outside the range the gateway accepts (VOSK_MAX_ACTIVE)


def test_a_corpus_is_read_relative_to_its_manifest_and_bad_lines_are_named(asr_curve, tmp_path):
    manifest = tmp_path / "corpus.jsonl"
    manifest.write_text(json.dumps({"audio": "a.wav", "text": "查余额", "intent": "check_balance",
                                    "language": "zh"}, ensure_ascii=False) + "\n\n", encoding="utf-8")
    [utterance] = asr_curve.read_manifest(manifest)
    assert utterance.audio == tmp_path / "a.wav" and utterance.intent == "check_balance"

    manifest.write_text('{"audio": "a.wav"}\n', encoding="utf-8")
    with pytest.raises(SystemExit, match="corpus.jsonl:1"):
        asr_curve.read_manifest(manifest)


def test_the_shipped_corpora_have_a_sentence_and_an_intent_a_line():
    for language in ("ko", "zh"):
        rows = [row for row in (REPO_ROOT / "bench" / "corpora" / language / "sentences.tsv").read_text(
            encoding="utf-8").splitlines() if row.strip() and not row.startswith("#")]
        assert len(rows) >= 12 and all(len(row.split("\t")) == 2 for row in rows), language
