"""The process's Vosk decode threads, shared by every call: they run `DecodeQueue`'s jobs in its order (finals
first, one job per call at a time) and keep `RecognitionLoad` told what was queued and decoded.

Why our own threads and not `asyncio.to_thread`: the default pool runs work in arrival order, so under load a
caller's final waits behind other callers' partials, and the queue holding the backlog is invisible. Kaldi's
decoding releases the GIL (cffi), so one thread per core keeps the cores busy without oversubscribing them.
Metrics: `ivr_asr_backlog_seconds`, `ivr_asr_limits_level`, `ivr_asr_limits_in_force{limit}` and
`ivr_asr_utterances_total{level}` (level > 0: decoded under tightened limits).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any, Callable, TypeVar

from prometheus_client import Counter, Gauge

from bot.services.vosk.limits import DecoderLimits
from bot.services.vosk.load import DecodeJob, DecodeQueue, LoadPolicy, RecognitionLoad

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKLOG_SECONDS = Gauge("ivr_asr_backlog_seconds", "Caller speech handed in for decoding and not decoded yet")
LIMITS_LEVEL = Gauge("ivr_asr_limits_level", "Search-limit level new utterances decode with (0: the model's own)")
LIMITS_IN_FORCE = Gauge("ivr_asr_limits_in_force", "Decoder search limits new utterances get", ["limit"])
UTTERANCES = Counter(
    "ivr_asr_utterances_total", "Final transcripts by the search-limit level they were decoded at (0: model's own)",
    ["level"])


class DecodeScheduler:
    """Runs decode work for all calls on `workers` threads; tells each new utterance which level to use.

    `level_limits[i]`: the search limits of level i, for metrics and call records (level 0: the model's own).
    """

    def __init__(self, *, workers: int | None = None, level_limits: tuple[DecoderLimits, ...] = (DecoderLimits(),),
                 policy: LoadPolicy | None = None, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Condition()
        self._queue = DecodeQueue()
        self.level_limits = level_limits
        self.load = RecognitionLoad(len(level_limits) - 1, policy, now=clock())
        self._workers = max(1, workers or os.cpu_count() or 1)
        self._threads: list[threading.Thread] = []
        self._publish()

    @property
    def policy(self) -> LoadPolicy:
        return self.load.policy

    # -- what the calls tell it ---------------------------------------------------------------------------------

    def audio_in(self, call_id: str, seconds: float) -> None:
        """A call handed in `seconds` of speech to decode (it is decoded later, by `decode`)."""
        with self._lock:
            self.load.queued(call_id, seconds, self._clock())
            self._publish()

    def discarded(self, call_id: str, seconds: float) -> None:
        """Speech the call had handed in was dropped unheard (its queue was full)."""
        with self._lock:
            self.load.decoded(call_id, seconds, self._clock())
            self._publish()

    def call_ended(self, call_id: str) -> None:
        """The call is over: its waiting work is dropped (its waiters cancelled) and its backlog forgotten. A job
        already running finishes on its thread; nobody waits for it."""
        with self._lock:
            dropped = self._queue.drop(call_id)
            self.load.forget(call_id, self._clock())
            self._publish()
        for job in dropped:
            if job.context is None:  # an after_call job: nobody waits
                continue
            loop, future = job.context
            loop.call_soon_threadsafe(future.cancel)

    def after_call(self, call_id: str, work: Callable[[], object]) -> None:
        """Run `work` on a decode thread once the call's job in progress (if any) has ended; nobody waits for it.
        For an ended call's clean-up that must not race its last decode step (handing its recognizers back)."""
        job = DecodeJob(call_id, final=False, audio_s=0.0, work=work, context=None)
        with self._lock:
            self._start_threads()
            self._queue.put(job)
            self._lock.notify()

    def expedite(self, call_id: str) -> None:
        """Run the call's waiting work as a final: its caller stopped speaking and waits for the answer."""
        with self._lock:
            self._queue.expedite(call_id)

    def level_for_new_utterance(self) -> int:
        with self._lock:
            level = self.load.level_for_new_utterance(self._clock())
            self._publish()
            return level

    def partials_wanted(self) -> bool:
        with self._lock:
            return self.load.partials_wanted()

    def describe_level(self, level: int) -> str:
        limits = self.level_limits[min(max(level, 0), len(self.level_limits) - 1)]
        return limits.describe()

    def note_utterance(self, level: int) -> None:
        """A final transcript was decoded at `level`."""
        UTTERANCES.labels(level=str(level)).inc()

    # -- running work -------------------------------------------------------------------------------------------

    async def decode(self, call_id: str, work: Callable[[], T], *, audio_s: float, final: bool) -> T:
        """Run `work` (which decodes `audio_s` of the call's queued speech) on a decode thread; its result.

        If the awaiting task is cancelled the work still runs to its end (a recognizer must not be abandoned
        mid-step), and the call's next job waits for it.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = DecodeJob(call_id, final, audio_s, work, context=(loop, future))
        with self._lock:
            self._start_threads()
            self._queue.put(job)
            self._lock.notify()
        return await future

    def _start_threads(self) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        while len(self._threads) < self._workers:
            thread = threading.Thread(target=self._work_loop, name=f"vosk-decode-{len(self._threads)}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work_loop(self) -> None:
        while True:
            with self._lock:
                job = self._queue.take()
                while job is None:
                    self._lock.wait()
                    job = self._queue.take()
            self._run(job)

    def _run(self, job: DecodeJob) -> None:
        outcome: tuple[bool, Any] = (False, RuntimeError("the decode thread stopped mid-job"))
        try:
            outcome = (True, job.work())
        except Exception as exc:  # handed to the awaiting call; the thread lives on
            outcome = (False, exc)
        finally:  # whatever happened, the call is free again and its waiter hears of it
            with self._lock:
                try:
                    self._queue.done(job)
                    self.load.decoded(job.call_id, job.audio_s, self._clock())
                    self._publish()
                finally:
                    self._lock.notify_all()  # the call's next job may be runnable now
            if job.context is None:  # an after_call job: nobody waits for its result
                if not outcome[0]:
                    log.warning("after-call work of %s failed: %r", job.call_id, outcome[1])
            else:
                loop, future = job.context
                try:
                    loop.call_soon_threadsafe(_settle, future, outcome)
                except RuntimeError:  # the call's event loop is gone: nobody waits for this result
                    pass

    def _publish(self) -> None:
        BACKLOG_SECONDS.set(self.load.backlog_s)
        LIMITS_LEVEL.set(self.load.level)
        limits = self.level_limits[self.load.level]
        LIMITS_IN_FORCE.labels(limit="max_active").set(limits.max_active or 0)  # 0: not known here
        LIMITS_IN_FORCE.labels(limit="beam").set(limits.beam or 0)


def _settle(future: asyncio.Future, outcome: tuple[bool, Any]) -> None:
    if future.done():  # the awaiting task was cancelled
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


_shared: DecodeScheduler | None = None
_shared_lock = threading.Lock()


def shared_scheduler() -> DecodeScheduler:
    """The scheduler of services built without one (one model, no tightening): still finals first, one thread
    per core, and the backlog on /metrics."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = DecodeScheduler()
        return _shared
