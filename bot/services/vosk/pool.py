"""A process-wide, bounded pool of warm Kaldi recognizers, handed from ended calls to new ones (issue 12).

Why: a new recognizer spends seconds of CPU on its first speech, because Kaldi expands the lookahead decoding graph
lazily into a cache that belongs to the recognizer. `Reset()` keeps that cache. Measured on the Korean proxy
(dither off, 5.7 s utterance, one thread, CPU seconds):
- fresh recognizer: 3.6-4.0 s;
- fresh after the model decoded other speech on another recognizer: 3.2-3.7 s (no gain: the warmth is not the
  model's);
- a recognizer that decoded another caller's three different utterances, then scrubbed: 1.8 s;
- one that had decoded the same utterance: 0.5-0.6 s.
Pooling therefore helps every call after the first wave; a call that starts before any call has ended still pays.

Privacy: a bank must not let one caller's speech reach another caller's transcript. Vosk's `Reset()` alone does
NOT guarantee that: in the middle of an utterance (a caller who hangs up while speaking) it only restarts the
search and keeps the feature pipeline, with the previous caller's unconsumed frames and i-vector adaptation, and
the next caller's transcript changes (measured: a different transcript from a fresh recognizer's). `scrub()` ends
the utterance with `FinalResult()` first, which drops the feature pipeline, then `Reset()`s: the next caller's
transcript is then identical to a fresh recognizer's (tests/bot/services/test_vosk_pool_model.py).

Memory: the cache grows with the variety of speech a recognizer has heard (measured: ~65 MB after one utterance,
~95 MB after four, ~160 MB after twenty distinct ones; it stops growing on speech it has heard). The pool holds at
most `capacity` recognizers, and retires one after `max_uses` calls so a long-running process does not keep the
cache of every word ever spoken.

Keys: recognizers are only interchangeable for the same model view (level of search limits) and the same grammar,
so the pool is keyed by (model, grammar JSON or None). The model object itself is in the key: it keeps the model
alive, so a key can never be confused with a later model loaded at the same address.

Thread-safe: recognizers are taken on decode threads (made lazily at the first audio) and given back on them
(after the call's last decode job, `DecodeScheduler.after_call`). Metrics: `ivr_asr_recognizer_pool_size`,
`ivr_asr_recognizer_pool_takes_total{outcome=hit|miss}`, `ivr_asr_recognizer_pool_discarded_total{reason}`.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

POOL_SIZE = Gauge("ivr_asr_recognizer_pool_size", "Warm Vosk recognizers waiting in the pool for a new call")
POOL_TAKES = Counter("ivr_asr_recognizer_pool_takes_total",
                     "Recognizers a call asked the pool for: hit (a warm one) or miss (a new one was made)",
                     ["outcome"])
POOL_DISCARDED = Counter("ivr_asr_recognizer_pool_discarded_total",
                         "Recognizers not kept by the pool: full, retired (max uses), scrub_failed",
                         ["reason"])

# Memory was measured up to twenty distinct utterances (~160 MB); a retired recognizer costs one cold first utterance
# in every DEFAULT_MAX_USES calls, a bounded cache is worth that.
DEFAULT_MAX_USES = 20


def scrub(recognizer: Any) -> None:
    """Leave nothing of the last caller in a Vosk recognizer, keeping its warm graph cache.

    `AcceptWaveform(b"")` puts it in the running state whatever state it was in (a no-op on audio), so that
    `FinalResult()` ends any utterance and deletes the feature pipeline and the decoder (the next audio starts a
    new pipeline); `Reset()` clears the stored result text.
    """
    recognizer.AcceptWaveform(b"")
    recognizer.FinalResult()
    recognizer.Reset()


@dataclass
class _Entry:
    key: Hashable
    recognizer: Any


class RecognizerPool:
    """At most `capacity` idle recognizers, by key; `take` the most recently returned one of a key, `give_back`
    a scrubbed one. When full, the oldest idle recognizer (of any key) is dropped: the pool follows the mix of
    levels and modes calls use now.

    `scrubber` empties a recognizer of its last caller (default: `scrub`, for Vosk); a recognizer whose scrub
    raises is dropped. `capacity` 0: the pool keeps nothing (every take is a miss).
    """

    def __init__(self, capacity: int, *, max_uses: int = DEFAULT_MAX_USES,
                 scrubber: Callable[[Any], None] = scrub) -> None:
        if capacity < 0 or max_uses < 1:
            raise ValueError("pool capacity must be >= 0 and max_uses >= 1")
        self.capacity = capacity
        self.max_uses = max_uses
        self._scrub = scrubber
        self._lock = threading.Lock()
        self._idle: deque[_Entry] = deque()  # oldest first
        self._uses: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()  # calls served so far
        self.hits = 0
        self.misses = 0
        self.discarded: dict[str, int] = {}
        POOL_SIZE.set(0)

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._idle)

    def take(self, key: Hashable) -> Any | None:
        """An idle recognizer for `key` (it is the caller's until given back), or None: make a new one."""
        with self._lock:
            for entry in reversed(self._idle):  # the most recently returned: the warmest
                if entry.key == key:
                    self._idle.remove(entry)
                    self.hits += 1
                    self._publish()
                    POOL_TAKES.labels(outcome="hit").inc()
                    return entry.recognizer
            self.misses += 1
        POOL_TAKES.labels(outcome="miss").inc()
        return None

    def give_back(self, key: Hashable, recognizer: Any) -> bool:
        """Scrub `recognizer` (a call is done with it) and keep it for the next call asking for `key`; False when it
        was dropped instead. Call it from the thread that last decoded with it, never while it decodes."""
        if not self.enabled:
            return False
        with self._lock:
            uses = self._uses.get(recognizer, 0) + 1
        if uses >= self.max_uses:
            return self._discard("retired")
        try:
            self._scrub(recognizer)
        except Exception as exc:  # a recognizer in an unknown state must serve nobody else
            log.warning("recognizer pool: scrubbing failed (%s); dropped", exc)
            return self._discard("scrub_failed")
        dropped: _Entry | None = None
        with self._lock:
            self._uses[recognizer] = uses
            self._idle.append(_Entry(key, recognizer))
            if len(self._idle) > self.capacity:
                dropped = self._idle.popleft()
            self._publish()
        if dropped is not None:
            self._discard("full")
            return dropped.recognizer is not recognizer
        return True

    def clear(self) -> None:
        """Drop every idle recognizer (e.g. the model is being replaced)."""
        with self._lock:
            self._idle.clear()
            self._publish()

    def _discard(self, reason: str) -> bool:
        with self._lock:
            self.discarded[reason] = self.discarded.get(reason, 0) + 1
        POOL_DISCARDED.labels(reason=reason).inc()
        return False

    def _publish(self) -> None:
        POOL_SIZE.set(len(self._idle))


def pool_capacity(setting: int, admission_limit: int) -> int:
    """`ASR_RECOGNIZER_POOL`: -1 (auto) keeps two recognizers per admitted call (the free-form one and the digits
    one), 0 turns the pool off, N keeps N."""
    if setting < 0:
        return 2 * max(1, admission_limit)
    return setting


_shared: RecognizerPool | None = None
_shared_lock = threading.Lock()


def shared_recognizer_pool() -> RecognizerPool:
    """The process's pool, sized from settings (`ASR_RECOGNIZER_POOL` and the admission limit) on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            from bot.admission import capacity_for
            from settings import get_settings

            voice = get_settings().voice
            _shared = RecognizerPool(pool_capacity(voice.asr_recognizer_pool, capacity_for(voice)))
            log.info("ASR: recognizer pool of %d warm recognizers%s", _shared.capacity,
                     "" if _shared.enabled else " (off)")
        return _shared
