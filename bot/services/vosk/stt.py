"""Streaming speech recognition with Vosk: one model per process, one recognizer per call (warm from the process's
recognizer pool when an ended call left one: pool.py).

Frames in:  InputAudioRawFrame (16-bit mono PCM at the pipeline's input rate, 8 or 16 kHz),
            VADUserStartedSpeakingFrame / VADUserStoppedSpeakingFrame (the stop finalizes the utterance),
            STTUpdateSettingsFrame(delta=VoskSTTService.Settings(expect_digits=..., secure=...)).
Frames out: InterimTranscriptionFrame while the caller speaks (each new partial result),
            TranscriptionFrame(finalized=True) at the end of an utterance (VAD stop, or Vosk's own endpoint),
            plus every input frame passed through.

Why a streaming STTService and not SegmentedSTTService: Vosk decodes incrementally, so feeding it audio as it
arrives gives partial results for the console and leaves only the last slice to decode at end of turn, where a
segmented service would decode the whole utterance after the caller stopped.

Vosk models are trained on 16 kHz audio; 8 kHz telephone audio is resampled (soxr, via pipecat's stream
resampler) before decoding. Decoding runs on the process's decode threads (scheduler.py), off the event loop, in
slices of 0.1-0.4 s (one thread hop per 20 ms chunk cost more in scheduling than in decoding once several calls
speak at once). Only speech is decoded:
while the VAD hears nobody, the last ~0.6 s of audio is kept as a pre-roll and handed to Vosk when speech starts, so
the words the VAD needed to notice the caller are not lost. A recognizer is only ever touched
from that sequential decode path; the event loop only flips the wanted mode, which is applied at a safe point
(Kaldi aborts the whole process if a grammar is set on a recognizer in the middle of an utterance).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vosk
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import STTService
from pipecat.utils.time import time_now_iso8601
from pipecat.utils.types import NOT_GIVEN, NotGiven

from bot.frames import AsrDecodeNote
from bot.services.vosk.pool import RecognizerPool, shared_recognizer_pool
from bot.services.vosk.scheduler import DecodeScheduler, shared_scheduler
from call_contract import SECURE_MASK

log = logging.getLogger(__name__)

VOSK_SAMPLE_RATE = 16000
# Spoken Mandarin digits; 幺 is "one" when reading numbers aloud, 两 "two" in amounts.
MANDARIN_DIGITS: tuple[str, ...] = ("零", "一", "二", "三", "四", "五", "六", "七", "八", "九", "幺", "两")
# What a caller must still be able to say at a card or PIN prompt (issue 8): without these the digits grammar
# leaves no way out but silence. Phrases are written as the model's vocabulary segments them (words a model lacks
# are skipped by Vosk, the rest of the grammar still applies).
MANDARIN_SERVICE_PHRASES: tuple[str, ...] = (
    "人工", "转 人工", "绿色 通道", "取消", "重听", "重 听", "再说 一遍", "再 说 一 遍", "返回",
)
# The digits grammar: digits, the service phrases, and "[unk]" so anything else is rejected instead of being
# forced onto a digit.
MANDARIN_DIGIT_WORDS: tuple[str, ...] = (*MANDARIN_DIGITS, *MANDARIN_SERVICE_PHRASES, "[unk]")

vosk.SetLogLevel(-1)  # Kaldi's own log lines would go to stderr unfiltered; errors still raise


class VoskModelError(RuntimeError):
    """The Vosk model folder is missing or unreadable."""


@functools.lru_cache(maxsize=8)  # a model per level of search limits (load.py)
def load_vosk_model(model_path: str) -> vosk.Model:
    """The Vosk model at `model_path`, loaded once per process and shared by every call's recognizer."""
    path = Path(model_path)
    if not (path / "am" / "final.mdl").is_file() and not (path / "final.mdl").is_file():
        raise VoskModelError(f"{path} is not a Vosk model folder (no am/final.mdl); run `make models`")
    try:
        return vosk.Model(str(path))
    except Exception as exc:
        raise VoskModelError(f"cannot load Vosk model {path}: {exc}") from exc


def model_supports_grammar(model_path: str | Path) -> bool:
    """Whether the model can switch to a runtime grammar: small (lookahead) models can, big static-graph ones can't."""
    return not (Path(model_path) / "graph" / "HCLG.fst").exists()


def transcript_text(result_json: str, key: str = "text") -> str:
    """The words of a Vosk JSON result, without the `[unk]` placeholder for rejected words."""
    try:
        text = json.loads(result_json).get(key, "")
    except (ValueError, AttributeError):
        return ""
    return " ".join(word for word in str(text).split() if word != "[unk]")


@dataclass
class VoskSTTSettings(STTSettings):
    """Runtime-updatable settings of the Vosk service.

    Parameters:
        expect_digits: decode the next utterances with the digits grammar (the contract's `expect` digits event).
        secure: never log transcripts (a PIN or card number is expected).
    """

    expect_digits: bool | NotGiven = field(default_factory=lambda: NOT_GIVEN)
    secure: bool | NotGiven = field(default_factory=lambda: NOT_GIVEN)


# Computing a partial result costs about a third of the decoding; a fresh one every 100 ms is enough for
# interim transcripts (console, backchannel detection).
PARTIAL_INTERVAL_BYTES = VOSK_SAMPLE_RATE * 2 // 10
# Audio handed to the decoding thread at once while the caller speaks (100 ms).
DECODE_BATCH_BYTES = VOSK_SAMPLE_RATE * 2 // 10
# Audio kept while the VAD hears nobody: it declares speech ~0.2 s (start_secs) after it began, plus its own lag.
PREROLL_BYTES = VOSK_SAMPLE_RATE * 2 * 6 // 10
# The most speech a call may have waiting for decoding (10 s): beyond it the oldest is dropped, so an overloaded box
# or a caller who never stops cannot grow memory without bound (the transport's own cap no longer holds it back).
MAX_PENDING_BYTES = VOSK_SAMPLE_RATE * 2 * 10


@dataclass
class Decoded:
    """What one decode step produced: a finished utterance's text, or the current partial text (None: not
    computed this step)."""

    final: str | None = None
    partial: str | None = None


class VoskDecoder:
    """One call's Kaldi recognizer with its digits-grammar switching. Not thread-safe: use it from one thread
    at a time (the scheduler runs one job per call at a time); only `want_digits` and `want_level` may be set
    from elsewhere, and `close()` called.

    The mode is switched by building a fresh recognizer between utterances, never with SetGrammar on a running
    one: Kaldi aborts the whole process on that.
    """

    def __init__(self, model: vosk.Model | Sequence[vosk.Model], *, digit_words: Sequence[str],
                 grammar_supported: bool, pool: RecognizerPool | None = None):
        """`model`: the model, or one model per level of search limits (level 0: the model's own limits).
        `pool`: warm recognizers to take instead of making new ones, and to `hand_back` to when the call is over."""
        self._models = tuple(model) if isinstance(model, Sequence) else (model,)
        self._pool = pool
        self._digit_grammar = json.dumps(list(digit_words), ensure_ascii=False)
        self._grammar_supported = grammar_supported
        self._recognizer: vosk.KaldiRecognizer | None = None
        self._recognizers: dict[tuple[bool, int], vosk.KaldiRecognizer] = {}  # (digits mode, level) -> recognizer
        self._recognizer_digits = False
        self._recognizer_level = 0
        self._fresh = True  # no audio fed since the recognizer was made or last gave a final result
        self._bytes_since_partial = 0
        self.want_digits = False
        self.want_level = 0
        self.last_audio_level = 0  # the level the latest audio was decoded at: the utterance's, for its final

    @property
    def level(self) -> int:
        """The search-limit level of the current recognizer (what the utterance in progress decodes with)."""
        return self._recognizer_level

    @property
    def digits_mode(self) -> bool:
        """Whether the current recognizer decodes with the digits grammar."""
        return self._recognizer_digits

    def accept(self, pcm16k: bytes, *, caller_speaking: bool = False, partials: bool = True) -> Decoded:
        """Feed 16 kHz PCM; a final when Vosk's own endpointing closed the utterance, else the partial text.

        `caller_speaking` (the VAD's view) holds back a pending mode switch: Vosk's partials lag the audio by
        ~0.5 s, so "no partial yet" alone does not mean nobody is talking. `partials=False` (under load) skips
        computing the partial result.
        """
        recognizer = self._recognizer_for_next_audio(caller_speaking)
        self.last_audio_level = self._recognizer_level
        self._fresh = False
        if recognizer.AcceptWaveform(pcm16k):
            self._bytes_since_partial = 0
            text = transcript_text(recognizer.Result())
            self._fresh = True
            self._apply_wanted_mode()
            return Decoded(final=text)
        self._bytes_since_partial += len(pcm16k)
        if not partials or self._bytes_since_partial < PARTIAL_INTERVAL_BYTES:
            return Decoded()
        self._bytes_since_partial = 0
        return Decoded(partial=transcript_text(recognizer.PartialResult(), "partial"))

    def finalize(self, trailing_pcm16k: bytes = b"") -> str:
        """End the current utterance now (the caller stopped speaking) and return its text, "" for none.

        `trailing_pcm16k`: the utterance's last audio not decoded yet, decoded first (same thread hop).
        """
        earlier = ""
        if trailing_pcm16k:
            earlier = self.accept(trailing_pcm16k, caller_speaking=True).final or ""
        recognizer = self._recognizer  # read once: close() may clear it from the event loop meanwhile
        if recognizer is None:
            return earlier
        text = transcript_text(recognizer.FinalResult())
        self._bytes_since_partial = 0
        self._fresh = True
        self._apply_wanted_mode()
        return " ".join(part for part in (earlier, text) if part)

    def close(self) -> None:
        self._recognizer = None
        self._recognizers = {}

    def hand_back(self) -> None:
        """(decode thread, after the call's last decode step) The call is over: its recognizers go to the pool,
        which scrubs them of this caller (pool.py), and the decoder holds none."""
        recognizers, self._recognizers, self._recognizer = self._recognizers, {}, None
        for (digits, level), recognizer in recognizers.items():
            self._give_back(digits, level, recognizer)

    def _recognizer_for_next_audio(self, caller_speaking: bool) -> vosk.KaldiRecognizer:
        """The recognizer to feed; switches mode now if the caller is not in the middle of an utterance."""
        if self._recognizer is None:
            self._recognizer = self._new_recognizer(self._wanted(), self._wanted_level())
        elif self._fresh or (self._wanted() != self._recognizer_digits and not caller_speaking
                             and not self._has_partial()):
            self._apply_wanted_mode()
        return self._recognizer

    def _has_partial(self) -> bool:
        assert self._recognizer is not None
        return bool(transcript_text(self._recognizer.PartialResult(), "partial"))

    def _apply_wanted_mode(self) -> None:
        """Replace the recognizer if the wanted mode or level changed. Only called between utterances."""
        level = self._wanted_level()
        if self._recognizer is None or self._wanted() != self._recognizer_digits or level != self._recognizer_level:
            self._recognizer = self._new_recognizer(self._wanted(), level)
            self._fresh = True

    def _wanted(self) -> bool:
        return self.want_digits and self._grammar_supported

    def _wanted_level(self) -> int:
        """`want_level` within the levels this decoder has models for (a scheduler may have more)."""
        return min(max(self.want_level, 0), len(self._models) - 1)

    def _new_recognizer(self, digits: bool, level: int) -> vosk.KaldiRecognizer:
        """The call's recognizer for this mode and level, kept while the level holds: a new recognizer spends up to
        1.7 s of CPU on its first speech (Kaldi caches the expanded lookahead graph per recognizer, ~85 MB warm on
        the Korean proxy), so a PIN prompt and back must not pay that twice. A level change (rare: load.py's hold)
        hands the other level's recognizers to the pool, so a call holds at most two. New ones come warm from the
        pool (pool.py) when an ended call left one for this model view and grammar."""
        if self._recognizer is not None and not self._fresh:
            self._recognizer.Reset()  # switched at a safe point, so it heard only silence: not the next utterance
        if level != self._recognizer_level:
            for key in [key for key in self._recognizers if key[1] != level]:
                self._give_back(*key, self._recognizers.pop(key))
        digits = digits and self._grammar_supported
        recognizer = self._recognizers.get((digits, level))
        if recognizer is None:
            recognizer = self._make_recognizer(digits, level)
            digits = digits and self._grammar_supported  # the model may have refused the grammar just now
            self._recognizers[(digits, level)] = recognizer
        self._recognizer_level, self._recognizer_digits = level, digits
        return recognizer

    def _make_recognizer(self, digits: bool, level: int) -> vosk.KaldiRecognizer:
        model = self._models[level]
        if digits:
            if pooled := self._take_pooled(True, level):
                return pooled
            try:
                return vosk.KaldiRecognizer(model, VOSK_SAMPLE_RATE, self._digit_grammar)
            except Exception as exc:  # the model refused the grammar: keep recognising, with the full vocabulary
                log.warning("Vosk digits grammar unavailable (%s); using the full vocabulary", exc)
                self._grammar_supported = False
        return self._take_pooled(False, level) or vosk.KaldiRecognizer(model, VOSK_SAMPLE_RATE)

    def _pool_key(self, digits: bool, level: int) -> tuple[vosk.Model, str | None]:
        """Recognizers are interchangeable only for the same model view (level) and the same grammar."""
        return self._models[level], (self._digit_grammar if digits else None)

    def _take_pooled(self, digits: bool, level: int) -> vosk.KaldiRecognizer | None:
        return self._pool.take(self._pool_key(digits, level)) if self._pool is not None else None

    def _give_back(self, digits: bool, level: int, recognizer: vosk.KaldiRecognizer) -> None:
        if self._pool is not None:
            self._pool.give_back(self._pool_key(digits, level), recognizer)


class VoskSTTService(STTService):
    """Vosk streaming STT for one call; build one per call, the model is shared (see `load_vosk_model`).

    Needs a VAD upstream (VADProcessor): audio is decoded only between VADUserStarted/StoppedSpeakingFrame.
    Caller audio is taken in at once and decoded behind it by the process's `DecodeScheduler` (shared by all
    calls: finals first, fair shares, and tighter search limits for new utterances while the backlog is high).
    Interim and Vosk-endpoint transcriptions are pushed as decoding catches up; the VAD stop waits for this call's
    decoding to catch up, then pushes the final. A final's `result` is an `AsrDecodeNote` (level and limits).
    """

    Settings = VoskSTTSettings
    _settings: VoskSTTSettings

    def __init__(
        self,
        *,
        model_path: str | Path,
        digit_words: Sequence[str] = MANDARIN_DIGIT_WORDS,
        settings: VoskSTTSettings | None = None,
        scheduler: DecodeScheduler | None = None,
        tighter_model_paths: Sequence[str | Path] = (),
        recognizer_pool: RecognizerPool | None = None,
        **kwargs,
    ):
        """Args:
        model_path: the Vosk model folder (e.g. models/vosk/vosk-model-small-cn-0.22).
        digit_words: the vocabulary of the digits grammar; the default is spoken Mandarin digits and the service
            phrases (人工, 绿色通道, 取消, 重听, 再说一遍, 返回).
        settings: a settings delta applied over the defaults (expect_digits=False, secure=False).
        scheduler: the process's decode scheduler (default: a shared one with no tighter levels).
        tighter_model_paths: views of the model with tighter search limits, level 1 onwards (`limits.py`);
            the scheduler's levels beyond these fall back to the tightest given.
        recognizer_pool: warm recognizers shared by the process's calls (default: the shared one, sized by
            `ASR_RECOGNIZER_POOL`); this call's go back to it when the call ends without a decoding error.
        **kwargs: passed to pipecat's STTService (`sample_rate` defaults to the pipeline's input rate).

        Raises:
            VoskModelError: a model cannot be loaded.
        """
        store = self.Settings(model=Path(model_path).name, language=None, expect_digits=False, secure=False)
        if settings is not None:
            store.apply_update(settings)
        kwargs.setdefault("ttfs_p99_latency", 0.3)  # local decoding: finalizing costs one last decode step
        super().__init__(settings=store, **kwargs)
        self._grammar_supported = model_supports_grammar(model_path)
        models = [load_vosk_model(str(path)) for path in (model_path, *tighter_model_paths)]
        self._pool = recognizer_pool if recognizer_pool is not None else shared_recognizer_pool()
        self._decoder = VoskDecoder(models, digit_words=digit_words, grammar_supported=self._grammar_supported,
                                    pool=self._pool if self._pool.enabled else None)
        self._decode_failed = False  # a recognizer that raised is in an unknown state: never pooled
        self._decoder.want_digits = bool(store.expect_digits)
        self._scheduler = scheduler or shared_scheduler()
        self._load_key = f"stt-{next(_service_numbers)}"  # this call's share of the work (it knows no call id)
        self._closed = False
        self._resampler = create_stream_resampler(quality="HQ", clear_after_secs=None)
        self._last_partial = ""
        self._preroll = bytearray()  # 16 kHz audio while nobody speaks (see PREROLL_BYTES)
        self._pending = bytearray()  # 16 kHz speech taken in, not yet handed to the decoder
        self._drain_task: asyncio.Task | None = None

    def can_generate_metrics(self) -> bool:
        return True

    @property
    def digits_mode(self) -> bool:
        """Whether the current recognizer decodes with the digits grammar (switches at the next safe point)."""
        return self._decoder.digits_mode

    def expect_digits(self, enabled: bool, *, secure: bool = False) -> None:
        """Apply the contract's `expect` event: digits grammar on/off, and whether transcripts must not be logged.

        Takes effect at the next utterance boundary (immediately if the caller is not mid-utterance).
        """
        self._settings.expect_digits = bool(enabled)
        self._settings.secure = bool(secure) if enabled else False
        self._decoder.want_digits = bool(enabled)
        if enabled and not self._grammar_supported:
            log.warning("%s: model has no runtime grammar support; digits use the full vocabulary", self)

    async def _update_settings(self, delta: STTSettings) -> dict[str, Any]:
        """Apply an STTUpdateSettingsFrame delta; mode flags are picked up by the decode path, nothing to reload."""
        changed = await super()._update_settings(delta)
        self._decoder.want_digits = bool(self._settings.expect_digits)
        self._warn_unhandled_updated_settings(set(changed) - {"expect_digits", "secure"})
        return changed

    async def stop(self, frame: EndFrame):
        await super().stop(frame)
        await self._close()

    async def cancel(self, frame: CancelFrame):
        await super().cancel(frame)
        await self._close()

    async def _close(self) -> None:
        self._closed = True  # frames handled after this (queued behind the End/Cancel) must not take audio in
        if self._drain_task is not None:
            await self.cancel_task(self._drain_task)
            self._drain_task = None
        self._scheduler.call_ended(self._load_key)
        if self._pool.enabled and not self._decode_failed:
            # Behind the call's decode step in progress, if any: a recognizer is never scrubbed while it decodes.
            self._scheduler.after_call(self._load_key, self._decoder.hand_back)
        else:
            self._decoder.close()

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        """Take in one chunk of caller audio; the drain task decodes it and pushes what it yields."""
        if len(audio) % 2:
            audio = audio[:-1]  # half a sample is transport garbage; dropping it keeps the stream aligned
        pcm = await self._resampler.resample(audio, self.sample_rate, VOSK_SAMPLE_RATE)
        if pcm and not self._closed:
            if self._user_speaking:
                self._take_in(pcm)
            else:
                self._keep_preroll(pcm)
        yield None  # transcriptions are pushed by the drain task, as decoding catches up

    def _take_in(self, pcm: bytes | bytearray) -> None:
        self._pending += pcm
        self._scheduler.audio_in(self._load_key, _seconds(pcm))
        if len(self._pending) > MAX_PENDING_BYTES:
            excess = len(self._pending) - MAX_PENDING_BYTES
            del self._pending[:excess]
            dropped_s = excess / (VOSK_SAMPLE_RATE * 2)
            self._scheduler.discarded(self._load_key, dropped_s)
            log.warning("%s: decoding is %.0f s behind; dropped the oldest %.2f s of speech",
                        self, _seconds(self._pending), dropped_s)
        if len(self._pending) >= DECODE_BATCH_BYTES and (self._drain_task is None or self._drain_task.done()):
            self._drain_task = self.create_task(self._drain(), name="vosk_drain")

    async def _drain(self) -> None:
        """Decode taken-in speech in slices of at most the policy's quantum, while the caller speaks."""
        quantum = max(DECODE_BATCH_BYTES, int(self._scheduler.policy.quantum_s * VOSK_SAMPLE_RATE) * 2)
        while self._user_speaking and len(self._pending) >= DECODE_BATCH_BYTES:
            batch = bytes(self._pending[:quantum])
            del self._pending[:quantum]
            work = functools.partial(self._decoder.accept, batch, caller_speaking=True,
                                     partials=self._scheduler.partials_wanted())
            try:
                decoded = await self._scheduler.decode(self._load_key, work, audio_s=_seconds(batch), final=False)
            except Exception as exc:  # a decoder error must not end the call: the caller can still use the keypad
                self._decode_failed = True
                await self.push_error(f"{self}: decoding failed: {exc}", exception=exc)
                continue
            if decoded.final is not None:
                if frame := self._final_frame(decoded.final, self._decoder.last_audio_level):
                    await self.push_frame(frame)
            elif decoded.partial and decoded.partial != self._last_partial:
                self._last_partial = decoded.partial
                await self.push_frame(InterimTranscriptionFrame(
                    decoded.partial, self._user_id, time_now_iso8601(),
                    result=None if self._secure else decoded.partial))

    def _keep_preroll(self, pcm: bytes) -> None:
        self._preroll += pcm
        if len(self._preroll) > PREROLL_BYTES:
            del self._preroll[: len(self._preroll) - PREROLL_BYTES]

    async def _handle_vad_user_started_speaking(self, frame: VADUserStartedSpeakingFrame):
        """Speech began ~start_secs ago: its first audio is in the pre-roll, decode from there, at the level of
        search limits the load gives an utterance starting now."""
        await super()._handle_vad_user_started_speaking(frame)
        if self._closed:
            return
        self._decoder.want_level = self._scheduler.level_for_new_utterance()
        preroll, self._preroll = self._preroll, bytearray()
        if preroll:
            self._take_in(preroll)

    async def _handle_vad_user_stopped_speaking(self, frame: VADUserStoppedSpeakingFrame):
        """End of the caller's speech: once this call's decoding has caught up, ask Vosk for the final result of the
        utterance now (not at its own endpoint), ahead of every call's streaming work."""
        await super()._handle_vad_user_stopped_speaking(frame)
        if self._drain_task is not None:
            # Its in-flight slice, now ahead of other calls' streaming work; it takes no more once the caller
            # stopped. (wait, not await: a drain cancelled by the pipeline must not cancel this handler too.)
            self._scheduler.expedite(self._load_key)
            await asyncio.wait({self._drain_task})
            self._drain_task = None
        trailing, self._pending = bytes(self._pending), bytearray()
        work = functools.partial(self._finalize, trailing)
        try:
            text, level = await self._scheduler.decode(self._load_key, work, audio_s=_seconds(trailing), final=True)
        except Exception as exc:
            self._decode_failed = True
            await self.push_error(f"{self}: finalizing failed: {exc}", exception=exc)
            return
        if transcription := self._final_frame(text, level):
            await self.push_frame(transcription)

    def _finalize(self, trailing: bytes) -> tuple[str, int]:
        """(decode thread) The utterance's final text and the level it was decoded at."""
        level = self._decoder.last_audio_level
        text = self._decoder.finalize(trailing)
        return text, (self._decoder.last_audio_level if trailing else level)

    @property
    def _secure(self) -> bool:
        return bool(self._settings.secure)

    def _final_frame(self, text: str, level: int) -> TranscriptionFrame | None:
        """The TranscriptionFrame of a finished utterance; None for silence or noise (no words)."""
        self._last_partial = ""
        if not text:
            return None
        note = AsrDecodeNote(level=level, limits=self._scheduler.describe_level(level))
        self._scheduler.note_utterance(level)
        log.debug("%s: final transcript [%s] (%s)", self, SECURE_MASK if self._secure else text, note.limits)
        return TranscriptionFrame(text, self._user_id, time_now_iso8601(), result=note, finalized=True)


_service_numbers = itertools.count(1)


def _seconds(pcm16k: bytes | bytearray) -> float:
    return len(pcm16k) / (VOSK_SAMPLE_RATE * 2)
