"""scripts/split_nlu.py: the held-out split is deterministic, stable under re-runs, and keeps file layout."""

from __future__ import annotations

from pathlib import Path

TRAINING_FILE = """version: "3.1"
# a comment that must survive
nlu:
- intent: greet
  examples: |
{greet}
- synonym: USD
  examples: |
    - 美元
"""


def _write_training(directory: Path, examples: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "core.yml"
    path.write_text(TRAINING_FILE.format(greet="\n".join(f"    - {e}" for e in examples)), encoding="utf-8")
    return path


def _examples(count: int) -> list[str]:
    return [f"你好 第{i}句 [朝阳区](location)" for i in range(count)]


def test_plain_text_removes_entity_markup(split_nlu):
    assert split_nlu.plain_text('转[两万](amount)到[美元]{"entity":"currency","value":"USD"}') == "转两万到美元"


def test_is_heldout_depends_only_on_the_spoken_words(split_nlu):
    assert split_nlu.is_heldout("查[上个月](date_period)的流水") == split_nlu.is_heldout("查上个月的流水")


def test_is_heldout_selects_about_a_fifth(split_nlu):
    texts = [f"例句{i}" for i in range(2000)]
    share = sum(map(split_nlu.is_heldout, texts)) / len(texts)
    assert 0.17 <= share <= 0.23


def test_split_moves_heldout_examples_and_keeps_everything_else(split_nlu, tmp_path):
    examples = _examples(60)
    training_path = _write_training(tmp_path / "nlu", examples)
    heldout_path = tmp_path / "heldout.yml"

    result = split_nlu.split(tmp_path / "nlu", heldout_path)

    expected_heldout = [e for e in examples if split_nlu.is_heldout(e)]
    assert 0 < result.count == len(expected_heldout)
    assert [ex.text for ex in split_nlu.read_heldout(heldout_path)] == expected_heldout
    remaining = [ex.text for ex in split_nlu.read_training(tmp_path / "nlu")]
    assert remaining == [e for e in examples if not split_nlu.is_heldout(e)]
    text = training_path.read_text(encoding="utf-8")
    assert "# a comment that must survive" in text and "- synonym: USD" in text and "    - 美元" in text
    assert split_nlu.check(tmp_path / "nlu", heldout_path) == []


def test_split_is_idempotent_and_appends_new_examples(split_nlu, tmp_path):
    heldout_path = tmp_path / "heldout.yml"
    _write_training(tmp_path / "nlu", _examples(40))
    split_nlu.split(tmp_path / "nlu", heldout_path)
    first = heldout_path.read_text(encoding="utf-8")

    assert split_nlu.split(tmp_path / "nlu", heldout_path).count == 0
    assert heldout_path.read_text(encoding="utf-8") == first

    remaining = [ex.text for ex in split_nlu.read_training(tmp_path / "nlu")]
    _write_training(tmp_path / "nlu", remaining + _examples(80)[40:])
    added = split_nlu.split(tmp_path / "nlu", heldout_path)
    assert added.count == sum(split_nlu.is_heldout(e) for e in _examples(80)[40:])
    assert heldout_path.read_text(encoding="utf-8").startswith(first.rstrip("\n"))


def test_check_reports_a_heldout_example_left_in_training(split_nlu, tmp_path):
    heldout_text = next(e for e in _examples(60) if split_nlu.is_heldout(e))
    _write_training(tmp_path / "nlu", [heldout_text])
    problems = split_nlu.check(tmp_path / "nlu", tmp_path / "missing.yml")
    assert len(problems) == 1 and "held-out" in problems[0]


def test_check_reports_overlap_between_splits(split_nlu, tmp_path):
    kept = next(e for e in _examples(60) if not split_nlu.is_heldout(e))
    _write_training(tmp_path / "nlu", [kept])
    split_nlu.write_heldout({"greet": [kept]}, tmp_path / "heldout.yml")
    problems = split_nlu.check(tmp_path / "nlu", tmp_path / "heldout.yml")
    assert any("also in training" in p for p in problems)
