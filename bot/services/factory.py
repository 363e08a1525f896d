"""Choose the voice engines once per process, from what is installed, and build them per call.

    stt = load_stt(settings)    # SpeechRecognizerEngine, or None when no ASR model: the portal runs keypad-only
    tts = load_tts(settings)    # SpeechSynthesizerEngine: Piper Mandarin voice if installed, else espeak-ng `cmn`
    per call:  stt.create_service()  /  tts.create_service(sample_rate=8000, speech_rate=1.0)

Each loader logs one line at start-up saying what was chosen and, for a fallback, why and how to get the real
thing. A model that is configured but broken is logged and falls back; it never stops the server from starting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipecat.services.tts_service import TTSService

from bot.models import find_piper_voice, find_vosk_model
from bot.services.espeak.tts import EspeakTTSService, EspeakUnavailableError, check_voice, find_espeak
from settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeechRecognizerEngine:
    """The process-wide Vosk model and decode scheduler; `create_service()` gives each call its own recognizer."""

    model_path: Path  # what Vosk loads: the installed model, or a view of it with decoder limits
    installed_path: Path | None = None
    tighter_model_paths: tuple[Path, ...] = ()  # views with tighter limits, for load (bot/services/vosk/load.py)
    scheduler: Any = field(default=None, compare=False)  # DecodeScheduler; None: the shared one

    @property
    def name(self) -> str:
        return (self.installed_path or self.model_path).name

    def create_service(self, **kwargs):
        """A VoskSTTService for one call (kwargs go to VoskSTTService, e.g. `sample_rate`)."""
        from bot.services.vosk.stt import VoskSTTService

        return VoskSTTService(model_path=self.model_path, tighter_model_paths=self.tighter_model_paths,
                              scheduler=self.scheduler, **kwargs)


@dataclass(frozen=True)
class SpeechSynthesizerEngine:
    """The process-wide TTS choice: kind "piper" (voice_path) or "espeak" (espeak_voice)."""

    kind: str
    voice_path: Path | None = None
    espeak_voice: str = "cmn"

    @property
    def name(self) -> str:
        return self.voice_path.stem if self.voice_path else f"espeak-ng {self.espeak_voice}"

    def create_service(self, *, sample_rate: int | None = None, speech_rate: float = 1.0, **kwargs) -> TTSService:
        """A TTS service for one call, producing audio at `sample_rate` (the transport's rate)."""
        if self.kind == "piper":
            from bot.services.piper.tts import PiperTTSService

            return PiperTTSService(
                voice_path=self.voice_path, sample_rate=sample_rate, speech_rate=speech_rate, **kwargs
            )
        return EspeakTTSService(voice=self.espeak_voice, sample_rate=sample_rate, speech_rate=speech_rate, **kwargs)

    async def synthesize(self, text: str, sample_rate: int) -> bytes:
        """`text` as 16-bit mono PCM at `sample_rate`, outside any call (e.g. the busy prompt of a refused call)."""
        from bot.services.local_tts import synthesize_text

        return await synthesize_text(self.create_service(sample_rate=sample_rate), text, sample_rate)


def load_stt(settings: Settings | None = None) -> SpeechRecognizerEngine | None:
    """Load the Vosk model (once per process); None, with a log line, when there is none: keypad-only mode."""
    settings = settings or get_settings()
    path = find_vosk_model(settings)
    if path is None:
        log.warning("ASR: no Vosk model under %s and VOSK_MODEL_PATH unset; running KEYPAD-ONLY "
                    "(run `make models` to enable speech input)", Path(settings.voice.models_dir) / "vosk")
        return None
    from bot.services.vosk.limits import DecoderLimits, model_view_with_limits
    from bot.services.vosk.stt import VoskModelError, load_vosk_model

    try:
        limits = DecoderLimits.from_settings(settings.voice.vosk_max_active, settings.voice.vosk_beam)
        loaded = model_view_with_limits(path, limits)
        load_vosk_model(str(loaded))
        base, steps = _load_levels(loaded, settings)
        tighter = tuple(model_view_with_limits(path, step) for step in steps)
        for view in tighter:
            load_vosk_model(str(view))
    except (ValueError, OSError, VoskModelError) as exc:
        log.error("ASR: %s; running KEYPAD-ONLY", exc)
        return None
    scheduler = _decode_scheduler(settings, (base, *steps))
    log.info("ASR: Vosk model %s (%s), decoder %s; under load %s", path.name, path, base.describe(),
             " -> ".join(step.describe() for step in steps) or "never tightened")
    return SpeechRecognizerEngine(loaded, installed_path=path, tighter_model_paths=tighter, scheduler=scheduler)


def _load_levels(model_view: Path, settings: Settings):
    """The limits `model_view` decodes with, and the steps of VOSK_LOAD_LEVELS that are tighter than them."""
    from bot.services.vosk.limits import DecoderLimits

    base = DecoderLimits.of_model(model_view)
    steps = [step for step in DecoderLimits.parse_levels(settings.voice.vosk_load_levels) if _tighter(step, base)]
    return base, steps


def _tighter(step, base) -> bool:
    """Whether `step` searches less than `base` (a limit the model does not state counts as unbounded)."""
    looser_active = base.max_active is not None and step.max_active > base.max_active
    looser_beam = base.beam is not None and step.beam > base.beam
    same = step.max_active == base.max_active and step.beam == base.beam
    return not (looser_active or looser_beam or same)


def _decode_scheduler(settings: Settings, levels):
    from bot.services.vosk.load import LoadPolicy
    from bot.services.vosk.scheduler import DecodeScheduler

    policy = LoadPolicy(tighten_above_s=settings.voice.asr_tighten_above_s,
                        relax_below_s=settings.voice.asr_relax_below_s)
    return DecodeScheduler(workers=settings.voice.asr_decode_threads or None, level_limits=tuple(levels),
                           policy=policy)


def load_tts(settings: Settings | None = None) -> SpeechSynthesizerEngine:
    """Choose Piper with a Mandarin voice if installed, else espeak-ng; raises only if neither can speak."""
    settings = settings or get_settings()
    voice = find_piper_voice(settings)
    espeak = SpeechSynthesizerEngine("espeak", espeak_voice=settings.voice.espeak_voice)
    if voice is None:
        _require_espeak(settings)
        log.warning("TTS: no Piper Mandarin voice under %s and PIPER_VOICE_PATH unset; FALLING BACK to espeak-ng "
                    "voice '%s' (run `make models` for the Piper voice)", Path(settings.voice.models_dir) / "piper",
                    espeak.espeak_voice)
        return espeak
    from bot.services.piper.tts import PiperVoiceError, load_piper_voice

    try:
        load_piper_voice(str(voice))
    except PiperVoiceError as exc:
        _require_espeak(settings)
        log.error("TTS: %s; FALLING BACK to espeak-ng voice '%s'", exc, espeak.espeak_voice)
        return espeak
    log.info("TTS: Piper voice %s (%s)", voice.stem, voice)
    return SpeechSynthesizerEngine("piper", voice_path=voice)


def _require_espeak(settings: Settings) -> None:
    """Fail at start-up, not on the first call, when the fallback voice cannot speak either."""
    try:
        check_voice(settings.voice.espeak_voice, find_espeak())
    except EspeakUnavailableError as exc:
        raise EspeakUnavailableError(f"TTS: no Piper voice installed and {exc}") from exc
