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
from collections.abc import AsyncIterator
from pathlib import Path

from piper import PiperVoice, SynthesisConfig

from bot.services.local_tts import LocalTTSService


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
        chunks = await asyncio.to_thread(lambda: [c.audio_int16_bytes for c in self._voice.synthesize(sentence, config)])
        for pcm in chunks:
            yield pcm, self.voice_sample_rate
