"""The trainers' review list: caller turns from the call records that the bot did not understand well (`make review`).

    python -m bot.nlu_review [--dir var/calls | --db postgresql+psycopg://...] [--json]
    python -m bot.nlu_review label <key> <intent>|--out-of-scope [--by NAME]

Each caller turn of a record carries `nlu` (bot/processors/rasa_bridge.py `nlu_note`): the intent the classifier
predicted, its confidence, and whether Rasa's FallbackClassifier turned it into nlu_fallback. A turn is listed when:
- `nlu_fallback`: the classifier was unsure (below config.yml's threshold, or two intents too close);
- `low_confidence`: understood, but below settings.trainer.low_confidence (NLU_REVIEW_LOW_CONFIDENCE);
- `three_strikes`: one of the not-understood turns in a row (nlu_fallback or out_of_scope) that ended in the
  dialogue's 3-strike escalation, i.e. a handoff with reason nlu_fallback (actions/service.py ActionNotUnderstood).
The list is grouped by predicted intent. Texts are the records' own: long digit runs already `****`; secure turns
(`****`, never noted) and keypad turns are never listed. The call's id is never shown, only a digest of it. A turn
is named by its key, `<day>-<call digest>-<turn index>` (the UTC day the call started, YYYYMMDD), so labelling it
reads that day's records only.

The list covers a window of days (settings.trainer.review_days, NLU_REVIEW_DAYS; `--days`), leaves out the calls of
the developers' doors (bot/call_ids.py DEVELOPER_DOORS: the web console, the voice page, `make call`) unless asked,
merges identical sentences into one item with a count, and shows at most settings.trainer.max_listed items.

Records are read like `make report` (bot/kpi_sources.py): PostgreSQL when CALL_RECORDS_DB_URL is set, else the
JSON Lines files in CALL_RECORDS_DIR.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import hashlib
import json
import re
import sys
import time
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from bot.call_ids import DEVELOPER_DOORS, door_of
from call_contract import NLU_FALLBACK_INTENT, NOT_UNDERSTOOD_INTENTS, REASON_NLU_FALLBACK, SECURE_MASK
from settings import Settings, get_settings

REASON_FALLBACK = NLU_FALLBACK_INTENT
REASON_LOW_CONFIDENCE = "low_confidence"
REASON_THREE_STRIKES = "three_strikes"
REASONS = (REASON_FALLBACK, REASON_LOW_CONFIDENCE, REASON_THREE_STRIKES)
NOT_UNDERSTOOD = NOT_UNDERSTOOD_INTENTS
_KEY = re.compile(r"^(?P<day>\d{8})-(?P<call>[0-9a-f]{16})-(?P<index>\d{1,6})$")
REVIEWED_SOURCES = frozenset({"speech"})  # the caller's words; keypad turns are not NLU
UNKNOWN_INTENT = "(unknown)"


@dataclass(frozen=True)
class ReviewItem:
    """One caller turn to review. `key` names it for labelling (`<day>-<call digest>-<turn index>`); `count` is how
    many listed turns said the same sentence (this one the newest), `labelled` its current label, if any."""

    key: str
    call: str  # digest of the call id
    when: float  # epoch seconds of the turn
    text: str  # as recorded: masked where the record masked it
    intent: str  # the classifier's prediction (its best guess when it fell back)
    confidence: float | None
    reasons: tuple[str, ...]
    count: int = 1
    labelled: str | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["reasons"] = list(self.reasons)
        return data


def call_digest(call_id: str) -> str:
    """A stable name for a call that does not give its id away (trainers see it; the id stays in the records)."""
    return hashlib.sha256(f"ivr-review-call\n{call_id}".encode("utf-8", "replace")).hexdigest()[:16]


def review_items(records: Iterable[dict[str, Any]], *, low_confidence: float,
                 include_developers: bool = False) -> Iterator[ReviewItem]:
    """The turns of these call records that need a trainer's eye, in record order; the developers' test calls
    (bot/call_ids.py DEVELOPER_DOORS) only when asked."""
    for record in records:
        if isinstance(record, dict) and (include_developers or not developer_call(record)):
            yield from _items_of(record, low_confidence)


def developer_call(record: dict[str, Any]) -> bool:
    """A call of the developers' doors (the web console, the voice page, `make call`), by its channel or its id."""
    return record.get("channel") in DEVELOPER_DOORS or door_of(str(record.get("call_id") or "")) in DEVELOPER_DOORS


def started_day(record: dict[str, Any]) -> date | None:
    started = record.get("started_at")
    if not isinstance(started, (int, float)) or isinstance(started, bool) or not 0 < started < 32503680000:
        return None
    return datetime.fromtimestamp(started, timezone.utc).date()


def parse_key(key: str) -> tuple[date, str, int] | None:
    """(day, call digest, turn index) of a listed turn's key; None for anything else."""
    match = _KEY.match(key or "")
    if not match:
        return None
    try:
        day = datetime.strptime(match["day"], "%Y%m%d").date()
    except ValueError:
        return None
    return day, match["call"], int(match["index"])


def _items_of(record: dict[str, Any], low_confidence: float) -> Iterator[ReviewItem]:
    transcript = record.get("transcript")
    if not isinstance(transcript, list):
        return
    call = call_digest(str(record.get("call_id") or ""))
    day = started_day(record)
    if day is None:  # no start time: no day to name the turn by
        return
    started = record["started_at"]
    noted = [(index, turn) for index, turn in enumerate(transcript) if _reviewable(turn)]
    escalated = _three_strike_turns(noted) if record.get("handoff_reason") == REASON_NLU_FALLBACK else set()
    for index, turn in noted:
        nlu = turn["nlu"]
        confidence = nlu.get("confidence") if isinstance(nlu.get("confidence"), (int, float)) else None
        reasons = []
        if nlu.get("fallback"):
            reasons.append(REASON_FALLBACK)
        elif confidence is not None and confidence < low_confidence:
            reasons.append(REASON_LOW_CONFIDENCE)
        if index in escalated:
            reasons.append(REASON_THREE_STRIKES)
        if reasons:
            t = turn.get("t") if isinstance(turn.get("t"), (int, float)) else 0.0
            yield ReviewItem(key=f"{day:%Y%m%d}-{call}-{index}", call=call, when=round(started + t, 3),
                             text=turn["text"], intent=str(nlu.get("intent") or UNKNOWN_INTENT), confidence=confidence,
                             reasons=tuple(reasons))


def _reviewable(turn: Any) -> bool:
    """A caller's own words with an NLU note; secure turns (`****`, never noted) and keys are left out."""
    return (isinstance(turn, dict) and turn.get("who") == "caller" and turn.get("source") in REVIEWED_SOURCES
            and isinstance(turn.get("nlu"), dict) and isinstance(turn.get("text"), str)
            and turn["text"] != SECURE_MASK and bool(turn["text"].strip()))


def _three_strike_turns(noted: list[tuple[int, dict[str, Any]]]) -> set[int]:
    """The run of not-understood turns at the end of a call handed over for nlu_fallback: the 3 strikes."""
    run: set[int] = set()
    for index, turn in reversed(noted):
        nlu = turn["nlu"]
        if not (nlu.get("fallback") or nlu.get("intent") in NOT_UNDERSTOOD):
            break
        run.add(index)
    return run


def grouped(items: Iterable[ReviewItem], *, limit: int | None = None) -> dict[str, list[ReviewItem]]:
    """Items by predicted intent, the largest group first; newest turns first inside a group. The same sentence
    said in several turns is one item (the newest) with its count; with `limit`, only that many items in all (the
    most said first), so a month of calls never makes a page of megabytes."""
    from bot.nlu_labels import comparable

    merged: dict[tuple[str, str], ReviewItem] = {}
    for item in items:
        same = (item.intent, comparable(item.text) or item.text)
        known = merged.get(same)
        if known is None:
            merged[same] = item
        else:
            newest = item if item.when > known.when else known
            merged[same] = dataclasses.replace(newest, count=known.count + item.count)
    kept = list(merged.values())
    if limit is not None and len(kept) > limit:
        kept = sorted(kept, key=lambda item: (-item.count, -item.when))[:max(limit, 0)]
    groups: dict[str, list[ReviewItem]] = {}
    for item in kept:
        groups.setdefault(item.intent, []).append(item)
    for members in groups.values():
        members.sort(key=lambda item: item.when, reverse=True)
    return dict(sorted(groups.items(), key=lambda pair: (-sum(i.count for i in pair[1]), pair[0])))


def with_labels(groups: dict[str, list[ReviewItem]], labels: dict[str, str]) -> dict[str, list[ReviewItem]]:
    """The items with their sentence's current label (bot/nlu_labels.py Labeller.current_labels)."""
    from bot.nlu_labels import comparable

    return {intent: [dataclasses.replace(item, labelled=labels.get(comparable(item.text))) for item in members]
            for intent, members in groups.items()}


# -- reading the records ----------------------------------------------------------------------------------------

class NoRecords(Exception):
    """There are no call records to read (yet); the message says where none were found."""


def read_jsonl(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Records from JSON Lines files; a damaged line (cut by a crash) is skipped, not fatal."""
    for path in sorted(paths):
        try:
            lines = path.open(encoding="utf-8", errors="replace")
        except FileNotFoundError:  # removed since it was listed
            continue
        with lines:
            for line in lines:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    yield record


@dataclass(frozen=True)
class Window:
    """The UTC days whose calls (by the day they started) are read: `first` to `last`, both included."""

    first: date
    last: date

    @classmethod
    def last_days(cls, days: int, *, now: float | None = None) -> "Window":
        today = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc).date()
        return cls(today - timedelta(days=max(days, 1) - 1), today)

    @classmethod
    def day(cls, day: date) -> "Window":
        return cls(day, day)

    def holds(self, record: dict[str, Any]) -> bool:
        day = started_day(record)
        return day is not None and self.first <= day <= self.last


def records_from_files(folder: Path, window: Window) -> Iterator[dict[str, Any]]:
    """The records of calls started in the window: a file is a UTC day of calls *ended*, so the day after the
    window's last is read too (a call past midnight)."""
    if not folder.is_dir():
        raise NoRecords(f"no call records yet: {folder.name or folder} does not exist (make a few calls first)")
    days, day = [], window.first
    while day <= window.last + timedelta(days=1):
        days.append(folder / f"calls-{day:%Y%m%d}.jsonl")
        day += timedelta(days=1)
    return (record for record in read_jsonl(path for path in days if path.exists()) if window.holds(record))


def records_from_database(db_url: str, window: Window) -> Iterator[dict[str, Any]]:
    """The call records of calls started in the window, streamed. Raises NoRecords before any gateway wrote there,
    sqlalchemy's errors when the database does not answer."""
    from bot.record_sinks import KIND_CALLS
    from bot.records_db import read_documents, records_engine, tables_exist

    engine = records_engine(db_url)
    try:
        if not tables_exist(engine):
            raise NoRecords("no call records yet: the database has no call-record tables (make a few calls first)")
        start = datetime.combine(window.first, datetime.min.time(), timezone.utc)
        end = datetime.combine(window.last + timedelta(days=1), datetime.min.time(), timezone.utc)
        yield from read_documents(engine, KIND_CALLS, started_from=start, started_before=end)
    finally:
        engine.dispose()


def load_records(settings: Settings, window: Window, *, folder: str | None = None,
                 db_url: str | None = None) -> Iterator[dict]:
    """The call records of the window from `db_url`, `folder`, or where the settings say (the database when one is
    set). NoRecords is raised at once, not when the first record is read."""
    url = db_url if db_url is not None else ("" if folder else settings.gateway.call_records_db_url.strip())
    if url:
        records = records_from_database(url, window)
        first = next(records, None)  # opens the database now: NoRecords and connection errors surface here
        return iter(()) if first is None else _chain_first(first, records)
    return records_from_files(Path(folder or settings.gateway.call_records_dir), window)


def _chain_first(first: dict, rest: Iterator[dict]) -> Iterator[dict]:
    yield first
    yield from rest


def find_item(records: Iterable[dict[str, Any]], key: str, *, low_confidence: float,
              include_developers: bool = True) -> ReviewItem | None:
    """The listed turn named `key`; None when no listed turn has it (labels are for listed turns only)."""
    return next((item for item in review_items(records, low_confidence=low_confidence,
                                               include_developers=include_developers) if item.key == key), None)


def find_listed(settings: Settings, key: str, *, folder: str | None = None,
                db_url: str | None = None) -> ReviewItem | None:
    """The listed turn named `key`, reading only the records of its day."""
    parsed = parse_key(key)
    if parsed is None:
        return None
    records = load_records(settings, Window.day(parsed[0]), folder=folder, db_url=db_url)
    return find_item(records, key, low_confidence=settings.trainer.low_confidence)


# -- the terminal -------------------------------------------------------------------------------------------------

def render(groups: dict[str, list[ReviewItem]], *, low_confidence: float) -> str:
    if not groups:
        return "nothing to review: every noted caller turn was understood with enough confidence"
    total = sum(item.count for members in groups.values() for item in members)
    lines = [f"{total} caller turns to review (low confidence: below {low_confidence:g}), by predicted intent"]
    for intent, members in groups.items():
        lines.append(f"\n== {intent} ({sum(item.count for item in members)})")
        for item in members:
            confidence = "  -  " if item.confidence is None else f"{item.confidence:.2f}"
            said = f"×{item.count} " if item.count > 1 else ""
            labelled = f"  [labelled {item.labelled}]" if item.labelled else ""
            lines.append(f"  {item.key}  {confidence}  {','.join(item.reasons):<28} {said}{_one_line(item.text)}"
                         f"{labelled}")
    lines.append("\nlabel one: make label KEY=<key> INTENT=<intent>   (INTENT=out_of_scope: not a banking request)")
    return "\n".join(lines)


def _one_line(text: str) -> str:
    """A transcript text safe to print on one terminal line (no control characters: ASR text is caller input)."""
    return "".join(ch if ch.isprintable() else " " for ch in text)[:200]


def terminal_json(data: Any) -> str:
    """JSON for a terminal: caller text stays readable, but controls, C1 and bidirectional marks are escaped."""
    dumped = json.dumps(data, ensure_ascii=False, indent=1)
    return "".join(ch if ch.isprintable() or ch == "\n" else f"\\u{ord(ch):04x}" if ord(ch) < 0x10000
                   else ch.encode("utf-16-be").hex() for ch in dumped)


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m bot.nlu_review", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dir", help="folder with calls-*.jsonl (default: CALL_RECORDS_DIR)")
    source.add_argument("--db", help="the records database's URL (default: CALL_RECORDS_DB_URL)")
    parser.add_argument("--json", action="store_true", help="print the groups as JSON")
    parser.add_argument("--days", type=int, default=settings.trainer.review_days,
                        help="the calls of this many days, today's included (default: NLU_REVIEW_DAYS)")
    parser.add_argument("--include-developers", action="store_true",
                        help="list the developers' test calls too (web console, voice page, make call)")
    commands = parser.add_subparsers(dest="command")
    label = commands.add_parser("label", help="label a listed turn with the right intent")
    label.add_argument("key", help="the turn's key, as listed")
    label.add_argument("intent", nargs="?", help="an intent of the domain")
    label.add_argument("--out-of-scope", action="store_true", help="not a banking request (intent out_of_scope)")
    label.add_argument("--by", default=None, help="who labels (default: your login name)")
    args = parser.parse_args(argv)
    low = settings.trainer.low_confidence
    if args.command == "label" and bool(args.intent) == bool(args.out_of_scope):
        print("give the right intent, or --out-of-scope (not both)", file=sys.stderr)
        return 2
    try:
        if args.command == "label":
            return _label(args, settings)
        records = load_records(settings, Window.last_days(args.days), folder=args.dir, db_url=args.db)
        groups = grouped(review_items(records, low_confidence=low, include_developers=args.include_developers),
                         limit=settings.trainer.max_listed)
    except NoRecords as error:
        print(error, file=sys.stderr)
        return 1
    except Exception as error:  # a dead or wrong database: one line, not a stack trace
        print(f"cannot read the call records: {type(error).__name__}: {str(error).splitlines()[0][:300]}",
              file=sys.stderr)
        return 1
    groups = _labelled(groups, settings)
    if args.json:
        print(terminal_json({intent: [item.as_json() for item in members] for intent, members in groups.items()}))
    else:
        print(render(groups, low_confidence=low))
    return 0


def _labelled(groups: dict[str, list[ReviewItem]], settings: Settings) -> dict[str, list[ReviewItem]]:
    from bot.nlu_labels import LabelRefused, Labeller

    try:
        return with_labels(groups, Labeller.from_settings(settings).current_labels())
    except LabelRefused:  # a review file edited by hand: the list is still worth showing
        return groups


def _label(args: argparse.Namespace, settings: Settings) -> int:
    from bot.nlu_labels import OUT_OF_SCOPE, LabelRefused, Labeller

    item = find_listed(settings, args.key, folder=args.dir, db_url=args.db)
    if item is None:
        print(f"no listed turn has the key {args.key!r}: run `make review` for the keys", file=sys.stderr)
        return 1
    try:
        result = Labeller.from_settings(settings).label(
            item.text, OUT_OF_SCOPE if args.out_of_scope else args.intent, call=item.call,
            by=args.by or _login_name())
    except LabelRefused as refused:
        print(f"refused: {refused}", file=sys.stderr)
        return 1
    print(result.message)
    return 0


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "terminal"


if __name__ == "__main__":
    sys.exit(main())
