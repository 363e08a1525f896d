"""One admission limit for the voice loop, shared by every door (SIP, /media, AudioSocket, /voice/ws).

Why a limit at all: the loop is CPU-bound on speech recognition (docs/VOICE.md, "8 calls: CPU-bound on Vosk"). A call
admitted beyond what the cores can decode does not just wait: it makes *every* admitted caller's recognition late.
So the process takes at most `limit` calls and turns the rest away cleanly, before latency degrades: SIP answers
503 with Retry-After (RFC 3261 §21.5.4), the other doors play `BUSY_TEXT` and close.

The limit is sized from the measured cost of a speaking caller (`capacity_for`), or set outright (VOICE_MAX_CALLS).

    admission = Admission(capacity_for(settings.voice))
    if admission.try_admit(call_id, door): ...      # idempotent for a call already admitted
    admission.release(call_id)                      # idempotent; a call that never started releases too

This module is sans-I/O: no clock, no sockets; the doors decide how to say "busy".
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from typing import Awaitable, Callable

from prometheus_client import Counter, Gauge

from settings import VoiceSettings

log = logging.getLogger(__name__)

# Spoken at the doors that cannot answer 503: the caller learns the line is busy, not that it is broken.
BUSY_TEXT = "您好，当前线路繁忙，请稍后再拨。"

ADMITTED_CALLS = Gauge("ivr_admission_calls", "Voice calls holding an admission slot")
ADMISSION_LIMIT = Gauge("ivr_admission_limit", "The voice loop's admission limit (calls)")
REFUSED_CALLS = Counter("ivr_admission_refused_total", "Calls turned away at the admission limit", ["door"])

BusyAudio = Callable[[int], Awaitable[bytes]]  # sample rate -> 16-bit mono PCM of BUSY_TEXT


class AtCapacity(Exception):
    """Raised by `VoiceRuntime.create_call` when the limit is reached; carries the busy prompt for the door."""

    def __init__(self, limit: int, busy_audio: BusyAudio | None = None) -> None:
        super().__init__(f"the voice loop is at its admission limit ({limit} calls)")
        self.limit = limit
        self.busy_audio = busy_audio


def capacity_for(voice: VoiceSettings, cores: int | None = None) -> int:
    """How many calls this machine takes: VOICE_MAX_CALLS when set, else the cores the loop may use divided by
    the CPU one admitted caller may cost (docs/VOICE.md, "Admission": measured so admitted p95 stays ≤ 1 s)."""
    if voice.max_calls > 0:
        return voice.max_calls
    cores = cores or os.cpu_count() or 1
    return max(1, math.floor(cores * voice.cpu_share / voice.core_per_speaking_caller))


class Admission:
    """Slots for calls, keyed by call id. Not thread-safe: used from the gateway's event loop only."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the admission limit must be at least 1 call")
        self.limit = limit
        self._calls: dict[str, str] = {}  # call id -> door
        ADMISSION_LIMIT.set(limit)

    @property
    def in_use(self) -> int:
        return len(self._calls)

    def try_admit(self, call_id: str, door: str) -> bool:
        """True when `call_id` holds a slot (now or already); False, counted, when the limit is reached."""
        if call_id in self._calls:
            return True
        if len(self._calls) >= self.limit:
            REFUSED_CALLS.labels(door).inc()
            log.info("call=%s refused at the admission limit (%d calls, door %s)", call_id, self.limit, door)
            return False
        self._calls[call_id] = door
        ADMITTED_CALLS.set(len(self._calls))
        return True

    def release(self, call_id: str) -> None:
        if self._calls.pop(call_id, None) is not None:
            ADMITTED_CALLS.set(len(self._calls))


def spoken_once(text: str, synthesize: Callable[[str, int], Awaitable[bytes]]) -> BusyAudio:
    """`text` synthesised once per sample rate, on first use: a burst of refused calls costs one synthesis, not
    one each (the cores are already full when it is needed)."""
    cache: dict[int, asyncio.Future[bytes]] = {}

    async def audio(sample_rate: int) -> bytes:
        cached = cache.get(sample_rate)
        if cached is None or (cached.done() and (cached.cancelled() or cached.exception() is not None)):
            cache[sample_rate] = asyncio.ensure_future(synthesize(text, sample_rate))
        return await asyncio.shield(cache[sample_rate])

    return audio
