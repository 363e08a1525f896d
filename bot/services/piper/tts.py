"""Piper TTS, in process, from a local voice file (`models/piper/<voice>/<voice>.onnx` + `.onnx.json`).

Frames in:  TextFrame / TTSSpeakFrame, TTSUpdateSettingsFrame(delta=PiperTTSService.Settings(speech_rate=...)).
Frames out: TTSStartedFrame, TTSAudioRawFrame per sentence (resampled from the voice's rate, usually 22050 Hz,
            to the transport's output rate), TTSStoppedFrame.

Unlike pipecat's own Piper service this one never downloads anything at run time (banks run offline; voices come
from `make models`), shares one loaded voice between all calls, and maps the speech rate onto Piper's length scale.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
from piper import PiperVoice, SynthesisConfig

from bot.services.local_tts import LocalTTSService

# Piper phonemizes with espeak-ng's C library, which keeps global state: concurrent calls must take turns there.
# The ONNX inference that follows is thread-safe and runs in parallel.
_PHONEMIZER_LOCK = threading.Lock()
_INT16_MAX = 32767


class PiperVoiceError(RuntimeError):
    """The Piper voice file is missing or unreadable."""


@functools.lru_cache(maxsize=4)
def load_piper_voice(onnx_path: str) -> PiperVoice:
    """The voice at `onnx_path`, loaded once per process: its ONNX session is thread-safe and shared by all calls."""
    path = Path(onnx_path)
    config = Path(f"{onnx_path}.json")
    if not path.is_file() or not config.is_file():
        raise PiperVoiceError(f"Piper voice needs both {path} and {config}; run `make models`")
    try:
        return PiperVoice.load(path, config_path=config)
    except Exception as exc:
        raise PiperVoiceError(f"cannot load Piper voice {path}: {exc}") from exc


def length_scale_for(rate: float, voice_length_scale: float) -> float:
    """Piper's phoneme length scale for a speech rate: rate 0.8 means phonemes 1/0.8 as long."""
    return voice_length_scale / rate


class PiperTTSService(LocalTTSService):
    """Piper TTS with sentence streaming and speech-rate control; one instance per call, one voice per process."""

    streams_within_sentence = False  # a sentence's audio comes all at once: the first clause goes first

    def __init__(self, *, voice_path: str | Path, speech_rate: float = 1.0, **kwargs):
        """Args:
        voice_path: the `.onnx` voice file (its `.onnx.json` config sits next to it).
        speech_rate: initial rate, 1.0 normal.
        **kwargs: passed to LocalTTSService / pipecat's TTSService (e.g. `sample_rate=8000`).

        Raises:
            PiperVoiceError: the voice cannot be loaded.
        """
        self._voice = load_piper_voice(str(voice_path))
        super().__init__(voice=Path(voice_path).stem, speech_rate=speech_rate, **kwargs)

    @property
    def voice_sample_rate(self) -> int:
        return self._voice.config.sample_rate

    async def synthesize_sentence(self, sentence: str, speech_rate: float) -> AsyncIterator[tuple[bytes, int]]:
        """One sentence through Piper in a worker thread (ONNX inference would stall the event loop)."""
        config = SynthesisConfig(length_scale=length_scale_for(speech_rate, self._voice.config.length_scale))
        for pcm in await asyncio.to_thread(self._synthesize_blocking, sentence, config):
            yield pcm, self.voice_sample_rate

    def _synthesize_blocking(self, sentence: str, config: SynthesisConfig) -> list[bytes]:
        """What PiperVoice.synthesize does, with only the phonemizer step serialised between calls."""
        with _PHONEMIZER_LOCK:
            phrases = self._voice.phonemize(sentence)
        chunks = []
        for phonemes in filter(None, phrases):
            audio = self._voice.phoneme_ids_to_audio(self._voice.phonemes_to_ids(phonemes), config)
            chunks.append(_peak_normalised_pcm16(np.asarray(audio)))
        return chunks


def _peak_normalised_pcm16(audio: np.ndarray) -> bytes:
    """Float audio scaled to full range (as Piper's own synthesize does) as 16-bit PCM; silence stays silence."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    scaled = audio / peak if peak > 1e-8 else np.zeros_like(audio)
    return np.clip(scaled * _INT16_MAX, -_INT16_MAX, _INT16_MAX).astype(np.int16).tobytes()
