#!/usr/bin/env python3
"""Read a Rasa NLU report (intent_report.json, or an entity report such as DIETClassifier_report.json): print
accuracy and macro F1 on one line, optionally a per-label table.

    python scripts/nlu_metrics.py results/nlu_heldout/intent_report.json --label heldout --min-accuracy 0.92
    python scripts/nlu_metrics.py reports/nlu/intent_report.json --table
    python scripts/nlu_metrics.py reports/nlu/DIETClassifier_report.json --by-role amount,card_last4 --min-f1 0.95

Exit status 1 when --min-accuracy is given and not reached, 2 when the report is missing or malformed.
"""

from __future__ import annotations

import argparse
import re
import json
import sys
from pathlib import Path

_SUMMARY_KEYS = {"accuracy", "macro avg", "weighted avg", "micro avg"}


def load_report(path: Path) -> dict:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: cannot read NLU report {path}: {exc}") from None
    if not isinstance(report, dict) or "macro avg" not in report:
        raise SystemExit(f"error: {path} is not a Rasa NLU report (no macro avg)")
    if "accuracy" not in report:  # entity reports carry micro-averaged figures instead
        report["accuracy"] = report.get("micro avg", report["macro avg"])["f1-score"]
    return report


def per_intent(report: dict) -> dict[str, dict]:
    return {name: row for name, row in report.items() if name not in _SUMMARY_KEYS and isinstance(row, dict)}


def summary_line(report: dict, label: str) -> str:
    macro = report["macro avg"]
    return (
        f"nlu {label}: accuracy={report['accuracy']:.3f} macro_f1={macro['f1-score']:.3f} "
        f"examples={int(macro['support'])} labels={len(per_intent(report))}"
    )


def table(report: dict, omit: tuple[str, ...] = ()) -> str:
    """Per-intent precision/recall/F1, worst F1 first, with the intents each one was confused with.
    Rows named in `omit` (as in by_role) are left out."""
    omitted = by_role(report, list(omit))
    rows = sorted(((name, row) for name, row in per_intent(report).items() if name not in omitted),
                  key=lambda item: item[1]["f1-score"])
    lines = [f"{'label':<24}{'prec':>6}{'recall':>8}{'f1':>6}{'n':>5}  confused with"]
    for name, row in rows:
        confused = ", ".join(f"{other}×{n}" for other, n in row.get("confused_with", {}).items())
        lines.append(
            f"{name:<24}{row['precision']:>6.2f}{row['recall']:>8.2f}{row['f1-score']:>6.2f}{int(row['support']):>5}  {confused}"
        )
    return "\n".join(lines)


def by_role(report: dict, entities: list[str]) -> dict[str, dict]:
    """The rows of `entities`, one per role: Rasa labels them 「card_last4.source」, 「card_last4.destination」, 「amount」.
    An entity named with its role (「card_last4.source」) picks that row alone."""
    return {name: row for name, row in per_intent(report).items()
            if name in entities or re.split(r"[.#]", name)[0] in entities}


def role_lines(rows: dict[str, dict]) -> str:
    return "\n".join(f"entity {re.sub(r'[.#]', ' role=', name, count=1)}: f1={row['f1-score']:.3f} n={int(row['support'])}"
                     for name, row in sorted(rows.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Summarise a Rasa intent_report.json")
    parser.add_argument("report", type=Path)
    parser.add_argument("--label", default="eval", help="name printed in the summary line")
    parser.add_argument("--min-accuracy", type=float, default=None, help="fail below this accuracy")
    parser.add_argument("--table", action="store_true", help="also print the per-intent table")
    parser.add_argument("--omit", default="", help="with --table: leave out these rows (comma-separated, as --by-role)")
    parser.add_argument("--by-role", default=None, help="entity report: print F1 of these entities (comma-separated) by role")
    parser.add_argument("--min-f1", type=float, default=None, help="with --by-role: fail when any of them is below")
    args = parser.parse_args(argv)

    try:
        report = load_report(args.report)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.by_role:
        rows = by_role(report, args.by_role.split(","))
        print(role_lines(rows))
        low = [name for name, row in rows.items() if args.min_f1 is not None and row["f1-score"] < args.min_f1]
        if low:
            print(f"FAIL: entity F1 below {args.min_f1:.2f}: {', '.join(low)}", file=sys.stderr)
            return 1
        return 0
    if args.table:
        print(table(report, tuple(filter(None, args.omit.split(",")))))
    print(summary_line(report, args.label))
    if args.min_accuracy is not None and report["accuracy"] < args.min_accuracy:
        print(f"FAIL: {args.label} accuracy {report['accuracy']:.3f} is below {args.min_accuracy:.2f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
