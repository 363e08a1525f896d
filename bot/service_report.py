"""The figures that matter, from the call records and CDRs the gateway writes (`make report`).

    python -m bot.service_report [--dir var/calls | --db postgresql+psycopg://...]

Read from PostgreSQL when CALL_RECORDS_DB_URL is set (every gateway of a cluster writes there), else from the
JSON Lines files in CALL_RECORDS_DIR; `--dir` or `--db` choose explicitly. The figures are the same either way.

- 智能服务占比 (bot service share): calls the bot served to the end without a person, out of all calls that were
  not abandoned before the bot could answer.
- 智能交互解决率 (bot resolution rate): the same served calls, out of the calls the bot tried to serve, i.e. leaving
  out transfers the caller asked for outright (「人工」, 「绿色通道」, key 0): those are a choice, not a failure.
- Green-channel time to agent: from call answer to the agent answering (the REFER's NOTIFY 200; SIP CDRs).
- Voice-to-voice latency: end of caller speech to first bot audio, over all turns.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from call_contract import REASON_GREEN_CHANNEL, REASON_HUMAN_AGENT
from settings import get_settings

CALLER_CHOSE_A_PERSON = frozenset({REASON_HUMAN_AGENT, REASON_GREEN_CHANNEL})


@dataclass(frozen=True)
class ServiceFigures:
    calls: int
    abandoned: int
    served_by_bot: int
    handoffs: int
    handoffs_caller_chose: int
    voice_to_voice_ms: list[float]
    green_time_to_agent_s: list[float]

    @property
    def service_share(self) -> float | None:
        return _ratio(self.served_by_bot, self.calls - self.abandoned)

    @property
    def resolution_rate(self) -> float | None:
        return _ratio(self.served_by_bot, self.served_by_bot + self.handoffs - self.handoffs_caller_chose)


def read_jsonl(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Records from JSON-lines files; a damaged line (e.g. cut by a crash) is skipped, not fatal."""
    for path in sorted(paths):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    yield record


def compute(call_records: Iterable[dict[str, Any]], cdrs: Iterable[dict[str, Any]]) -> ServiceFigures:
    outcomes: list[tuple[str | None, str | None]] = []
    latencies: list[float] = []
    for record in call_records:
        outcomes.append((record.get("outcome"), record.get("handoff_reason")))
        latencies += [turn["voice_to_voice_ms"] for turn in record.get("turn_metrics") or []
                      if isinstance(turn.get("voice_to_voice_ms"), (int, float))]
    green = [cdr["time_to_agent_s"] for cdr in cdrs
             if cdr.get("green_channel") and isinstance(cdr.get("time_to_agent_s"), (int, float))]
    return ServiceFigures(
        calls=len(outcomes),
        abandoned=sum(outcome == "abandoned" for outcome, _ in outcomes),
        served_by_bot=sum(outcome == "served_by_bot" for outcome, _ in outcomes),
        handoffs=sum(outcome == "handoff" for outcome, _ in outcomes),
        handoffs_caller_chose=sum(outcome == "handoff" and reason in CALLER_CHOSE_A_PERSON
                                  for outcome, reason in outcomes),
        voice_to_voice_ms=latencies,
        green_time_to_agent_s=green,
    )


def render(figures: ServiceFigures) -> str:
    return "\n".join([
        f"calls={figures.calls} abandoned={figures.abandoned} served_by_bot={figures.served_by_bot} "
        f"handoffs={figures.handoffs} (caller chose a person: {figures.handoffs_caller_chose})",
        f"智能服务占比 (bot service share): {_percent(figures.service_share)}",
        f"智能交互解决率 (bot resolution rate): {_percent(figures.resolution_rate)}",
        f"green channel time to agent: {_spread(figures.green_time_to_agent_s, 's')}",
        f"voice-to-voice latency: {_spread(figures.voice_to_voice_ms, 'ms')}",
    ])


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole > 0 else None


def _percent(value: float | None) -> str:
    return "n/a (no calls)" if value is None else f"{value:.1%}"


def _spread(values: list[float], unit: str) -> str:
    if not values:
        return "n/a (no samples)"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"n={len(ordered)} p50={statistics.median(ordered):.1f}{unit} p95={p95:.1f}{unit} max={ordered[-1]:.1f}{unit}"


def figures_from_files(folder: Path) -> ServiceFigures:
    return compute(read_jsonl(folder.glob("calls-*.jsonl")), read_jsonl(folder.glob("cdr-*.jsonl")))


def figures_from_database(db_url: str) -> ServiceFigures | None:
    """The figures over every gateway's records in the database; None when no gateway has written there yet.
    Raises ValueError for a URL that is not PostgreSQL, sqlalchemy's errors when the database does not answer."""
    from bot.record_sinks import KIND_CALLS, KIND_CDR
    from bot.records_db import read_documents, records_engine, tables_exist

    engine = records_engine(db_url)
    try:
        if not tables_exist(engine):
            return None
        return compute(read_documents(engine, KIND_CALLS), read_documents(engine, KIND_CDR))
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    settings = get_settings().gateway
    parser = argparse.ArgumentParser(prog="python -m bot.service_report", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dir", help="folder with calls-*.jsonl and cdr-*.jsonl "
                                      "(default: CALL_RECORDS_DIR, when CALL_RECORDS_DB_URL is empty)")
    source.add_argument("--db", help="the records database's URL (default: CALL_RECORDS_DB_URL)")
    args = parser.parse_args(argv)
    db_url = args.db if args.db is not None else ("" if args.dir else settings.call_records_db_url.strip())
    if db_url:
        try:
            figures = figures_from_database(db_url)
        except Exception as error:  # a dead or wrong database: say so in one line, not a stack trace
            print(f"cannot read the call records database: {_one_line(error)}", file=sys.stderr)
            return 1
        if figures is None:
            print("no call records yet: the database has no call-record tables (make a few calls first)",
                  file=sys.stderr)
            return 1
    else:
        folder = Path(args.dir or settings.call_records_dir)
        if not folder.is_dir():
            print(f"no call records yet: {folder} does not exist (make a few calls first)", file=sys.stderr)
            return 1
        figures = figures_from_files(folder)
    print(render(figures))
    return 0


def _one_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


if __name__ == "__main__":
    sys.exit(main())
