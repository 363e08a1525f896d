"""What the local TTS engines (Piper, espeak-ng) share: sentence streaming, speech rate, text guards.

Frames in:  TextFrame / TTSSpeakFrame (pipecat's TTSService aggregates TextFrames into sentences),
            TTSUpdateSettingsFrame(delta=LocalTTSSettings(speech_rate=...)).
Frames out: TTSStartedFrame, TTSAudioRawFrame (16-bit mono PCM at the transport's output rate), TTSStoppedFrame,
            TTSTextFrame — all pushed by pipecat's TTSService around `run_tts`.

A whole reply may arrive as one TTSSpeakFrame, so `run_tts` splits it into sentences again and yields the audio
of each sentence as soon as it is synthesised: the first sentence plays while the rest is being synthesised.
"""

from __future__ import annotations

import logging
import re
from abc import abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.utils.types import NOT_GIVEN, NotGiven

log = logging.getLogger(__name__)

# Callers hear ~4-5 Mandarin characters a second: 2000 characters is minutes of speech, more is a bug upstream.
MAX_TEXT_CHARS = 2000
# A sentence longer than this is cut at a comma (or hard) so its audio starts without a long synthesis wait.
MAX_SENTENCE_CHARS = 120
# An engine that synthesises a whole chunk before its first audio (Piper) gets the reply's first sentence cut after
# its first clause when the sentence is longer than this: the caller hears "您好，" while the rest is synthesised.
FIRST_CHUNK_MAX_CHARS = 10
MIN_CLAUSE_CHARS = 2
MIN_SPEECH_RATE = 0.5
MAX_SPEECH_RATE = 2.0

_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…\n])|(?<=\.)(?=\s|$)")
_CLAUSE_END = re.compile(r"(?<=[，,、：:])")
_SPEAKABLE = re.compile(r"\w")


def clamp_speech_rate(rate: float) -> float:
    """A usable speech rate: 1.0 is normal, below 1.0 slower; nonsense (NaN, 0, 50) is clamped or reset."""
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        return 1.0
    if rate != rate:  # NaN
        return 1.0
    return min(MAX_SPEECH_RATE, max(MIN_SPEECH_RATE, rate))


def split_sentences(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """The speakable sentences of `text`, in order, none longer than `max_chars`.

    Splits after Chinese and Western sentence punctuation (not inside numbers like 3.5), then cuts long
    sentences at commas and, failing that, hard. Fragments with nothing to pronounce are dropped.
    """
    sentences: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentences.extend(_cut_long(sentence.strip(), max_chars))
    return [s for s in sentences if _SPEAKABLE.search(s)]


def first_clause_chunks(text: str, first_max_chars: int = FIRST_CHUNK_MAX_CHARS) -> list[str]:
    """`split_sentences(text)`, with a long first sentence cut after its first clause (of at least
    MIN_CLAUSE_CHARS): the first audio then waits only for that clause to be synthesised."""
    chunks = split_sentences(text)
    if not chunks or len(chunks[0]) <= first_max_chars:
        return chunks
    clauses = [c for c in _CLAUSE_END.split(chunks[0]) if c]
    head = ""
    while clauses and len(head) < MIN_CLAUSE_CHARS:
        head += clauses.pop(0)
    tail = "".join(clauses).strip()
    if not tail or not _SPEAKABLE.search(tail):
        return chunks
    return [head.strip(), tail, *chunks[1:]]


def _cut_long(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    current = ""
    for clause in _CLAUSE_END.split(sentence):
        if current and len(current) + len(clause) > max_chars:
            pieces.append(current)
            current = ""
        current += clause
    pieces.append(current)
    # A clause longer than max_chars on its own is cut hard.
    return [p[i : i + max_chars].strip() for p in pieces for i in range(0, len(p), max_chars)]


async def speakable_text(text: str, text_type: str) -> str:
    """A pipecat text transform: "" (nothing to synthesise) for text without a single pronounceable character.

    Stopping such text before synthesis matters: pipecat writes a TTS service off after a few contexts that
    produce no audio, and a reply of "……" must not cost the caller their voice.
    """
    if not _SPEAKABLE.search(text):
        return ""
    if len(text) > MAX_TEXT_CHARS:
        log.warning("TTS text of %d characters cut to %d", len(text), MAX_TEXT_CHARS)
        return text[:MAX_TEXT_CHARS]
    return text


@dataclass
class LocalTTSSettings(TTSSettings):
    """Runtime-updatable settings of the local TTS engines.

    Parameters:
        speech_rate: 1.0 normal, below 1.0 slower (the contract's `speech_rate` event; elderly 0.8).
    """

    speech_rate: float | None | NotGiven = field(default_factory=lambda: NOT_GIVEN)


class LocalTTSService(TTSService):
    """Base of the in-machine TTS engines: subclasses only turn one sentence into PCM chunks."""

    Settings = LocalTTSSettings
    _settings: LocalTTSSettings
    # False for engines whose first audio comes only once a whole chunk is synthesised (Piper): their replies are
    # chunked by `first_clause_chunks` so the first audio comes sooner.
    streams_within_sentence: bool = True

    def __init__(self, *, voice: str, speech_rate: float = 1.0, settings: LocalTTSSettings | None = None, **kwargs):
        """Args:
        voice: the voice's name, for logs and metrics.
        speech_rate: initial rate (1.0 normal).
        settings: a settings delta applied over the defaults.
        **kwargs: passed to pipecat's TTSService (e.g. `sample_rate`, the transport's output rate).
        """
        store = self.Settings(model=None, voice=voice, language="zh", speech_rate=clamp_speech_rate(speech_rate))
        if settings is not None:
            store.apply_update(settings)
        kwargs["text_transforms"] = [("*", speakable_text), *(kwargs.get("text_transforms") or [])]
        super().__init__(push_start_frame=True, push_stop_frames=True, settings=store, **kwargs)

    @property
    def speech_rate(self) -> float:
        rate = self._settings.speech_rate
        return rate if isinstance(rate, float) else 1.0

    def set_speech_rate(self, rate: float) -> None:
        """Apply the contract's `speech_rate` event: takes effect from the next sentence synthesised."""
        self._settings.speech_rate = clamp_speech_rate(rate)
        log.info("%s: speech rate %s", self, self._settings.speech_rate)

    async def _update_settings(self, delta: TTSSettings) -> dict[str, Any]:
        """Apply a TTSUpdateSettingsFrame delta; the speech rate is read per sentence, so it needs no reload."""
        changed = await super()._update_settings(delta)
        if "speech_rate" in changed:
            self._settings.speech_rate = clamp_speech_rate(self._settings.speech_rate)  # type: ignore[arg-type]
        self._warn_unhandled_updated_settings(set(changed) - {"speech_rate"})
        return changed

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        """Synthesise `text` sentence by sentence, yielding each sentence's audio as soon as it is ready."""
        if len(text) > MAX_TEXT_CHARS:
            log.warning("%s: text of %d characters cut to %d", self, len(text), MAX_TEXT_CHARS)
            text = text[:MAX_TEXT_CHARS]
        await self.start_tts_usage_metrics(text)
        try:
            chunks = split_sentences(text) if self.streams_within_sentence else first_clause_chunks(text)
            for sentence in chunks:
                async for pcm, in_rate in self.synthesize_sentence(sentence, self.speech_rate):
                    audio = await self._resampler.resample(pcm, in_rate, self.sample_rate)
                    await self.stop_ttfb_metrics()
                    if audio:
                        yield TTSAudioRawFrame(audio, self.sample_rate, 1, context_id=context_id)
        except Exception as exc:  # a broken voice must not take the call down: report it and go on
            log.error("%s: synthesis failed: %s", self, exc)
            yield ErrorFrame(error=f"{self}: synthesis failed: {exc}")
        finally:
            await self.stop_ttfb_metrics()

    @abstractmethod
    def synthesize_sentence(self, sentence: str, speech_rate: float) -> AsyncIterator[tuple[bytes, int]]:
        """Yield (16-bit mono PCM, its sample rate) chunks for one sentence; run blocking work off the loop."""
        raise NotImplementedError


async def synthesize_text(service: LocalTTSService, text: str, sample_rate: int) -> bytes:
    """The whole of `text` from `service`'s engine, resampled to `sample_rate`, without a pipeline around it."""
    from pipecat.audio.utils import create_file_resampler

    resampler = create_file_resampler()
    pcm = bytearray()
    for sentence in split_sentences(text):
        async for chunk, in_rate in service.synthesize_sentence(sentence, 1.0):
            pcm += await resampler.resample(chunk, in_rate, sample_rate)
    return bytes(pcm)
