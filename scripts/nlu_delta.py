#!/usr/bin/env python3
"""Before/after of two Rasa NLU reports (`make nlu-report` keeps the previous one in reports/nlu-previous/).

    python scripts/nlu_delta.py reports/nlu-previous/intent_report.json reports/nlu/intent_report.json \
        [--runs reports/nlu-previous/run.json reports/nlu/run.json]
    python scripts/nlu_delta.py describe heldout models/rasa tests/nlu/heldout.yml > reports/nlu/run.json

Prints the overall accuracy and macro F1 before, after and the change, then per intent F1, precision, recall and
support, the biggest drops first (an intent only in one report shows `—` on the other side, at the end).
`describe` writes what a report measured: the mode, the model's fingerprint (the `model_id` Rasa reports, from the
archive) and a SHA-256 of the held-out file. With `--runs`, the two are printed and a warning says when the held-out
set differs (labels that went to it since): the two figures then come from different test sets.
Exit status 0; 2 when a report cannot be read. Stdlib only (either venv).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nlu_metrics import load_report, per_intent  # noqa: E402

NONE = "—"


def _figure(row: dict | None, key: str) -> float | None:
    value = (row or {}).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def _cell(value: float | None, signed: bool = False) -> str:
    if value is None:
        return NONE
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def overall_lines(before: dict, after: dict) -> list[str]:
    lines = []
    for name, pick in (("accuracy", lambda r: r.get("accuracy")), ("macro F1", lambda r: r["macro avg"]["f1-score"]),
                       ("examples", lambda r: r["macro avg"]["support"])):
        b, a = pick(before), pick(after)
        if name == "examples":
            lines.append(f"{name:<10} {int(b):>7} -> {int(a):<7} ({int(a) - int(b):+d})")
        else:
            lines.append(f"{name:<10} {b:>7.3f} -> {a:<7.3f} ({a - b:+.3f})")
    return lines


def intent_rows(before: dict, after: dict) -> list[tuple[str, dict[str, float | None]]]:
    """(intent, figures) for every intent of either report, the biggest F1 drop first."""
    old, new = per_intent(before), per_intent(after)
    rows = []
    for intent in set(old) | set(new):
        figures = {}
        for key in ("f1-score", "precision", "recall", "support"):
            b, a = _figure(old.get(intent), key), _figure(new.get(intent), key)
            figures[f"{key}:before"], figures[f"{key}:after"], figures[f"{key}:delta"] = b, a, _delta(b, a)
        rows.append((intent, figures))
    # the biggest drop first; intents in one report only (no delta) last
    rows.sort(key=lambda row: (row[1]["f1-score:delta"] is None, row[1]["f1-score:delta"] or 0.0, row[0]))
    return rows


def table(before: dict, after: dict) -> str:
    lines = [f"{'intent':<24}{'f1 before':>10}{'after':>8}{'delta':>8}{'prec Δ':>8}{'recall Δ':>9}{'n':>6}"]
    for intent, f in intent_rows(before, after):
        support = f["support:after"] if f["support:after"] is not None else f["support:before"]
        lines.append(f"{intent:<24}{_cell(f['f1-score:before']):>10}{_cell(f['f1-score:after']):>8}"
                     f"{_cell(f['f1-score:delta'], True):>8}{_cell(f['precision:delta'], True):>8}"
                     f"{_cell(f['recall:delta'], True):>9}{int(support or 0):>6}")
    return "\n".join(lines)


def describe(mode: str, model: Path, heldout: Path) -> dict[str, str | None]:
    """What a report measures: the mode, the model's fingerprint and the held-out file's SHA-256."""
    from swap_model import SwapFailed, model_fingerprint, newest_model

    try:
        archive = newest_model(model) if model.is_dir() else model
        model_id: str | None = model_fingerprint(archive)
        name: str | None = archive.name
    except SwapFailed:
        model_id = name = None
    try:
        digest: str | None = hashlib.sha256(heldout.read_bytes()).hexdigest()
    except OSError:
        digest = None
    return {"mode": mode, "model": name, "model_id": model_id, "heldout_sha256": digest}


def run_lines(before: dict, after: dict) -> list[str]:
    lines = [f"{side:<7}{run.get('mode')} model {run.get('model_id') or 'unknown'} ({run.get('model') or '?'}), "
             f"held-out {str(run.get('heldout_sha256') or 'unknown')[:12]}"
             for side, run in (("before", before), ("after", after))]
    if before.get("heldout_sha256") != after.get("heldout_sha256") or not after.get("heldout_sha256"):
        lines.append("WARNING: the held-out set differs between the two reports (labels went to "
                     "tests/nlu/heldout.yml since): the before and after figures come from different test sets")
    if before.get("model_id") and before.get("model_id") == after.get("model_id"):
        lines.append("note: both reports are of the same model (make train first)")
    return lines


def _read_run(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["describe"]:
        if len(argv) != 4:
            print("usage: nlu_delta.py describe MODE MODEL HELDOUT", file=sys.stderr)
            return 2
        print(json.dumps(describe(argv[1], Path(argv[2]), Path(argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--runs", nargs=2, type=Path, metavar=("BEFORE_RUN", "AFTER_RUN"),
                        help="the run.json of each report (`describe`)")
    args = parser.parse_args(argv)
    try:
        before, after = load_report(args.before), load_report(args.after)
    except SystemExit as error:
        print(error, file=sys.stderr)
        return 2
    if args.runs:
        print("\n".join(run_lines(_read_run(args.runs[0]), _read_run(args.runs[1]))))
    print("\n".join(overall_lines(before, after)))
    print()
    print(table(before, after))
    return 0


if __name__ == "__main__":
    sys.exit(main())
