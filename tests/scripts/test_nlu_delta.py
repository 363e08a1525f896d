"""`make nlu-report`'s before/after (scripts/nlu_delta.py): overall and per-intent changes, the biggest drops first."""

from __future__ import annotations

import json
from pathlib import Path

from scripts import nlu_delta


def report(path: Path, accuracy: float, rows: dict[str, float]) -> Path:
    data = {name: {"precision": f1, "recall": f1, "f1-score": f1, "support": 10} for name, f1 in rows.items()}
    data.update({"accuracy": accuracy, "macro avg": {"precision": accuracy, "recall": accuracy,
                                                     "f1-score": accuracy, "support": 10 * len(rows)}})
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_the_deltas_overall_and_per_intent_worst_first(tmp_path, capsys):
    before = report(tmp_path / "before.json", 0.90, {"check_balance": 0.80, "complaint": 0.95, "gone": 0.5})
    after = report(tmp_path / "after.json", 0.93, {"check_balance": 0.90, "complaint": 0.85, "new_one": 1.0})
    assert nlu_delta.main([str(before), str(after)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["accuracy", "0.900", "->", "0.930", "(+0.030)"]
    intents = [line.split()[0] for line in lines[lines.index("") + 2:]]
    assert intents[:2] == ["complaint", "check_balance"]  # the drop first, then the gain
    assert {"gone", "new_one"} <= set(intents)
    assert any(line.startswith("gone") and "—" in line for line in lines)


def test_a_missing_report_is_exit_2(tmp_path):
    assert nlu_delta.main([str(tmp_path / "none.json"), str(tmp_path / "none.json")]) == 2


def test_each_report_records_its_model_and_held_out_set_and_a_changed_set_is_warned_about(tmp_path, capsys):
    from tests.scripts.test_swap_model import model_archive

    models = tmp_path / "models"
    models.mkdir()
    model_archive(models / "ivr.tar.gz", "model-a")
    heldout = tmp_path / "heldout.yml"
    heldout.write_text("nlu: []\n", encoding="utf-8")
    first = nlu_delta.describe("heldout", models, heldout)
    assert first["model_id"] == "model-a" and first["model"] == "ivr.tar.gz" and len(first["heldout_sha256"]) == 64
    heldout.write_text("nlu:\n- intent: greet\n  examples: |\n    - 你好\n", encoding="utf-8")
    second = nlu_delta.describe("heldout", models, heldout)
    runs = []
    for name, run in (("before.run.json", first), ("after.run.json", second)):
        (tmp_path / name).write_text(json.dumps(run), encoding="utf-8")
        runs.append(str(tmp_path / name))
    before = report(tmp_path / "before.json", 0.90, {"greet": 0.9})
    after = report(tmp_path / "after.json", 0.91, {"greet": 0.9})
    assert nlu_delta.main([str(before), str(after), "--runs", *runs]) == 0
    out = capsys.readouterr().out
    assert "WARNING: the held-out set differs" in out and "model-a" in out
    assert nlu_delta.main(["describe", "heldout", str(models), str(heldout)]) == 0
    assert json.loads(capsys.readouterr().out)["model_id"] == "model-a"
