#!/usr/bin/env python3
"""Deterministic 80/20 split of the team's own NLU examples: data/nlu/ (training) and tests/nlu/heldout.yml (test).

An example belongs to the held-out split when a salted SHA-256 of its plain text (entity markup removed) falls in
the lowest HELDOUT_PERCENT of 100 buckets. The decision depends on the text alone, so it is the same on every
machine, re-running moves nothing twice, and a trainer's new example lands in the same split every time.

    python scripts/split_nlu.py            # move held-out examples out of data/nlu/ into tests/nlu/heldout.yml
    python scripts/split_nlu.py --check    # exit 1 if data/nlu/ holds a held-out example or the splits overlap

Stdlib only and line-based, so it runs in either venv and keeps the comments and layout of the data files.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
NLU_DIR = REPO_ROOT / "data" / "nlu"
HELDOUT_FILE = REPO_ROOT / "tests" / "nlu" / "heldout.yml"

SPLIT_SALT = "yinling-nlu-split-v1"  # changing it reshuffles the split: never do it after examples were published
HELDOUT_PERCENT = 20

_INTENT_HEADER = re.compile(r"^- intent:\s*(\S+)\s*$")
_OTHER_HEADER = re.compile(r"^- (synonym|lookup|regex)\s*:")
_EXAMPLE_LINE = re.compile(r"^\s+- (.+?)\s*$")
# [text](entity) or [text]{"entity": ..., "value": ...}
_ENTITY_MARKUP = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")

HELDOUT_HEADER = (
    'version: "3.1"\n'
    "# Held-out 20% of our own examples (scripts/split_nlu.py). Test data only: never copy these into data/nlu/.\n"
    "nlu:\n"
)


@dataclass
class Example:
    intent: str
    text: str  # as written, with entity markup
    path: Path
    line_no: int  # 0-based line index in path


@dataclass
class SplitResult:
    moved: dict[str, list[str]] = field(default_factory=dict)  # intent -> examples moved to held-out

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.moved.values())


def plain_text(example: str) -> str:
    """The words a caller said: entity markup removed, whitespace collapsed."""
    return " ".join(_ENTITY_MARKUP.sub(r"\1", example).split())


def is_heldout(example: str) -> bool:
    """True when the example belongs to the held-out split (stable: depends only on its plain text)."""
    digest = hashlib.sha256(f"{SPLIT_SALT}\n{plain_text(example)}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100 < HELDOUT_PERCENT


def read_intent_examples(path: Path) -> list[Example]:
    """Intent examples of one Rasa YAML NLU file; synonym, lookup and regex blocks are skipped."""
    examples: list[Example] = []
    intent: str | None = None
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if header := _INTENT_HEADER.match(line):
            intent = header.group(1)
        elif _OTHER_HEADER.match(line) or (line.startswith("- ") and not line.startswith("  ")):
            intent = None
        elif intent and (match := _EXAMPLE_LINE.match(line)):
            examples.append(Example(intent, match.group(1), path, line_no))
    return examples


def training_files(nlu_dir: Path = NLU_DIR) -> list[Path]:
    return sorted(nlu_dir.glob("*.yml"))


def read_training(nlu_dir: Path = NLU_DIR) -> list[Example]:
    return [ex for path in training_files(nlu_dir) for ex in read_intent_examples(path)]


def read_heldout(heldout_file: Path = HELDOUT_FILE) -> list[Example]:
    return read_intent_examples(heldout_file) if heldout_file.exists() else []


def write_heldout(by_intent: dict[str, list[str]], heldout_file: Path = HELDOUT_FILE) -> None:
    blocks = []
    for intent in sorted(by_intent):
        lines = "".join(f"    - {text}\n" for text in by_intent[intent])
        blocks.append(f"- intent: {intent}\n  examples: |\n{lines}")
    heldout_file.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(heldout_file, HELDOUT_HEADER + "\n".join(blocks))


def write_atomically(path: Path, text: str) -> None:
    """Replaces `path` with `text` whole or not at all: a crash mid-write leaves the old file, never half of it."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _remove_lines(path: Path, line_numbers: set[int]) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    write_atomically(path, "".join(line for i, line in enumerate(lines) if i not in line_numbers))


def split(nlu_dir: Path = NLU_DIR, heldout_file: Path = HELDOUT_FILE) -> SplitResult:
    """Move every held-out example from the training files into the held-out file."""
    by_intent: dict[str, list[str]] = {}
    for ex in read_heldout(heldout_file):
        by_intent.setdefault(ex.intent, []).append(ex.text)
    known = {plain_text(t) for texts in by_intent.values() for t in texts}

    result = SplitResult()
    to_remove: dict[Path, set[int]] = {}
    for ex in read_training(nlu_dir):
        if not is_heldout(ex.text):
            continue
        to_remove.setdefault(ex.path, set()).add(ex.line_no)
        if plain_text(ex.text) not in known:
            known.add(plain_text(ex.text))
            by_intent.setdefault(ex.intent, []).append(ex.text)
            result.moved.setdefault(ex.intent, []).append(ex.text)

    for path, line_numbers in to_remove.items():
        _remove_lines(path, line_numbers)
    if result.count or not heldout_file.exists():
        write_heldout(by_intent, heldout_file)
    return result


def check(nlu_dir: Path = NLU_DIR, heldout_file: Path = HELDOUT_FILE) -> list[str]:
    """Problems with the split, one line each; empty when data/nlu and the held-out file are consistent."""
    problems = []
    training = read_training(nlu_dir)
    for ex in training:
        if is_heldout(ex.text):
            problems.append(f"{ex.path.name}:{ex.line_no + 1} belongs to the held-out split, run scripts/split_nlu.py")
    training_texts = {plain_text(ex.text) for ex in training}
    for ex in read_heldout(heldout_file):
        if plain_text(ex.text) in training_texts:
            problems.append(f"held-out example also in training data: {ex.text}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify the split, change nothing")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        train, heldout = len(read_training()), len(read_heldout())
        print(f"training={train} heldout={heldout} problems={len(problems)}")
        return 1 if problems else 0
    result = split()
    for intent, texts in sorted(result.moved.items()):
        print(f"{intent}: moved {len(texts)} to {HELDOUT_FILE.relative_to(REPO_ROOT)}")
    print(f"moved={result.count} training={len(read_training())} heldout={len(read_heldout())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
