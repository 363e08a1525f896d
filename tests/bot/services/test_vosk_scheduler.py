"""The decode threads (bot/services/vosk/scheduler.py), and load-adaptive recognition on the real Korean model."""

from __future__ import annotations

import asyncio
import threading

import pytest
from pipecat.frames.frames import (
    InputAudioRawFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import SleepFrame, run_test
from prometheus_client import REGISTRY

from bot.frames import AsrDecodeNote
from bot.services.vosk.limits import DecoderLimits, model_view_with_limits
from bot.services.vosk.load import LoadPolicy
from bot.services.vosk.scheduler import DecodeScheduler
from bot.services.vosk.stt import VoskSTTService

INSTANT = LoadPolicy(tighten_above_s=0.5, relax_below_s=0.15, hold_s=0.0)
FLOOR = DecoderLimits(max_active=1000, beam=8.0)


class SteppedClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_final_overtakes_streaming_work_already_waiting():
    scheduler = DecodeScheduler(workers=1)
    gate, order = threading.Event(), []
    blocker = asyncio.ensure_future(scheduler.decode("busy", gate.wait, audio_s=0.1, final=False))
    await asyncio.sleep(0.05)  # the one thread is now inside the blocker
    streams = [asyncio.ensure_future(scheduler.decode(c, lambda c=c: order.append(c), audio_s=0.1, final=False))
               for c in ("a", "b")]
    await asyncio.sleep(0.01)
    final = asyncio.ensure_future(scheduler.decode("c", lambda: order.append("c-final"), audio_s=0.1, final=True))
    await asyncio.sleep(0.01)

    gate.set()
    await asyncio.gather(blocker, *streams, final)
    assert order == ["c-final", "a", "b"]


async def test_a_failing_job_raises_in_its_call_and_the_thread_lives_on():
    scheduler = DecodeScheduler(workers=1)

    def broken() -> None:
        raise RuntimeError("kaldi said no")

    with pytest.raises(RuntimeError, match="kaldi said no"):
        await scheduler.decode("a", broken, audio_s=0.1, final=False)
    assert await scheduler.decode("a", lambda: 42, audio_s=0.1, final=False) == 42


async def test_an_abandoned_job_still_finishes_before_the_calls_next_job_starts():
    scheduler = DecodeScheduler(workers=2)
    gate, running, overlaps = threading.Event(), threading.Lock(), []

    def step(wait: bool) -> None:
        if not running.acquire(blocking=False):
            overlaps.append("two jobs of one call at once")
            return
        try:
            if wait:
                gate.wait(timeout=5)
        finally:
            running.release()

    abandoned = asyncio.ensure_future(scheduler.decode("a", lambda: step(True), audio_s=0.1, final=False))
    await asyncio.sleep(0.05)
    abandoned.cancel()  # e.g. the pipeline was interrupted while the call awaited its decode step
    following = asyncio.ensure_future(scheduler.decode("a", lambda: step(False), audio_s=0.1, final=True))
    await asyncio.sleep(0.1)
    assert not following.done(), "the call's next job ran while its abandoned one was still decoding"

    gate.set()
    await following
    assert overlaps == []


async def test_backlog_and_limits_in_force_are_on_metrics():
    clock = SteppedClock()
    scheduler = DecodeScheduler(workers=1, level_limits=(DecoderLimits(3000, 10.0), FLOOR), policy=INSTANT,
                                clock=clock)
    scheduler.audio_in("a", 2.2)
    assert REGISTRY.get_sample_value("ivr_asr_backlog_seconds") == pytest.approx(2.0)  # 2.2 less the allowance

    assert scheduler.level_for_new_utterance() == 1
    assert REGISTRY.get_sample_value("ivr_asr_limits_level") == 1
    assert REGISTRY.get_sample_value("ivr_asr_limits_in_force", {"limit": "max_active"}) == 1000
    assert REGISTRY.get_sample_value("ivr_asr_limits_in_force", {"limit": "beam"}) == 8.0

    await scheduler.decode("a", lambda: None, audio_s=2.2, final=True)
    assert REGISTRY.get_sample_value("ivr_asr_backlog_seconds") == 0.0
    assert scheduler.level_for_new_utterance() == 0
    assert REGISTRY.get_sample_value("ivr_asr_limits_in_force", {"limit": "max_active"}) == 3000


async def test_an_ended_calls_waiting_work_is_dropped_and_its_waiter_cancelled():
    scheduler = DecodeScheduler(workers=1)
    gate, ran = threading.Event(), []
    blocker = asyncio.ensure_future(scheduler.decode("busy", gate.wait, audio_s=0.1, final=False))
    await asyncio.sleep(0.05)
    scheduler.audio_in("gone", 1.0)
    waiting = asyncio.ensure_future(scheduler.decode("gone", lambda: ran.append("gone"), audio_s=1.0, final=True))
    await asyncio.sleep(0.01)

    scheduler.call_ended("gone")
    gate.set()
    await blocker
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert ran == [] and scheduler.load.call_backlog_s("gone") == 0.0


# -- the real Korean model -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def floor_view(korean_model_path, tmp_path_factory):
    """A view of the Korean model with the floor limits, as load_stt builds one from VOSK_LOAD_LEVELS."""
    return model_view_with_limits(korean_model_path, FLOOR, tmp_path_factory.mktemp("views"))


async def test_under_load_a_new_utterance_decodes_with_the_floor_limits_and_says_so(
    korean_model, korean_model_path, floor_view, korean_16k
):
    scheduler = DecodeScheduler(level_limits=(DecoderLimits.of_model(korean_model_path), FLOOR), policy=INSTANT)
    tightened_before = REGISTRY.get_sample_value("ivr_asr_utterances_total", {"level": "1"}) or 0
    scheduler.audio_in("other-callers", 3.0)  # speech of other calls still waiting for a decode thread
    service = VoskSTTService(model_path=korean_model_path, tighter_model_paths=[floor_view], scheduler=scheduler)

    down = await transcribe_frames(service, utterance(korean_16k))

    finals = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert len(finals) == 1 and len(finals[0].text.split()) >= 3, "the floor still recognises the sentence"
    assert finals[0].result == AsrDecodeNote(level=1, limits="max-active 1000, beam 8.0")
    assert service._decoder.level == 1
    assert REGISTRY.get_sample_value("ivr_asr_utterances_total", {"level": "1"}) == tightened_before + 1


async def test_once_the_backlog_drains_utterances_decode_with_the_models_own_limits(
    korean_model, korean_model_path, floor_view, korean_16k
):
    scheduler = DecodeScheduler(level_limits=(DecoderLimits.of_model(korean_model_path), FLOOR), policy=INSTANT)
    scheduler.audio_in("other-callers", 3.0)
    assert scheduler.level_for_new_utterance() == 1
    await scheduler.decode("other-callers", lambda: None, audio_s=3.0, final=False)  # decoded meanwhile
    service = VoskSTTService(model_path=korean_model_path, tighter_model_paths=[floor_view], scheduler=scheduler)

    down = await transcribe_frames(service, utterance(korean_16k))

    finals = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert len(finals) == 1 and finals[0].result == AsrDecodeNote(level=0, limits="max-active 3000, beam 10.0")


def utterance(pcm16k: bytes) -> list:
    """16 kHz speech in 20 ms frames, between the VAD's start and stop."""
    audio = [InputAudioRawFrame(pcm16k[i : i + 640], 16000, 1) for i in range(0, len(pcm16k), 640)]
    return [VADUserStartedSpeakingFrame(), *audio, VADUserStoppedSpeakingFrame(stop_secs=0.2)]


async def transcribe_frames(service: VoskSTTService, frames: list) -> list:
    down, _ = await run_test(service, frames_to_send=frames, pipeline_params=PipelineParams(audio_in_sample_rate=16000))
    return down


async def test_a_call_whose_speech_outruns_decoding_holds_at_most_the_cap(korean_model_path, monkeypatch, log_lines):
    """A caller who never stops, on a box that cannot keep up: memory and the backlog stay bounded."""
    from bot.services.vosk import stt

    monkeypatch.setattr(stt, "MAX_PENDING_BYTES", 16000 * 2)  # 1 s, for the test
    scheduler = DecodeScheduler(workers=1)
    gate = threading.Event()
    blocker = asyncio.ensure_future(scheduler.decode("another-call", gate.wait, audio_s=0.0, final=False))
    held = []
    audio_in = scheduler.audio_in
    monkeypatch.setattr(scheduler, "audio_in", lambda call, s: (audio_in(call, s), held.append(
        scheduler.load.call_backlog_s(call))))
    service = VoskSTTService(model_path=korean_model_path, scheduler=scheduler)
    three_seconds = [InputAudioRawFrame(bytes(640), 16000, 1) for _ in range(150)]
    try:  # the only decode thread is busy with another call the whole time
        await transcribe_frames(service, [VADUserStartedSpeakingFrame(), *three_seconds, SleepFrame(0.2)])
    finally:
        gate.set()
        await blocker

    assert len(service._pending) <= 16000 * 2
    assert max(held) <= 1.0 + 0.4 + 0.02, "the cap, a slice in flight and the chunk just taken in"
    assert any("dropped the oldest" in line for line in log_lines)
