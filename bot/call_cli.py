"""`make call WAV=file.wav`: plays a WAV file as a caller against the running stack and prints what happens.

Connects to the gateway's `/voice/ws` (the voice page's socket, so the call runs through the same voice loop a
phone call does), waits for the greeting, streams the WAV in real time followed by silence, and prints the
caller's transcripts, the bot's replies and the per-turn timings. Exit codes: 0 the call completed (the bot
answered the caller, or handed the call over / hung up); 1 it did not; 2 bad arguments or an unreadable WAV;
3 the gateway cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import soxr

from settings import get_settings

RATE = 16000
CHUNK_MS = 20
TRAILING_SILENCE_S = 2.5
QUIET_S = 0.6
MAX_WAV_SECONDS = 300


class WavError(ValueError):
    """The file is not a WAV this tool can play."""


def read_wav_16k_mono(path: Path) -> bytes:
    """The WAV's audio as 16-bit mono PCM at 16 kHz (mixed down and resampled as needed)."""
    try:
        with wave.open(str(path), "rb") as wav:
            width, channels, rate, frames = wav.getsampwidth(), wav.getnchannels(), wav.getframerate(), wav.getnframes()
            if width != 2:
                raise WavError(f"{path}: {8 * width}-bit samples; only 16-bit PCM is supported")
            if frames / rate > MAX_WAV_SECONDS:
                raise WavError(f"{path}: longer than {MAX_WAV_SECONDS} s")
            raw = wav.readframes(frames)
    except (wave.Error, EOFError) as exc:
        raise WavError(f"{path}: not a PCM WAV file ({exc})") from exc
    except OSError as exc:
        raise WavError(f"{path}: {exc.strerror or exc}") from exc
    samples = np.frombuffer(raw, dtype="<i2").reshape(-1, channels).mean(axis=1)
    if rate != RATE:
        samples = soxr.resample(samples, rate, RATE)
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


@dataclass
class CallReport:
    """What the caller saw; `completed` decides the exit code."""

    started: float = field(default_factory=time.monotonic)
    last_audio: float = 0.0
    greeted: bool = False
    caller_turns: int = 0
    answered_turns: int = 0
    ended_by_bot: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def completed(self) -> bool:
        return self.answered_turns > 0 or self.ended_by_bot

    def stamp(self) -> str:
        return f"[{time.monotonic() - self.started:6.2f}s]"


def describe(event: dict[str, Any], report: CallReport) -> str | None:
    """One printable line for an event from the voice loop, updating the report."""
    kind = event.get("type")
    if kind == "ready":
        return f"call {event.get('call_id')} connected" + ("" if event.get("asr_available") else " (keypad only)")
    if kind == "caller":
        report.caller_turns += 1
        return f"caller: {event.get('text')}"
    if kind == "bot":
        report.greeted = True
        return "bot:    " + " ".join(event.get("texts", []))
    if kind == "metrics" and "greeting_first_audio_ms" in event:
        return f"timing: greeting first audio {event['greeting_first_audio_ms']:.0f} ms"
    if kind == "metrics":
        if report.caller_turns:
            report.answered_turns += 1
        parts = [f"{name}={event.get(key):.0f}ms" for name, key in
                 (("stt", "stt_ms"), ("rasa", "rasa_ms"), ("tts_first_audio", "tts_first_audio_ms"),
                  ("voice_to_voice", "voice_to_voice_ms")) if event.get(key) is not None]
        return "timing: " + " ".join(parts)
    if kind in ("handoff", "hangup"):
        report.ended_by_bot = True
        return f"{kind}: " + json.dumps({k: v for k, v in event.items() if k != "type"}, ensure_ascii=False)
    if kind == "barge_in":
        return "(barge-in)"
    if kind == "ended":
        report.ended.set()
        return f"call ended: {event.get('outcome')}"
    if kind == "error":
        return f"error: {event.get('error')}"
    if kind == "busy":  # the gateway is at its admission limit: it played the busy prompt and closes
        report.ended.set()
        return "busy: the gateway is taking no more calls; try again later"
    return None


async def run_call(url: str, pcm: bytes, *, caller: str, keys: str, timeout_s: float) -> CallReport:
    report = CallReport()
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url}/voice/ws", params={"caller": caller}, heartbeat=20) as ws:
            reader = asyncio.create_task(_read(ws, report))
            try:
                await _wait(lambda: report.greeted and _quiet(report), timeout_s, reader)
                await _stream(ws, pcm + b"\x00\x00" * int(RATE * TRAILING_SILENCE_S))
                for key in keys:
                    await ws.send_str(json.dumps({"type": "dtmf", "key": key}))
                    await asyncio.sleep(0.15)
                await _wait(lambda: (report.completed and _quiet(report)) or report.ended.is_set(), timeout_s, reader)
                if not ws.closed:
                    await ws.send_str(json.dumps({"type": "hangup"}))
                await _wait(report.ended.is_set, 5.0, reader)
            except TimeoutError as exc:
                print(f"{report.stamp()} {exc}")
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
    return report


def _quiet(report: CallReport) -> bool:
    return time.monotonic() - report.last_audio > QUIET_S


async def _read(ws: aiohttp.ClientWebSocketResponse, report: CallReport) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.BINARY:
            report.last_audio = time.monotonic()
        elif msg.type == aiohttp.WSMsgType.TEXT:
            line = describe(json.loads(msg.data), report)
            if line:
                print(f"{report.stamp()} {line}", flush=True)
    report.ended.set()


async def _wait(condition, timeout_s: float, reader: asyncio.Task) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if reader.done():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after waiting {timeout_s:g} s")
        await asyncio.sleep(0.05)


async def _stream(ws: aiohttp.ClientWebSocketResponse, pcm: bytes) -> None:
    """Sends audio in 20 ms chunks at real-time pace, as a phone would."""
    step = RATE * 2 * CHUNK_MS // 1000
    started = time.monotonic()
    for index, offset in enumerate(range(0, len(pcm), step)):
        await ws.send_bytes(pcm[offset:offset + step])
        await asyncio.sleep(max(0.0, started + (index + 1) * CHUNK_MS / 1000 - time.monotonic()))


def parse_args(argv: list[str]) -> argparse.Namespace:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="make call WAV=file.wav", description=__doc__.splitlines()[0])
    parser.add_argument("wav", type=Path, nargs="?", help="16-bit PCM WAV, any rate, mono or stereo")
    parser.add_argument("--url", default=f"http://{settings.gateway.host}:{settings.gateway.port}",
                        help="the gateway started by `make run`")
    parser.add_argument("--caller", default="13800000001", help="caller number sent to the dialogue")
    parser.add_argument("--keys", default="", help="keypad keys to press after the audio, e.g. '1234#'")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each answer")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.wav is None:
        print("usage: make call WAV=path/to/caller.wav", file=sys.stderr)
        return 2
    try:
        pcm = read_wav_16k_mono(args.wav)
    except WavError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(run_call(args.url.rstrip("/"), pcm, caller=args.caller, keys=args.keys,
                                      timeout_s=args.timeout))
    except (aiohttp.ClientError, OSError) as exc:
        print(f"error: cannot reach the gateway at {args.url} ({exc}); is `make run` running?", file=sys.stderr)
        return 3
    if report.completed:
        print("call completed")
        return 0
    print("call did not complete: " + ("no greeting" if not report.greeted else "the bot never answered the caller"))
    return 1


if __name__ == "__main__":
    sys.exit(main())
