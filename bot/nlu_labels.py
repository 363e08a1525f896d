"""Trainers' labels of real caller turns, written to the Rasa project's `data/nlu/review.yml` (valid Rasa NLU YAML).

Each label is its own intent block under a provenance comment (the call's digest, when, who):

    # review: call=3f2a9c0d1e2b4a5f at=2026-11-30T03:40:00Z by=wang.li
    - intent: check_balance
      examples: |
        - 我那个钱匣子里头还剩多少

What is refused (LabelRefused, with the reason):
- an intent that is not a spoken intent of the domain (the gateway's `/call_start`, `/dtmf`, `/transfer_failed` and
  nlu_fallback are never labels; "out of scope" is the intent out_of_scope);
- a sentence of the external evaluation set (every *.yml under settings.trainer.eval_dir) or a near copy of one:
  compared after normalising width (NFKC), case, whitespace, punctuation, combining marks, variation selectors and
  invisible characters (so 「查余额？」 and 「查 余额」 are the same sentence), then refused when the two are at least
  NEAR_COPY_RATIO alike (difflib) or one holds the other and is at least half of it (「查余额吧」 for 「查余额」).
  Traditional characters are not folded to simplified (that needs a converter this project does not depend on).
  When that set is missing or cannot be fully read (no sentence parsed, a file that is not YAML, a YAML file of
  another shape), every label is refused: the check could not be made;
- a sentence already in the held-out split (tests/nlu/heldout.yml) or in another data/nlu file under another
  intent (a contradiction to settle by hand);
- a masked turn (`****`: the caller's digits are gone, so the words are not what was said), an empty one, one
  longer than MAX_CHARS, or one holding Rasa's entity markup characters;
- a sentence with a digit in it (ASCII or full-width) or a run of MAX_SPOKEN_DIGITS+ spoken digits (bot/masking.py's
  digit set: 幺二三四): the file is tracked by git, and a card's last four or an amount are the caller's data.
Labelling is idempotent: the same sentence labelled again with the same intent changes nothing; with another intent
the newer label replaces the older one. A sentence that scripts/split_nlu.py puts in the held-out 20% goes to
tests/nlu/heldout.yml instead (it then measures the model rather than teaching it), so `split_nlu.py --check` holds;
its provenance is kept in review.yml as a comment (`# held out: ...`), which is also what lets a trainer correct
that label later (a held-out sentence without it came from the project's own data and is not relabelled here).
Writers take an exclusive lock (`review.yml.lock`) and replace the file atomically; odd Unicode (controls,
bidirectional and zero-width marks, lone surrogates) never reaches the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import fcntl
import re
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import yaml

from bot.masking import DIGIT_CHARS
from call_contract import GATEWAY_ONLY_INTENTS, NLU_FALLBACK_INTENT, OUT_OF_SCOPE_INTENT, SECURE_MASK
from scripts import split_nlu
from settings import Settings

OUT_OF_SCOPE = OUT_OF_SCOPE_INTENT
# Never a label: what only the gateway sends (call_contract.py), and what Rasa names a message it is unsure of.
NOT_LABELS = GATEWAY_ONLY_INTENTS | {NLU_FALLBACK_INTENT}
# Two sentences this alike (difflib ratio of their comparable forms) are one sentence for the evaluation-set check.
NEAR_COPY_RATIO = 0.85
# A sentence holding an evaluation line of at least this many characters (and at least half made of it) is a near
# copy; a two-character line (你好, 谢谢) is a word every caller says, not a sentence to copy.
MIN_CONTAINED_CHARS = 3
# Files an evaluation folder may hold besides its YAML: anything else means sentences this check would not see.
EVAL_FILE_SUFFIXES = (".yml", ".yaml")
# Spoken digits in a row from this many: a card's last four, a code; kept out of a git-tracked file.
MAX_SPOKEN_DIGITS = 3
_ASCII_DIGITS = re.compile(r"[0-9０-９]")
_SPOKEN_DIGIT_RUN = re.compile(f"[{DIGIT_CHARS}]{{{MAX_SPOKEN_DIGITS},}}")
REVIEW_FILE_NAME = "review.yml"
MAX_CHARS = 200
# [text](entity) and {"entity": ...}: a caller's sentence must not turn into entity annotations.
MARKUP_CHARS = frozenset("[](){}")
HEADER = (
    'version: "3.1"\n'
    "# Labels of real caller turns from the trainers' review (make review, /trainer; docs/TRAINERS.md).\n"
    "# Written by bot/nlu_labels.py: one block per sentence, under its provenance comment. Never add sentences of\n"
    "# the external evaluation set here.\n"
    "nlu:\n"
)
_PROVENANCE = re.compile(r"^# review: call=(?P<call>[0-9a-f]{1,64}|unknown) at=(?P<at>\S+) by=(?P<by>\S+)\s*$")
_INTENT = re.compile(r"^- intent: (?P<intent>[A-Za-z0-9_]+)\s*$")
_EXAMPLE = re.compile(r"^    - (?P<text>.+?)\s*$")
_HELD_OUT = re.compile(r"^# held out: call=(?P<call>[0-9a-f]{1,64}|unknown) at=(?P<at>\S+) by=(?P<by>\S+) "
                       r"intent=(?P<intent>[A-Za-z0-9_]+) text=(?P<text>.+?)\s*$")
_BY_ALLOWED = re.compile(r"[^\w.@-]+")


class LabelRefused(ValueError):
    """The label cannot be written; the message says why, for the trainer."""


class LabelConflict(LabelRefused):
    """Someone else labelled the sentence since the trainer looked: nothing written, the message says what is there."""


UNCHECKED = "\x00unchecked"  # `expected` of a label whose writer does not say what it saw (the terminal)


@dataclass(frozen=True)
class LabelResult:
    status: str  # "added" | "relabelled" | "unchanged" | "heldout"
    intent: str
    text: str
    message: str


@dataclass(frozen=True)
class Entry:
    call: str
    at: str
    by: str
    intent: str
    text: str

    def block(self) -> str:
        return (f"# review: call={self.call} at={self.at} by={self.by}\n"
                f"- intent: {self.intent}\n  examples: |\n    - {self.text}\n")

    def held_out_note(self) -> str:
        """The provenance of a label that went to tests/nlu/heldout.yml: a comment here, YAML sees nothing."""
        return f"# held out: call={self.call} at={self.at} by={self.by} intent={self.intent} text={self.text}\n"


# -- sentences ----------------------------------------------------------------------------------------------------

def comparable(text: str) -> str:
    """The sentence as compared against other sets: NFKC (full-width → ASCII), case-folded, without whitespace,
    punctuation, symbols, combining marks and variation selectors (category M: U+0301, U+FE00) and invisible
    characters (format marks such as U+200B, U+202E)."""
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] not in "PSZCM")


def near_copy(key: str, other: str) -> bool:
    """Whether two comparable sentences are one sentence give or take a few characters: difflib-alike, or one
    holding the other (of MIN_CONTAINED_CHARS or more) and at least half its length (「查余额吧」 holds 「查余额」)."""
    if not key or not other:
        return False
    shorter, longer = sorted((key, other), key=len)
    if len(shorter) >= MIN_CONTAINED_CHARS and shorter in longer and 2 * len(shorter) >= len(longer):
        return True
    matcher = difflib.SequenceMatcher(None, key, other, autojunk=False)
    return matcher.real_quick_ratio() >= NEAR_COPY_RATIO and matcher.quick_ratio() >= NEAR_COPY_RATIO \
        and matcher.ratio() >= NEAR_COPY_RATIO


def clean_sentence(text: str) -> str:
    """The sentence as written to the file: NFC, controls and format marks dropped, whitespace runs (newlines
    included) one space. Raises LabelRefused for what cannot be a training example."""
    if not isinstance(text, str):
        raise LabelRefused("the sentence must be text")
    text = "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)  # lone surrogates: damage
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or unicodedata.category(ch)[0] != "C")
    text = " ".join(text.split())
    if not comparable(text):
        raise LabelRefused("the sentence is empty once spaces and punctuation are left out")
    if SECURE_MASK in text or "\ufffd" in text:
        raise LabelRefused("the sentence is masked or damaged (**** or undecodable characters): the caller's words "
                           "are not all there, so it cannot teach the bot")
    if len(text) > MAX_CHARS:
        raise LabelRefused(f"the sentence is longer than {MAX_CHARS} characters")
    if MARKUP_CHARS & set(text):
        raise LabelRefused("the sentence holds brackets, which Rasa reads as entity markup: add it by hand")
    if text.startswith(("#", "-")):
        raise LabelRefused("the sentence starts with '#' or '-': add it by hand if it is really what was said")
    if _ASCII_DIGITS.search(text) or _SPOKEN_DIGIT_RUN.search(text):
        raise LabelRefused("the sentence holds digits (a card's last four, an amount, a code are the caller's data "
                           "and data/nlu is tracked by git): write it by hand with made-up digits if it must be taught")
    return text


def clean_by(name: str) -> str:
    """Who labelled, as one comment-safe word."""
    cleaned = _BY_ALLOWED.sub("_", unicodedata.normalize("NFKC", str(name or "")))[:40].strip("_")
    return cleaned or "unknown"


def _examples_of(data: object) -> Iterator[tuple[str, str]]:
    """(intent, example text) of parsed Rasa NLU YAML; entity markup removed."""
    for item in (data or {}).get("nlu") or [] if isinstance(data, dict) else []:
        if not isinstance(item, dict) or "intent" not in item:
            continue
        examples = item.get("examples")
        if isinstance(examples, str):
            lines = [line.strip()[2:] for line in examples.splitlines() if line.strip().startswith("- ")]
        elif isinstance(examples, list):
            lines = [e.get("text", "") if isinstance(e, dict) else str(e) for e in examples]
        else:
            lines = []
        for line in lines:
            yield str(item["intent"]), split_nlu.plain_text(str(line))


def eval_sentences(eval_dir: Path) -> frozenset[str]:
    """The external evaluation set's sentences, comparable. Raises LabelRefused when the set cannot be read:
    without it, no label can be shown not to come from it."""
    if not eval_dir.is_dir():
        raise LabelRefused("the external evaluation set (NLU_EVAL_DIR) is missing: labels are refused "
                           "until it can be checked against")
    sentences: set[str] = set()
    for path in sorted(p for p in eval_dir.rglob("*") if not p.is_dir()):
        if path.name.upper().startswith("README"):
            continue
        if path.suffix.lower() not in EVAL_FILE_SUFFIXES:
            raise LabelRefused(f"the external evaluation set holds {path.name}, which is not Rasa NLU YAML: labels "
                               "are refused until every file there can be checked against (or it is moved away)")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise LabelRefused(f"the external evaluation set cannot be read ({path.name}: {error})") from None
        found = {comparable(text) for _, text in _examples_of(data)} - {""}
        if not found:
            raise LabelRefused(f"the external evaluation set's {path.name} holds no NLU examples this check can "
                               "read: labels are refused until it can be checked against")
        sentences |= found
    if not sentences:
        raise LabelRefused("the external evaluation set (NLU_EVAL_DIR) holds no sentences: labels are refused until "
                           "it can be checked against")
    return frozenset(sentences)


def in_eval_set(key: str, sentences: frozenset[str]) -> bool:
    return key in sentences or any(near_copy(key, sentence) for sentence in sentences)


def domain_intents(domain_dir: Path) -> frozenset[str]:
    intents: set[str] = set()
    for path in sorted(domain_dir.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for intent in data.get("intents") or []:
            intents.add(next(iter(intent)) if isinstance(intent, dict) else str(intent))
    return frozenset(intents)


# -- the review file ----------------------------------------------------------------------------------------------

def read_entries(path: Path) -> list[Entry]:
    """The labels in a review file this module wrote. Raises LabelRefused when the file holds examples in another
    shape (edited by hand): rewriting it would lose them."""
    return read_review(path)[0]


def read_review(path: Path) -> tuple[list[Entry], list[Entry]]:
    """The labels in a review file this module wrote, and the provenance notes of the labels that went to the
    held-out file. Raises LabelRefused when the file holds examples in another shape (edited by hand)."""
    if not path.exists():
        return [], []
    text = path.read_text(encoding="utf-8")
    held_out = [Entry(m["call"], m["at"], m["by"], m["intent"], m["text"])
                for m in map(_HELD_OUT.match, text.splitlines()) if m]
    entries, lines = [], text.splitlines()
    for i, line in enumerate(lines[:-3]):
        head, intent, example = _PROVENANCE.match(line), _INTENT.match(lines[i + 1]), _EXAMPLE.match(lines[i + 3])
        if head and intent and lines[i + 2].strip() == "examples: |" and example:
            entries.append(Entry(head["call"], head["at"], head["by"], intent["intent"], example["text"]))
    try:
        found = list(_examples_of(yaml.safe_load(text)))
    except yaml.YAMLError:
        found = None
    if found != [(entry.intent, split_nlu.plain_text(entry.text)) for entry in entries]:
        raise LabelRefused(f"{path.name} was edited into a shape the labeller cannot keep (one block per sentence "
                           "under its `# review:` comment): move hand-written examples to another data/nlu file")
    return entries, held_out


def render_entries(entries: list[Entry], held_out: list[Entry] | None = None) -> str:
    header = HEADER if entries else HEADER.replace("\nnlu:\n", "\nnlu: []\n")  # Rasa wants a list, even empty
    return header + "".join(note.held_out_note() for note in held_out or []) + "".join(e.block() for e in entries)


def check_rasa_yaml(text: str, entries: list[Entry]) -> None:
    """The file about to be written parses as YAML into exactly these labels (a last guard against injection)."""
    data = yaml.safe_load(text)
    found = list(_examples_of(data))
    if found != [(entry.intent, split_nlu.plain_text(entry.text)) for entry in entries]:
        raise LabelRefused("the review file would not read back as written; nothing was changed")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside `path`, across processes (the gateway's /trainer and terminals)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


write_atomically = split_nlu.write_atomically  # one atomic write for both files


# -- the labeller -------------------------------------------------------------------------------------------------

class Labeller:
    """Writes labels into one Rasa project (`project_dir`: its data/nlu/, tests/nlu/heldout.yml, domain/)."""

    def __init__(self, project_dir: Path, eval_dir: Path) -> None:
        self.project_dir = project_dir
        self.nlu_dir = project_dir / "data" / "nlu"
        self.review_file = self.nlu_dir / REVIEW_FILE_NAME
        self.heldout_file = project_dir / "tests" / "nlu" / "heldout.yml"
        self.domain_dir = project_dir / "domain"
        self.eval_dir = eval_dir

    @classmethod
    def from_settings(cls, settings: Settings) -> "Labeller":
        return cls(Path(settings.trainer.project_dir), Path(settings.trainer.eval_dir))

    def labels(self) -> frozenset[str]:
        """The intents a trainer may choose: the domain's spoken intents."""
        return domain_intents(self.domain_dir) - NOT_LABELS

    def current_labels(self) -> dict[str, str]:
        """Each labelled sentence (comparable) and its label, held-out ones included."""
        entries, held_notes = read_review(self.review_file)
        return {comparable(entry.text): entry.intent for entry in held_notes + entries}

    def label(self, text: str, intent: str, *, call: str, by: str, now: float | None = None,
              expected: str | None = UNCHECKED) -> LabelResult:
        """Labels `text`. With `expected` (the label the trainer saw, None for none), refuses with LabelConflict
        when the sentence's label is another by now: two trainers never overwrite each other unseen."""
        if intent not in self.labels():
            raise LabelRefused(f"{intent!r} is not an intent of the domain a caller can say")
        sentence = clean_sentence(text)
        key = comparable(sentence)
        if in_eval_set(key, eval_sentences(self.eval_dir)):
            raise LabelRefused("this sentence is in the external evaluation set (or a near copy of one of its "
                               "sentences): it is never trained on")
        call = call if re.fullmatch(r"[0-9a-f]{1,64}", call or "") else "unknown"
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))
        entry = Entry(call=call, at=at, by=clean_by(by), intent=intent, text=sentence)
        with locked(self.review_file):
            if expected != UNCHECKED:
                present = self.current_labels().get(key)
                if present != (expected or None):
                    raise LabelConflict(f"this sentence is labelled {present or 'nothing'} by now, not "
                                        f"{expected or 'nothing'} as shown: reload and label again if still wrong")
            return self._write(entry, key)

    def _write(self, entry: Entry, key: str) -> LabelResult:
        entries, held_notes = read_review(self.review_file)
        heldout = [ex for ex in split_nlu.read_heldout(self.heldout_file)
                   if comparable(split_nlu.plain_text(ex.text)) == key]
        if heldout and all(ex.intent == entry.intent for ex in heldout):
            return LabelResult("unchanged", entry.intent, entry.text, f"already held out as {entry.intent}")
        labelled = [note for note in held_notes if comparable(note.text) == key]
        if heldout and labelled and len(heldout) == 1:
            return self._relabel_heldout(entry, heldout[0], entries, held_notes)
        if heldout:
            raise LabelRefused("this sentence is in the held-out split (tests/nlu/heldout.yml) from the project's own "
                               "data: it measures the model and is never trained on (change it there by hand)")
        for example in split_nlu.read_training(self.nlu_dir):
            if example.path.name != REVIEW_FILE_NAME and comparable(split_nlu.plain_text(example.text)) == key:
                if example.intent == entry.intent:
                    return LabelResult("unchanged", entry.intent, entry.text,
                                       f"already in {example.path.name} as {entry.intent}: nothing to do")
                raise LabelRefused(f"this sentence is in {example.path.name} as {example.intent}: settle that "
                                   "contradiction there by hand")
        same = [e for e in entries if comparable(e.text) == key]
        if same and len(same) == 1 and same[0].intent == entry.intent:
            return LabelResult("unchanged", entry.intent, entry.text, f"already labelled {entry.intent}: nothing to do")
        if same:  # relabelled: the sentence stays as first written (its split was decided on that text)
            entry = dataclasses.replace(entry, text=same[0].text)
        elif split_nlu.is_heldout(entry.text):
            return self._add_heldout(entry, entries, held_notes)
        kept = [e for e in entries if comparable(e.text) != key] + [entry]
        text = render_entries(kept, held_notes)
        check_rasa_yaml(text, kept)
        write_atomically(self.review_file, text)
        if same:
            return LabelResult("relabelled", entry.intent, entry.text,
                               f"relabelled {same[0].intent} → {entry.intent} in data/nlu/{REVIEW_FILE_NAME}")
        return LabelResult("added", entry.intent, entry.text,
                           f"labelled {entry.intent} in data/nlu/{REVIEW_FILE_NAME}: `make train` to learn it")

    def _add_heldout(self, entry: Entry, entries: list[Entry], held_notes: list[Entry]) -> LabelResult:
        """A sentence of the held-out 20% (scripts/split_nlu.py) joins the held-out file, written as that script
        writes it; its provenance note goes to the review file first (a crash in between leaves a note without a
        sentence, harmless, never a labelled sentence without its provenance)."""
        self._write_review(entries, held_notes + [entry])
        by_intent: dict[str, list[str]] = {}
        for example in split_nlu.read_heldout(self.heldout_file):
            by_intent.setdefault(example.intent, []).append(example.text)
        by_intent.setdefault(entry.intent, []).append(entry.text)
        split_nlu.write_heldout(by_intent, self.heldout_file)
        return LabelResult("heldout", entry.intent, entry.text,
                           f"labelled {entry.intent}; the sentence falls in the held-out 20% (scripts/split_nlu.py), "
                           "so it went to tests/nlu/heldout.yml to measure the model, not to train it")

    def _relabel_heldout(self, entry: Entry, held: split_nlu.Example, entries: list[Entry],
                         held_notes: list[Entry]) -> LabelResult:
        """A trainer's own earlier label in the held-out file, corrected: the sentence moves to the new intent."""
        by_intent: dict[str, list[str]] = {}
        for example in split_nlu.read_heldout(self.heldout_file):
            if example.text != held.text:
                by_intent.setdefault(example.intent, []).append(example.text)
        by_intent.setdefault(entry.intent, []).append(held.text)
        key = comparable(entry.text)
        notes = [n for n in held_notes if comparable(n.text) != key] + [dataclasses.replace(entry, text=held.text)]
        self._write_review(entries, notes)
        split_nlu.write_heldout(by_intent, self.heldout_file)
        return LabelResult("relabelled", entry.intent, held.text,
                           f"relabelled {held.intent} → {entry.intent} in tests/nlu/heldout.yml")

    def _write_review(self, entries: list[Entry], held_notes: list[Entry]) -> None:
        text = render_entries(entries, held_notes)
        check_rasa_yaml(text, entries)
        write_atomically(self.review_file, text)
