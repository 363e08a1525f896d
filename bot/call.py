"""The per-call voice loop, as telephony and the consoles see it (docs/ARCHITECTURE.md, "Telephony ↔ voice loop").

    runtime = VoiceRuntime.load(settings)                 # once per process: models, Rasa client
    call = runtime.create_call(CallInfo(call_id, caller_number, sample_rate=8000))
    call.on_audio = ...; call.on_clear = ...; call.on_handoff = ...; call.on_hangup = ...
    await call.start(); call.feed_audio(pcm16); call.feed_dtmf("5"); call.transfer_result(ok, detail)
    await call.stop("remote_hangup")

One pipecat pipeline per call:
    transport in → Silero VAD → Vosk STT → TurnTaker (Smart Turn, barge-in, backchannels) → DTMFGatherer
    → NoInputLadder → RasaBridge → EngineControls → TTS → transport out
Without an ASR model the speech half is left out and the call is keypad-only (Rasa is told `asr_available: false`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pipecat.audio.turn.base_turn_analyzer import BaseTurnAnalyzer
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import Frame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.workers.runner import WorkerRunner

import settings as settings_module
from bot import metrics
from bot.admission import BUSY_TEXT, Admission, AtCapacity, BusyAudio, capacity_for, spoken_once
from bot.call_ids import door_of
from bot.caller_keys import CallerKeys
from bot.call_log import call_context, call_logger
from bot.call_records import CallRecord, CallRecordWriter
from bot.call_transport import PIPELINE_SAMPLE_RATE, CallTransport
from bot.frames import HandoffFrame, HangupFrame, TransferResultFrame
from bot.processors.call_observer import CallObserver, EventSink
from bot.processors.dtmf import DTMFGatherer
from bot.processors.engine_controls import EngineControls
from bot.processors.no_input import NoInputLadder
from bot.processors.rasa_bridge import CallMetadata, RasaBridge
from bot.processors.turns import TurnTaker
from bot.rasa_client import RasaClient

log = logging.getLogger(__name__)

SttFactory = Callable[[], FrameProcessor]
TtsFactory = Callable[[int], FrameProcessor]  # argument: the call's output sample rate
TurnAnalyzerFactory = Callable[[], BaseTurnAnalyzer]
HandoffCallback = Callable[[dict[str, Any]], Awaitable[None]]
HangupCallback = Callable[[], Awaitable[None]]

SUPPORTED_SAMPLE_RATES = (8000, 16000, 24000, 48000)
# VAD pause that ends a stretch of speech; Smart Turn then decides whether the turn is over. Every 50 ms here is
# 50 ms of voice-to-voice latency; a short pause only asks Smart Turn earlier, the END_OF_TURN_S fallback guards
# against cutting the caller off.
VAD_STOP_S = 0.15


@dataclass(frozen=True)
class CallInfo:
    """Who is calling and how their audio is framed on the wire."""

    call_id: str  # bot.call_ids.new_call_id(door)
    caller_number: str
    sample_rate: int = 8000

    def __post_init__(self) -> None:
        if not self.call_id or len(self.call_id) > 128:
            raise ValueError("call_id must be 1-128 characters")
        if self.sample_rate not in SUPPORTED_SAMPLE_RATES:
            raise ValueError(f"sample_rate {self.sample_rate} not supported; use one of {SUPPORTED_SAMPLE_RATES}")


@dataclass
class VoiceRuntime:
    """What all calls of the process share: the Rasa client, the engines' factories, settings, and the one
    admission limit every door's calls count against (bot/admission.py).

    `stt_factory` is None when no ASR model is installed: calls are then keypad-only.
    `busy_audio(sample_rate)` is the spoken busy prompt for callers turned away (None: the door just closes).
    """

    settings: settings_module.Settings
    rasa: RasaClient
    tts_factory: TtsFactory
    stt_factory: SttFactory | None = None
    turn_analyzer_factory: TurnAnalyzerFactory | None = None
    record_writer: CallRecordWriter | None = None
    busy_audio: BusyAudio | None = None
    admission: Admission | None = None  # None: sized from settings.voice (capacity_for)
    calls: dict[str, "CallHandle"] = field(default_factory=dict)
    caller_keys: CallerKeys | None = field(default=None, repr=False)  # None: from settings.gateway

    def __post_init__(self) -> None:
        if self.admission is None:
            self.admission = Admission(capacity_for(self.settings.voice))
        if self.caller_keys is None:
            self.caller_keys = CallerKeys(self.settings.gateway)

    @classmethod
    def load(cls, settings: settings_module.Settings | None = None, *, smart_turn: bool = True,
             admission: Admission | None = None) -> "VoiceRuntime":
        """Loads the engines once for the process (Vosk model, TTS voice; Smart Turn per call) from settings.

        No ASR model → keypad-only calls (logged once by load_stt). No TTS at all → raises: the portal cannot speak.
        """
        from bot.services.factory import load_stt, load_tts  # heavy engine imports stay out of unit tests

        settings = settings or settings_module.get_settings()
        stt_engine = load_stt(settings)
        tts_engine = load_tts(settings)
        return cls(
            settings=settings,
            rasa=RasaClient(settings.rasa.url, settings.rasa.token, timeout_s=settings.rasa_reply_timeout_s),
            tts_factory=lambda sample_rate: tts_engine.create_service(sample_rate=sample_rate),
            stt_factory=(lambda: stt_engine.create_service()) if stt_engine is not None else None,
            turn_analyzer_factory=local_smart_turn if smart_turn else None,
            record_writer=CallRecordWriter.from_settings(settings),
            busy_audio=spoken_once(BUSY_TEXT, tts_engine.synthesize),
            admission=admission,
        )

    @property
    def asr_available(self) -> bool:
        return self.stt_factory is not None

    def caller_key(self, number: str) -> str:
        """The call record's caller key (bot/caller_keys.py); "" when the deployment's secret cannot be had (logged
        once: the call goes on, only its repeat-call matching is lost)."""
        return self.caller_keys.key(number)

    def create_call(self, info: CallInfo) -> "CallHandle":
        """A new call's voice loop. Raises AtCapacity at the admission limit (a door that admitted the call
        earlier, as SIP does at the INVITE, keeps its slot) and ValueError for an id already in use."""
        if info.call_id in self.calls:
            raise ValueError(f"call {info.call_id} already exists")
        assert self.admission is not None
        if not self.admission.try_admit(info.call_id, door_of(info.call_id)):
            raise AtCapacity(self.admission.limit, self.busy_audio)
        try:
            call = CallHandle(self, info)
        except BaseException:
            self.release(info.call_id)
            raise
        self.calls[info.call_id] = call
        return call

    def release(self, call_id: str) -> None:
        """The call's admission slot is free again (idempotent; for calls that ended before their voice loop)."""
        assert self.admission is not None
        self.admission.release(call_id)

    async def close(self) -> None:
        """Stops every call still running, then releases the Rasa client."""
        await asyncio.gather(*(call.stop("shutdown") for call in list(self.calls.values())), return_exceptions=True)
        await self.rasa.close()


def local_smart_turn() -> BaseTurnAnalyzer:
    """pipecat's bundled Smart Turn v3 (ONNX, multilingual incl. Mandarin), one per call: it holds the turn's audio."""
    from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3

    return LocalSmartTurnAnalyzerV3(cpu_count=1)


class CallHandle:
    """One call's voice loop. Set the callbacks, `await start()`, feed audio and keys, `await stop(cause)`.

    Callbacks (telephony's side): `on_audio(pcm16)` 20 ms chunks at the call's rate, paced in real time;
    `on_clear()` on barge-in; `await on_handoff(event)`; `await on_hangup()`. Consoles may set `on_event(dict)`.
    """

    def __init__(self, runtime: VoiceRuntime, info: CallInfo) -> None:
        self.info = info
        self.on_audio: Callable[[bytes], None] = lambda pcm16: None
        self.on_clear: Callable[[], None] = lambda: None
        self.on_handoff: HandoffCallback | None = None
        self.on_hangup: HangupCallback | None = None
        self.on_event: EventSink | None = None
        self._runtime = runtime
        self._log = call_logger(log, info.call_id)
        self._transport = CallTransport(info.sample_rate, name=f"call-{info.call_id}")
        self.record = CallRecord(call_id=info.call_id, caller_number=info.caller_number,
                                 asr_available=runtime.asr_available, channel=door_of(info.call_id),
                                 caller_key=runtime.caller_key(info.caller_number))
        self._worker: PipelineWorker | None = None
        self._run_task: asyncio.Task | None = None
        self._stopped = asyncio.Event()
        self._stopping = False
        self._background: set[asyncio.Task] = set()  # strong references until done

    @property
    def running(self) -> bool:
        return self._run_task is not None and not self._stopped.is_set()

    async def start(self) -> None:
        """Builds and starts the pipeline; the greeting (`/call_start`) is requested as soon as it runs."""
        if self._run_task is not None:
            raise RuntimeError(f"call {self.info.call_id} already started")
        # Every task of the pipeline is created in here and inherits the call's context: whatever a processor or
        # pipecat itself logs names this call (bot/call_log.py).
        with call_context(self.info.call_id):
            await self._start()

    async def _start(self) -> None:
        pipeline = Pipeline(await self._build_processors())
        self._worker = PipelineWorker(
            pipeline,
            params=PipelineParams(audio_in_sample_rate=PIPELINE_SAMPLE_RATE,
                                  audio_out_sample_rate=self.info.sample_rate),
            observers=[CallObserver(record=self.record, on_event=self._emit)],
            idle_timeout_secs=None,
            cancel_on_idle_timeout=False,
            enable_rtvi=False,
            check_dangling_tasks=False,
        )
        started = asyncio.Event()

        @self._worker.event_handler("on_pipeline_started")
        async def _on_started(worker, frame):
            started.set()

        output = self._transport.output()
        output.on_audio = lambda pcm16: self.on_audio(pcm16)
        output.on_clear = lambda: self.on_clear()
        output.on_control = self._on_control
        runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
        await runner.add_workers(self._worker)
        self._run_task = asyncio.create_task(self._run(runner), name=f"call-{self.info.call_id}")
        metrics.ACTIVE_CALLS.inc()
        await asyncio.wait({asyncio.ensure_future(started.wait()), self._run_task},
                           return_when=asyncio.FIRST_COMPLETED)
        self._log.info("voice loop started (%d Hz, %s)", self.info.sample_rate,
                       "speech+keypad" if self._runtime.asr_available else "keypad only")

    def feed_audio(self, pcm16: bytes) -> None:
        """Caller audio: 16-bit mono PCM at CallInfo.sample_rate, any chunk size."""
        if self.running:
            with call_context(self.info.call_id):
                self._transport.input().feed_audio(pcm16)

    def feed_dtmf(self, key: str) -> None:
        """One keypad key: 0-9 * # A-D."""
        if self.running:
            with call_context(self.info.call_id):
                self._transport.input().feed_dtmf(key)

    def transfer_result(self, ok: bool, detail: str = "") -> None:
        """Telephony's outcome of the transfer started by on_handoff; a failure goes back to the dialogue."""
        if self._worker is not None and self.running:
            frame = TransferResultFrame(ok=bool(ok), detail=str(detail)[:200])
            with call_context(self.info.call_id):
                self._in_background(self._worker.queue_frame(frame))

    async def stop(self, cause: str = "remote_hangup") -> None:
        """Tears the pipeline down and writes the call record. Idempotent."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        with call_context(self.info.call_id):
            await self._stop(cause)

    async def _stop(self, cause: str) -> None:
        try:
            if self._worker is not None:
                await self._worker.cancel(reason=cause)
            if self._run_task is not None and self._run_task is not asyncio.current_task():
                try:
                    await asyncio.wait_for(asyncio.shield(self._run_task), timeout=5.0)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    self._run_task.cancel()
        finally:
            try:
                self._finish_record(cause)
            finally:  # whatever the record did, the call is over: free its slot, and wake every waiting stop()
                self._runtime.calls.pop(self.info.call_id, None)
                self._runtime.release(self.info.call_id)
                if self._run_task is not None:
                    metrics.ACTIVE_CALLS.dec()
                self._stopped.set()

    async def _build_processors(self) -> list[FrameProcessor]:
        voice = self._runtime.settings.voice
        stt = self._runtime.stt_factory() if self._runtime.stt_factory is not None else None
        tts = self._runtime.tts_factory(self.info.sample_rate)
        processors: list[FrameProcessor] = [self._transport.input()]
        if stt is not None:
            processors += [
                VADProcessor(vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=VAD_STOP_S))),
                stt,
                TurnTaker(end_of_turn_s=voice.end_of_turn_s, end_of_turn_elderly_s=voice.end_of_turn_elderly_s,
                          turn_analyzer=await self._load_turn_analyzer()),
            ]
        processors += [
            DTMFGatherer(interdigit_timeout_s=voice.interdigit_timeout_s, human_key=voice.human_key),
            NoInputLadder(timeout_s=voice.no_input_s, elderly_timeout_s=voice.no_input_elderly_s),
            RasaBridge(
                client=self._runtime.rasa,
                call_id=self.info.call_id,
                metadata=CallMetadata(caller_number=self.info.caller_number,
                                      asr_available=self._runtime.asr_available),
                record=self.record,
                third_silence_action=voice.third_silence_action,
                hold_after_s=self._runtime.settings.rasa.timeout_s,
                human_key=voice.human_key,
            ),
            EngineControls(tts=tts, stt=stt),
            tts,
            self._transport.output(),
        ]
        return processors

    async def _load_turn_analyzer(self) -> BaseTurnAnalyzer | None:
        factory = self._runtime.turn_analyzer_factory
        if factory is None:
            return None
        # Loading the ONNX session takes a moment: keep it off the event loop.
        return await asyncio.to_thread(factory)

    async def _run(self, runner: WorkerRunner) -> None:
        try:
            await runner.run()
        except Exception:
            self._log.exception("voice pipeline failed")

    async def _on_control(self, frame: Frame) -> None:
        """HandoffFrame / HangupFrame reached the output transport: the audio before them has been played."""
        if isinstance(frame, HandoffFrame):
            self._log.info("handoff to %s (%s)", frame.event.get("queue"), frame.event.get("reason"))
            self._emit({"type": "handoff", "queue": frame.event.get("queue"), "reason": frame.event.get("reason")})
            if self.on_handoff is not None:
                await self._call_safely(self.on_handoff(frame.event))
        elif isinstance(frame, HangupFrame):
            self._log.info("bot hangs up (%s)", frame.reason)
            self._emit({"type": "hangup", "reason": frame.reason})
            if self.on_hangup is not None:
                await self._call_safely(self.on_hangup())
            # Whatever telephony did, the call is over: stop outside the pipeline's own task.
            self._in_background(self.stop("bot_hangup"))

    def _in_background(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _call_safely(self, awaitable: Awaitable[None]) -> None:
        try:
            await awaitable
        except Exception:
            self._log.exception("telephony callback failed")

    def _emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                self._log.exception("event sink failed")

    def _finish_record(self, cause: str) -> None:
        self.record.finish(cause)
        metrics.observe_call_outcome(self.record.outcome or "abandoned", self.record.handoff_reason)
        self._emit({"type": "ended", "outcome": self.record.outcome, "cause": cause})
        writer = self._runtime.record_writer
        if writer is not None:
            try:
                writer.write(self.record)
            except (OSError, ValueError):  # a full disk, or text no file can hold: logged, never fatal
                self._log.exception("cannot write the call record")
