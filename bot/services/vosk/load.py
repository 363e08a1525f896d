"""Load-adaptive recognition, sans-I/O: the decoding backlog across all calls, the search limits it puts in force,
and the order decode work runs in (issue 12). Every method takes `now`; tests step the clock. The threads that
run the work are in bot/services/vosk/scheduler.py.

- **Backlog:** seconds of caller speech handed in for decoding and not decoded yet, summed over the process's calls,
  less what each call holds while decoding keeps up (`per_call_allowance_s`: the batch being gathered and the
  slice being decoded), so callers talking on idle cores are no backlog.
- **Tightening:** once the backlog has stayed above `tighten_above_s` for `hold_s` (a caller's 0.6 s pre-roll is a
  blip, not load), utterances that *start* from then on decode with the next tighter level of search limits, one
  step per `hold_s`, down to the floor (the last level). Below `relax_below_s` the levels step back one per
  `hold_s` since the last step, to the model's own limits (level 0): after a quiet spell the first utterance is
  back at once. An utterance keeps the level it started with: a recognizer cannot change limits mid-utterance.
  Levels are re-evaluated whenever speech is taken in or decoded and when an utterance starts.
- **Finals first:** above `skip_partials_above_s` interim partials are not computed (a partial costs about a third of
  a decode step); and `DecodeQueue` runs any waiting final before any streaming work.
- **Fair share:** streaming work is taken oldest first, one job per call at a time, each job at most `quantum_s` of
  audio: a caller who keeps talking waits behind everyone else's next slice instead of decoding all of theirs.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadPolicy:
    """When to tighten and relax. The defaults keep a 2-core box under ~1 s of queued speech (docs/VOICE.md).

    Parameters:
        tighten_above_s: backlog (s of speech) above which, for `hold_s`, new utterances step one level tighter.
        relax_below_s: backlog below which they step one level back towards the model's own limits.
        hold_s: how long the backlog must stay high before a step, and the least time between two steps, so one
            burst does not swing straight to the floor and back.
        per_call_allowance_s: speech a call holds while decoding keeps up (not counted as backlog).
        skip_partials_above_s: backlog above which interim partials are skipped.
        quantum_s: the most speech one streaming job decodes before other calls get their turn.
    """

    tighten_above_s: float = 0.5
    relax_below_s: float = 0.15
    hold_s: float = 1.0
    skip_partials_above_s: float = 0.3
    quantum_s: float = 0.4
    per_call_allowance_s: float = 0.2  # a 0.1 s batch gathering + a 0.1 s slice decoding

    def __post_init__(self) -> None:
        if not 0 <= self.relax_below_s < self.tighten_above_s:
            raise ValueError("the relax threshold must be below the tighten threshold")
        if self.hold_s < 0 or self.quantum_s <= 0 or self.per_call_allowance_s < 0:
            raise ValueError("hold_s and per_call_allowance_s must be >= 0 and quantum_s > 0")


class RecognitionLoad:
    """The process-wide backlog and the level of search limits new utterances get (0: the model's own).

    `call_backlog_s` is a call's speech not decoded yet; `backlog_s` sums what exceeds each call's allowance.

    Not thread-safe: the scheduler calls it under its lock.
    """

    def __init__(self, floor_level: int, policy: LoadPolicy | None = None, *, now: float = 0.0):
        if floor_level < 0:
            raise ValueError("floor_level must be >= 0")
        self.policy = policy or LoadPolicy()
        self.floor_level = floor_level
        self.level = 0
        self._changed_at = now - self.policy.hold_s  # the first step may come as soon as load lasts
        self._above_since: float | None = None  # since when the backlog has been above tighten_above_s
        self._backlog: dict[str, float] = {}

    @property
    def backlog_s(self) -> float:
        allowance = self.policy.per_call_allowance_s
        return sum(max(0.0, held - allowance) for held in self._backlog.values())

    def call_backlog_s(self, call_id: str) -> float:
        return self._backlog.get(call_id, 0.0)

    def queued(self, call_id: str, seconds: float, now: float) -> None:
        """`seconds` of a call's speech were handed in for decoding."""
        self._backlog[call_id] = self._backlog.get(call_id, 0.0) + max(0.0, seconds)
        self._evaluate(now)

    def decoded(self, call_id: str, seconds: float, now: float) -> None:
        """`seconds` of a call's queued speech were decoded (or dropped unheard)."""
        if call_id in self._backlog:
            left = self._backlog[call_id] - max(0.0, seconds)
            self._backlog[call_id] = left if left > 1e-9 else 0.0
        self._evaluate(now)

    def forget(self, call_id: str, now: float) -> None:
        """The call ended: whatever it still had queued will never be decoded."""
        self._backlog.pop(call_id, None)
        self._evaluate(now)

    def level_for_new_utterance(self, now: float) -> int:
        """The level an utterance starting now decodes with."""
        self._evaluate(now)
        return self.level

    def partials_wanted(self) -> bool:
        return self.backlog_s <= self.policy.skip_partials_above_s

    def _evaluate(self, now: float) -> None:
        backlog, hold = self.backlog_s, self.policy.hold_s
        if backlog > self.policy.tighten_above_s:
            self._above_since = now if self._above_since is None else self._above_since
        else:
            self._above_since = None
        since_step = now - self._changed_at
        if since_step < hold:
            return
        lasting = self._above_since is not None and now - self._above_since >= hold
        if lasting and self.level < self.floor_level:
            self._set_level(self.level + 1, now, backlog)
        elif backlog < self.policy.relax_below_s and self.level > 0:
            steps = self.level if hold == 0 else max(1, int(since_step // hold))  # quiet spells count fully
            self._set_level(max(0, self.level - steps), now, backlog)

    def _set_level(self, level: int, now: float, backlog: float) -> None:
        log.info("ASR load: backlog %.2f s of speech, new utterances decode at level %d -> %d (floor %d)",
                 backlog, self.level, level, self.floor_level)
        self.level = level
        self._changed_at = now


@dataclass(eq=False)
class DecodeJob:
    """One piece of decode work for one call. `work` is opaque here: the scheduler runs it in a thread."""

    call_id: str
    final: bool
    audio_s: float
    work: Callable[[], Any]
    seq: int = 0
    context: Any = field(default=None, repr=False)  # the shell's handle (e.g. the future to resolve)


class DecodeQueue:
    """Which job runs next: finals before streaming work, oldest first; a call's own jobs in the order they came,
    never two at once (a Kaldi recognizer is not thread-safe, and an abandoned await must not let a second job
    race the first)."""

    def __init__(self) -> None:
        self._waiting: deque[DecodeJob] = deque()
        self._running_calls: set[str] = set()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def put(self, job: DecodeJob) -> None:
        self._seq += 1
        job.seq = self._seq
        self._waiting.append(job)

    def take(self) -> DecodeJob | None:
        """The next job to run (its call is then busy until `done`), or None when nothing can run now."""
        runnable, seen_calls = [], set(self._running_calls)
        for job in self._waiting:  # each call's oldest job only: a call's own work stays in order
            if job.call_id not in seen_calls:
                runnable.append(job)
                seen_calls.add(job.call_id)
        if not runnable:
            return None
        job = next((j for j in runnable if j.final), runnable[0])
        self._waiting.remove(job)
        self._running_calls.add(job.call_id)
        return job

    def done(self, job: DecodeJob) -> None:
        self._running_calls.discard(job.call_id)

    def drop(self, call_id: str) -> list[DecodeJob]:
        """The call ended: its waiting jobs will not run (returned, so their waiters can be told)."""
        dropped = [job for job in self._waiting if job.call_id == call_id]
        self._waiting = deque(job for job in self._waiting if job.call_id != call_id)
        return dropped

    def expedite(self, call_id: str) -> None:
        """The call's caller stopped speaking: its waiting work now stands between them and their final."""
        for job in self._waiting:
            if job.call_id == call_id:
                job.final = True
