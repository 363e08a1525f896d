"""The gateway's one voice loop, as an app resource: made by `create_app`, loaded at start-up in its own cleanup
context (with the thread pool the loop decodes in), and handed to every door explicitly.

    voice = VoiceLoop(settings)                 # create_app does this; app[VOICE_LOOP_KEY] is the same object
    app.cleanup_ctx.append(voice.serve)         # first, so the doors' contexts find it loaded
    add_sip_service(app, voice)                 # each door takes voice.create_call and voice.admission

The admission limit (bot/admission.py) exists from the start, so a door can take slots before the engines are loaded.
If the engines cannot load (no TTS at all), `create_call` raises `VoiceLoopUnavailable`, the text console still
works, and `/voice/ws` answers 503 with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator

from aiohttp import web

from bot.admission import Admission, capacity_for
from bot.call import CallHandle, CallInfo, VoiceRuntime
from bot.screen_pop import ScreenPopStore
from settings import Settings

log = logging.getLogger(__name__)


class VoiceLoopUnavailable(RuntimeError):
    """The engines did not load, so no call can be served (the reason is in the message and the log)."""


class VoiceLoop:
    """`runtime` given: use it as is (tests, benchmarks); else `VoiceRuntime.load(settings)` at start-up."""

    def __init__(self, settings: Settings, runtime: VoiceRuntime | None = None) -> None:
        self.settings = settings
        self.runtime = runtime
        self.error = "" if runtime is not None else "still loading"
        self._given = runtime is not None
        given_admission = getattr(runtime, "admission", None)
        self.admission = given_admission or Admission(capacity_for(settings.voice))
        # The agents' screen-pops of this gateway's handoffs (GET /agent/{ref}, bot/web/agent.py)
        self.screen_pops = ScreenPopStore(settings.sip.agent_context_ttl_s)

    def create_call(self, info: CallInfo) -> CallHandle:
        """The doors' call factory. Raises AtCapacity at the admission limit, VoiceLoopUnavailable without engines."""
        if self.runtime is None:
            raise VoiceLoopUnavailable(f"voice loop unavailable: {self.error}")
        return self.runtime.create_call(info)

    async def serve(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: the executor, the engines; on the way out every call stops, then the pool."""
        # Python's default pool (cores + 4 threads) queues the per-chunk decoding of a few calls behind each
        # other; the benchmark showed final transcripts seconds late at 8 calls on 2 cores (docs/VOICE.md).
        executor = ThreadPoolExecutor(max_workers=self.settings.voice.worker_threads, thread_name_prefix="voice")
        asyncio.get_running_loop().set_default_executor(executor)
        if not self._given:
            await self._load()
        try:
            yield
        finally:
            if self.runtime is not None:
                await self.runtime.close()
            executor.shutdown(wait=False, cancel_futures=True)

    async def _load(self) -> None:
        try:
            self.runtime = await asyncio.to_thread(VoiceRuntime.load, self.settings, admission=self.admission)
            self.error = ""
        except Exception as exc:  # e.g. no TTS at all: the gateway still serves the text console
            log.error("voice loop unavailable: %s", exc)
            self.error = str(exc)


VOICE_LOOP_KEY: web.AppKey[VoiceLoop] = web.AppKey("voice_loop", VoiceLoop)
