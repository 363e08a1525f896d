"""scripts/nlu_metrics.py: the one-line summary, the threshold exit code, and clear errors on bad reports."""

from __future__ import annotations

import json
from pathlib import Path


def _report(accuracy: float) -> dict:
    row = {"precision": accuracy, "recall": accuracy, "f1-score": accuracy, "support": 10}
    return {
        "greet": dict(row, confused_with={"affirm": 1}),
        "deny": dict(row, confused_with={}),
        "accuracy": accuracy,
        "macro avg": dict(row, support=20),
        "weighted avg": dict(row, support=20),
    }


def _write(tmp_path: Path, content) -> Path:
    path = tmp_path / "intent_report.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def test_summary_line_has_accuracy_and_macro_f1(nlu_metrics, tmp_path, capsys):
    assert nlu_metrics.main([str(_write(tmp_path, _report(0.95))), "--label", "heldout"]) == 0
    assert capsys.readouterr().out.strip() == "nlu heldout: accuracy=0.950 macro_f1=0.950 examples=20 labels=2"


def test_below_threshold_fails(nlu_metrics, tmp_path, capsys):
    assert nlu_metrics.main([str(_write(tmp_path, _report(0.80))), "--min-accuracy", "0.92"]) == 1
    assert "below 0.92" in capsys.readouterr().err


def test_table_lists_confusions(nlu_metrics, tmp_path, capsys):
    nlu_metrics.main([str(_write(tmp_path, _report(0.9))), "--table"])
    assert "affirm×1" in capsys.readouterr().out


def test_entity_report_without_accuracy_uses_micro_f1(nlu_metrics, tmp_path, capsys):
    report = _report(0.9)
    del report["accuracy"]
    report["micro avg"] = {"precision": 0.7, "recall": 0.7, "f1-score": 0.7, "support": 20}
    assert nlu_metrics.main([str(_write(tmp_path, report))]) == 0
    assert "accuracy=0.700" in capsys.readouterr().out


def test_missing_or_malformed_report_is_a_clear_error(nlu_metrics, tmp_path, capsys):
    assert nlu_metrics.main([str(tmp_path / "absent.json")]) == 2
    assert nlu_metrics.main([str(_write(tmp_path, "{not json"))]) == 2
    assert nlu_metrics.main([str(_write(tmp_path, json.dumps([1, 2])))]) == 2
    assert "cannot read" in capsys.readouterr().err


def _entity_report() -> dict:
    def row(f1: float) -> dict:
        return {"precision": f1, "recall": f1, "f1-score": f1, "support": 30}
    return {"amount": row(0.96), "card_last4": row(0.0), "card_last4.source": row(1.0),
            "card_last4.destination": row(0.97), "micro avg": row(0.8), "macro avg": row(0.8)}


def test_roles_named_alone_pick_their_rows_and_gate_on_f1(nlu_metrics, tmp_path, capsys):
    path = _write(tmp_path, _entity_report())
    assert nlu_metrics.main([str(path), "--by-role", "card_last4.source,card_last4.destination", "--min-f1", "0.95"]) == 0
    out = capsys.readouterr().out
    assert "entity card_last4 role=source: f1=1.000" in out and "role=destination: f1=0.970" in out
    assert "entity card_last4:" not in out  # the unlabelled row is another extractor's business
    assert nlu_metrics.main([str(path), "--by-role", "card_last4", "--min-f1", "0.95"]) == 1


def test_table_omits_rows_another_extractor_reports(nlu_metrics, tmp_path, capsys):
    path = _write(tmp_path, _entity_report())
    assert nlu_metrics.main([str(path), "--table", "--omit", "amount,card_last4.source,card_last4.destination"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:-1]]
    assert rows == ["card_last4"]  # the unlabelled card row is DIET's own and stays
