"""The pipecat transport of one call: fed by telephony's callbacks, emitting paced 20 ms bot audio.

`CallTransport.input()` turns `feed_audio` / `feed_dtmf` into InputAudioRawFrame / InputDTMFFrame, resampled to
the pipeline's 16 kHz (Silero, Smart Turn and Vosk all want 16 kHz; 8 kHz fed to Vosk as-is gives garbage).
`CallTransport.output()` is a pipecat BaseOutputTransport at the call's own rate: it chunks the bot audio into
20 ms frames and hands them to `on_audio` in real time, calls `on_clear` on barge-in, and acts on HandoffFrame /
HangupFrame only once the audio queued before them has been played.

Telephony-neutral: nothing here knows SIP, RTP or WebSockets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    StartFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams

from bot.frames import HandoffFrame, HangupFrame, PromptInterruptibleFrame
from call_contract import DTMF_KEYS as VALID_KEYS

log = logging.getLogger(__name__)

PIPELINE_SAMPLE_RATE = 16000
CHUNK_MS = 20
# More than this much caller audio waiting means the pipeline has stalled; dropping old audio keeps memory bounded.
MAX_PENDING_INPUT_S = 5.0

AudioSink = Callable[[bytes], None]
ClearSink = Callable[[], None]
FrameSink = Callable[[Frame], Awaitable[None]]


class CallInputTransport(BaseInputTransport):
    """Input side of a call. Frames out: InputAudioRawFrame (16 kHz mono), InputDTMFFrame.

    `feed_audio` and `feed_dtmf` are plain methods for telephony; call them on the event loop's thread.
    """

    def __init__(self, params: TransportParams, *, call_sample_rate: int, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self._call_sample_rate = call_sample_rate
        self._pending: asyncio.Queue[bytes | str] = asyncio.Queue()
        self._pending_audio_bytes = 0
        self._remainder = b""
        self._resampler = create_stream_resampler()
        self._feed_task: asyncio.Task | None = None

    def feed_audio(self, pcm16: bytes) -> None:
        """Queues caller audio: 16-bit mono PCM at the call's rate, any chunk size."""
        if not pcm16:
            return
        limit = int(MAX_PENDING_INPUT_S * self._call_sample_rate * 2)
        if self._pending_audio_bytes + len(pcm16) > limit:
            log.warning("%s: caller audio backlog over %ss, dropping a chunk", self, MAX_PENDING_INPUT_S)
            return
        self._pending_audio_bytes += len(pcm16)
        self._pending.put_nowait(bytes(pcm16))

    def feed_dtmf(self, key: str) -> None:
        """Queues one keypad key (0-9 * # A-D). Unknown keys are logged and ignored."""
        if not isinstance(key, str) or key.upper() not in VALID_KEYS:
            log.warning("%s: ignoring invalid DTMF key %r", self, key)
            return
        self._pending.put_nowait(key.upper())

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        if self._feed_task is None:
            self._feed_task = self.create_task(self._feed_handler(), name="call_input_feed")

    async def stop(self, frame: EndFrame) -> None:
        await self._cancel_feed_task()
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        await self._cancel_feed_task()
        await super().cancel(frame)

    async def _cancel_feed_task(self) -> None:
        if self._feed_task is not None:
            await self.cancel_task(self._feed_task)
            self._feed_task = None

    async def _feed_handler(self) -> None:
        chunk_bytes = self._call_sample_rate * 2 * CHUNK_MS // 1000
        while True:
            item = await self._pending.get()
            if isinstance(item, str):
                await self._push_key(item)
                continue
            self._pending_audio_bytes -= len(item)
            self._remainder += item
            while len(self._remainder) >= chunk_bytes:
                chunk, self._remainder = self._remainder[:chunk_bytes], self._remainder[chunk_bytes:]
                await self._push_chunk(chunk)

    async def _push_chunk(self, chunk: bytes) -> None:
        audio = await self._resampler.resample(chunk, self._call_sample_rate, self.sample_rate)
        if audio:
            await self.push_audio_frame(
                InputAudioRawFrame(audio=audio, sample_rate=self.sample_rate, num_channels=1)
            )

    async def _push_key(self, key: str) -> None:
        try:
            entry = KeypadEntry(key)
        except ValueError:
            log.info("%s: key %s has no meaning for the voice loop", self, key)
            return
        await self.push_frame(InputDTMFFrame(button=entry))


class CallOutputTransport(BaseOutputTransport):
    """Output side of a call. Frames in: OutputAudioRawFrame (any rate), HandoffFrame, HangupFrame,
    PromptInterruptibleFrame, InterruptionFrame.

    Frames out (upstream): BotStartedSpeakingFrame, BotStoppedSpeakingFrame (from the base class), and
    PromptInterruptibleFrame once the audio queued before it has played.
    """

    def __init__(self, params: TransportParams, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self.on_audio: AudioSink = lambda pcm16: None
        self.on_clear: ClearSink = lambda: None
        self.on_control: FrameSink | None = None
        self._next_due = 0.0

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame):
            self._next_due = 0.0
            self._safe_call(self.on_clear)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        """Hands one 20 ms chunk to telephony, paced so the caller's jitter buffer never floods."""
        now = time.monotonic()
        if self._next_due < now:  # idle, or we fell behind: restart the clock now rather than burst
            self._next_due = now
        elif self._next_due > now:
            await asyncio.sleep(self._next_due - now)
        self._safe_call(self.on_audio, frame.audio)
        self._next_due += len(frame.audio) / (2 * frame.sample_rate * frame.num_channels)
        return True

    async def write_transport_frame(self, frame: Frame) -> None:
        """Runs in order with the audio: reached only after the audio queued before `frame` was written."""
        if isinstance(frame, PromptInterruptibleFrame):
            # The prompts after this point are now the ones playing: tell the turn taker and the keypad.
            await self.push_frame(PromptInterruptibleFrame(value=frame.value), FrameDirection.UPSTREAM)
        elif isinstance(frame, (HandoffFrame, HangupFrame)) and self.on_control is not None:
            # Let the last chunk finish playing before the transfer or the BYE.
            await asyncio.sleep(max(0.0, self._next_due - time.monotonic()))
            await self.on_control(frame)

    def _safe_call(self, callback: Callable, *args) -> None:
        # A failing telephony callback must not kill the call's pipeline.
        try:
            callback(*args)
        except Exception:
            log.exception("%s: telephony callback failed", self)


class CallTransport(BaseTransport):
    """The input/output pair of one call, at the call's sample rate on the wire and 16 kHz inside."""

    def __init__(self, call_sample_rate: int, *, name: str | None = None) -> None:
        super().__init__(name=name)
        params = TransportParams(
            audio_in_enabled=True,
            audio_in_sample_rate=PIPELINE_SAMPLE_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=call_sample_rate,
            audio_out_10ms_chunks=CHUNK_MS // 10,
            audio_out_end_silence_secs=0,
        )
        self._input = CallInputTransport(params, call_sample_rate=call_sample_rate, name=f"{self.name}#input")
        self._output = CallOutputTransport(params, name=f"{self.name}#output")

    def input(self) -> CallInputTransport:
        return self._input

    def output(self) -> CallOutputTransport:
        return self._output
