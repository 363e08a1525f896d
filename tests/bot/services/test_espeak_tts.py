"""EspeakTTSService on the real espeak-ng Mandarin voice (`cmn`), through a real pipecat pipeline."""

from __future__ import annotations

import pytest
from pipecat.frames.frames import TTSStartedFrame, TTSStoppedFrame

from bot.services.espeak.tts import EspeakTTSService, EspeakUnavailableError, parse_wav_header, words_per_minute

GREETING = "您好，欢迎致电银行。请问有什么可以帮您？"


async def test_mandarin_sentence_gives_non_silent_audio_of_sane_duration(synthesize):
    result = await synthesize(EspeakTTSService(voice="cmn"), GREETING, sample_rate=16000)

    assert any(isinstance(f, TTSStartedFrame) for f in result.frames)
    assert any(isinstance(f, TTSStoppedFrame) for f in result.frames)
    assert all(f.sample_rate == 16000 for f in result.audio)
    assert 0.3 < result.duration_s < 10.0
    assert result.rms > 300  # speech, not silence


async def test_output_is_resampled_to_the_transport_rate(synthesize):
    wide = await synthesize(EspeakTTSService(voice="cmn"), "请输入密码。", sample_rate=16000)
    narrow = await synthesize(EspeakTTSService(voice="cmn"), "请输入密码。", sample_rate=8000)

    assert all(f.sample_rate == 8000 for f in narrow.audio)
    # Same speech, half the samples: the durations agree within the resampler's latency.
    assert narrow.duration_s == pytest.approx(wide.duration_s, abs=0.05)
    assert len(narrow.pcm) == pytest.approx(len(wide.pcm) / 2, rel=0.05)


async def test_slower_rate_gives_longer_audio(synthesize):
    normal = await synthesize(EspeakTTSService(voice="cmn"), GREETING)
    slow = EspeakTTSService(voice="cmn")
    slow.set_speech_rate(0.7)
    slower = await synthesize(slow, GREETING)

    assert slower.duration_s > normal.duration_s * 1.2


async def test_each_sentence_is_streamed_as_soon_as_it_is_synthesised(synthesize):
    text = "第一句话。第二句话。第三句话。"
    result = await synthesize(EspeakTTSService(voice="cmn"), text)

    # One espeak-ng process per sentence, each streamed in chunks: audio arrives in several frames.
    assert len(result.audio) >= 3
    assert result.rms > 300


async def test_empty_and_punctuation_only_text_give_no_audio_and_no_error(synthesize):
    result = await synthesize(EspeakTTSService(voice="cmn"), "。。！？  ")

    assert result.audio == []
    assert result.errors == []


async def test_huge_text_is_cut_to_a_bounded_length(synthesize):
    huge = "一二三四五六七八九十，" * 1400  # 14 000 characters, no sentence end
    result = await synthesize(EspeakTTSService(voice="cmn", base_wpm=450), huge, sample_rate=8000)

    assert result.errors == []
    # 2000 characters at espeak-ng's top speed is well under ten minutes of audio, 14 000 would not be.
    assert 10 < result.duration_s < 600


async def test_text_that_looks_like_an_option_is_spoken_not_parsed(synthesize):
    result = await synthesize(EspeakTTSService(voice="cmn"), "--help; rm -rf / $(reboot)")

    assert result.rms > 300
    assert result.errors == []


def test_unknown_voice_is_refused_instead_of_silently_speaking_english():
    with pytest.raises(EspeakUnavailableError, match="no voice 'no-such-voice'"):
        EspeakTTSService(voice="no-such-voice")


async def test_a_failing_espeak_run_becomes_an_error_frame_not_a_crash(synthesize, tmp_path):
    # A stand-in binary that behaves like a broken espeak-ng install: lists voices, then fails to synthesise.
    broken = tmp_path / "espeak-ng"
    broken.write_text(
        "#!/bin/sh\n[ \"$1\" = --voices ] && printf 'Pty Language\\n 5 cmn M cmn sit/cmn\\n' && exit 0\n"
        "echo 'cannot open phoneme data' >&2; exit 3\n"
    )
    broken.chmod(0o755)
    result = await synthesize(EspeakTTSService(voice="cmn", executable=str(broken)), "你好。")

    assert result.audio == []
    assert result.errors and "exited with 3" in result.errors[0].error


def test_missing_binary_is_a_clear_error():
    with pytest.raises(EspeakUnavailableError, match="apt-get install espeak-ng"):
        EspeakTTSService(executable="espeak-ng-not-installed")


def test_rate_maps_to_words_per_minute_within_espeak_limits():
    assert words_per_minute(1.0) == 175
    assert words_per_minute(0.8) == 140
    assert words_per_minute(0.01) == 80
    assert words_per_minute(100.0) == 450


def test_wav_header_must_be_mono_16_bit():
    with pytest.raises(ValueError):
        parse_wav_header(b"not a wav header at all, but long enough to parse.")
