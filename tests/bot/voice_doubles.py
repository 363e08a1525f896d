"""Test doubles for the voice-loop tests (tests only): a scripted recognizer, a fake Rasa, a call harness.

- `ScriptedSTT` is a pipecat STTService that, for each stretch of speech Silero detects in the (real, espeak-made)
  caller audio, emits the next scripted transcript: an interim one while speech goes on, the final one at the
  VAD pause. It stands in for Vosk so the turn logic can be tested with known words.
- `ScriptedRasa` is an aiohttp server speaking the REST call contract, replying from a dict, optionally slowly.
- `CallHarness` builds a real VoiceRuntime/CallHandle around them and records what telephony would see.
- `QuietCall` is a CallHandle that does nothing, for tests of the doors and sessions around a call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import subprocess
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from pipecat.frames.frames import (
    Frame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import STTService
from pipecat.utils.time import time_now_iso8601

import settings as settings_module
from bot.call import CallHandle, CallInfo, VoiceRuntime
from bot.call_records import CallRecordWriter
from bot.rasa_client import RasaClient
from bot.services.espeak.tts import EspeakTTSService

CALLER = "13800000001"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def espeak_pcm(text: str, path: Path, rate: int = 8000) -> bytes:
    """Mandarin speech from espeak-ng as 16-bit mono PCM at `rate` (cached in `path`)."""
    if not path.exists():
        wav = path.with_suffix(".wav")
        subprocess.run(["espeak-ng", "-v", "cmn", "-w", str(wav), text], check=True)
        subprocess.run(["sox", str(wav), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer",
                        "-t", "raw", str(path)], check=True)
    return path.read_bytes()


class ScriptedSTT(STTService):
    """Emits scripted transcripts for successive stretches of speech (test-only stand-in for Vosk)."""

    def __init__(self, script: list[str], **kwargs) -> None:
        super().__init__(settings=STTSettings(model=None, language=None), ttfs_p99_latency=0.2, **kwargs)
        self._script = list(script)
        self._speaking = False
        self._interim_sent = False
        self._speech_bytes = 0

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        if self._speaking and self._script:
            self._speech_bytes += len(audio)
            # An interim after ~200 ms of speech, like a streaming recognizer's first partial.
            if not self._interim_sent and self._speech_bytes >= self.sample_rate * 2 * 0.2:
                self._interim_sent = True
                yield InterimTranscriptionFrame(self._script[0], "", time_now_iso8601())
        yield None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._speaking, self._interim_sent, self._speech_bytes = True, False, 0
        elif isinstance(frame, VADUserStoppedSpeakingFrame) and self._speaking:
            self._speaking = False
            if self._script:
                await super().process_frame(frame, direction)
                await self.push_frame(TranscriptionFrame(self._script.pop(0), "", time_now_iso8601(), finalized=True))
                return
        await super().process_frame(frame, direction)


@dataclass
class ScriptedRasa:
    """Replies to each message from `replies` (exact message → reply items); unknown messages get "好的。"."""

    replies: dict[str, list[dict[str, Any]]]
    delay_s: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)
    # message -> Rasa's parse of it (intent, intent_ranking), served as the tracker's user events
    parses: dict[str, dict[str, Any]] = field(default_factory=dict)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[str]:
        return [p["message"] for p in self.received]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhooks/rest/webhook", self._webhook)
        app.router.add_get("/conversations/{sender}/tracker", self._tracker)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _webhook(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.received.append(payload)
        self.received_at.append(time.monotonic())
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        reply = self.replies.get(payload["message"], [{"text": "好的。"}])
        return web.json_response([{"recipient_id": payload["sender"], **item} for item in reply])

    async def _tracker(self, request: web.Request) -> web.Response:
        last = self.messages[-1] if self.messages else ""
        name = last[1:].split("{")[0] if last.startswith("/") else "inform"
        events = [{"event": "user", "text": text, "parse_data": {"text": text, **self.parses[text]}}
                  for text in self.messages if text in self.parses]
        return web.json_response({"latest_message": {"text": last, "intent": {"name": name}}, "events": events})


@dataclass
class CallHarness:
    """One call against a ScriptedRasa, recording telephony's view: audio chunk times, clears, handoffs, hangups."""

    call: CallHandle
    runtime: VoiceRuntime
    audio_times: list[float] = field(default_factory=list)
    audio_bytes: int = 0
    clears: list[float] = field(default_factory=list)
    handoffs: list[dict[str, Any]] = field(default_factory=list)
    handoff_times: list[float] = field(default_factory=list)
    hangups: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def create(cls, rasa: ScriptedRasa, *, script: list[str] | None, tmp_path: Path, sample_rate: int = 8000,
               rasa_timeout_s: float = 1.0, hold_after_s: float | None = None,
               **voice_overrides: Any) -> "CallHarness":
        """rasa_timeout_s: how long the call waits for a reply; hold_after_s: when 「请稍候」 is said (never unless set)."""
        base = settings_module.Settings()
        voice = dataclasses.replace(base.voice, **voice_overrides)
        gateway = dataclasses.replace(base.gateway, call_records_dir=str(tmp_path / "calls"))
        rasa_settings = dataclasses.replace(base.rasa, url=rasa.url,
                                            timeout_s=hold_after_s if hold_after_s is not None else 3600.0)
        settings = dataclasses.replace(base, voice=voice, gateway=gateway, rasa=rasa_settings)
        runtime = VoiceRuntime(
            settings=settings,
            rasa=RasaClient(rasa.url, "t", timeout_s=rasa_timeout_s),
            tts_factory=lambda rate: EspeakTTSService(sample_rate=rate),
            stt_factory=(lambda: ScriptedSTT(script)) if script is not None else None,
            record_writer=CallRecordWriter(tmp_path / "calls"),
        )
        call = runtime.create_call(CallInfo(call_id=f"test-{time.monotonic_ns()}", caller_number=CALLER,
                                            sample_rate=sample_rate))
        return cls.attach(runtime, call)

    @classmethod
    def attach(cls, runtime: VoiceRuntime, call: CallHandle) -> "CallHarness":
        """Records telephony's view of an existing call."""
        harness = cls(call=call, runtime=runtime)
        call.on_audio = harness._on_audio
        call.on_clear = lambda: harness.clears.append(time.monotonic())
        call.on_handoff = harness._on_handoff
        call.on_hangup = harness._on_hangup
        call.on_event = harness.events.append
        return harness

    async def ended_record(self, records_dir: Path, timeout_s: float = 15.0) -> dict[str, Any]:
        """This call's record as written to `records_dir` once the bot has hung up."""
        await self.wait_for(lambda: self.hangups, timeout=timeout_s)
        await self.wait_for(lambda: not self.call.running, timeout=timeout_s)
        records = [json.loads(line) for path in records_dir.glob("calls-*.jsonl")
                   for line in path.read_text().splitlines()]
        return next(record for record in records if record["call_id"] == self.call.info.call_id)

    def bot_texts(self) -> list[str]:
        """Every text the bot said on this call, in order (its `bot` events)."""
        return [text for event in self.events if event["type"] == "bot" for text in event["texts"]]

    def _on_audio(self, pcm16: bytes) -> None:
        self.audio_times.append(time.monotonic())
        self.audio_bytes += len(pcm16)

    async def _on_handoff(self, event: dict[str, Any]) -> None:
        self.handoffs.append(event)
        self.handoff_times.append(time.monotonic())

    async def _on_hangup(self) -> None:
        self.hangups += 1

    def bot_is_speaking(self, within_s: float = 0.1) -> bool:
        return bool(self.audio_times) and time.monotonic() - self.audio_times[-1] < within_s

    async def feed_realtime(self, pcm16: bytes, chunk_ms: int = 20) -> None:
        """Plays caller audio into the call at real-time pace, as telephony would."""
        rate = self.call.info.sample_rate
        step = rate * 2 * chunk_ms // 1000
        started = time.monotonic()
        for index, offset in enumerate(range(0, len(pcm16), step)):
            self.call.feed_audio(pcm16[offset:offset + step])
            await asyncio.sleep(max(0.0, started + (index + 1) * chunk_ms / 1000 - time.monotonic()))

    async def feed_silence(self, seconds: float) -> None:
        await self.feed_realtime(b"\x00\x00" * int(self.call.info.sample_rate * seconds))

    async def wait_for(self, condition: Callable[[], bool], timeout: float, step: float = 0.02) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s")
            await asyncio.sleep(step)

    async def wait_until_quiet(self, quiet_s: float = 0.3, timeout: float = 20.0) -> None:
        """Waits until the bot has spoken and then stayed silent for `quiet_s`."""
        await self.wait_for(lambda: bool(self.audio_times) and not self.bot_is_speaking(quiet_s), timeout)

    async def close(self) -> None:
        await self.call.stop("test_end")
        await self.runtime.close()


class QuietCall:
    """The voice loop's CallHandle as a door sees it, doing nothing: the session around it is what a test watches.
    Subclass and override what the test needs (a greeting, recorded keys, a failing stop)."""

    def __init__(self, info) -> None:
        self.info = info
        self.on_audio = self.on_clear = self.on_handoff = self.on_hangup = None
        self.stop_cause: str | None = None

    async def start(self) -> None:
        pass

    def feed_audio(self, pcm16: bytes) -> None:
        pass

    def feed_dtmf(self, key: str) -> None:
        pass

    def transfer_result(self, ok: bool, detail: str = "") -> None:
        pass

    async def stop(self, cause: str = "remote_hangup") -> None:
        self.stop_cause = cause
