"""A test double of the voice loop's CallHandle (bot/call.py) and its factory, for the media-door tests."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from bot.call import CallInfo

CHUNK = 320  # 20 ms of 16-bit PCM at 8 kHz
LOUD = 4000  # caller audio above this level counts as speech (barge-in)


def tone_chunk(amplitude: int = 2000) -> bytes:
    t = np.arange(CHUNK // 2)
    return (amplitude * np.sin(2 * np.pi * 440 * t / 8000)).astype("<i2").tobytes()


class EchoCall:
    """Plays a 3-chunk greeting, echoes caller audio, barges in (on_clear) on loud audio,
    hangs up on key 9, asks for a handoff on key 0. Records everything telephony did to it."""

    def __init__(self, info: CallInfo, fail_start: bool = False) -> None:
        self.info = info
        self.fail_start = fail_start
        self.on_audio = lambda pcm16: None
        self.on_clear = lambda: None
        self.on_handoff = None
        self.on_hangup = None
        self.audio_in = bytearray()
        self.keys: list[str] = []
        self.transfer_results: list[tuple[bool, str]] = []
        self.stop_causes: list[str] = []
        self.started = False
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError("pipeline failed to start")
        self.started = True
        for _ in range(3):
            self.on_audio(tone_chunk())

    def feed_audio(self, pcm16: bytes) -> None:
        self.audio_in += pcm16
        if pcm16 and np.abs(np.frombuffer(pcm16, "<i2").astype(np.int32)).max() > LOUD:
            self.on_clear()
        else:
            self.on_audio(pcm16)

    def feed_dtmf(self, key: str) -> None:
        self.keys.append(key)
        if key == "9" and self.on_hangup is not None:
            self._spawn(self.on_hangup())
        if key == "0" and self.on_handoff is not None:
            self._spawn(self.on_handoff({"event": "handoff", "queue": "general", "priority": 1}))

    def transfer_result(self, ok: bool, detail: str = "") -> None:
        self.transfer_results.append((ok, detail))

    async def stop(self, cause: str = "remote_hangup") -> None:
        self.stop_causes.append(cause)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class EchoCallFactory:
    def __init__(self) -> None:
        self.calls: list[EchoCall] = []
        self.refuse = False
        self.fail_start = False

    def __call__(self, info: CallInfo) -> EchoCall:
        if self.refuse:
            raise ValueError(f"call {info.call_id} already exists")
        call = EchoCall(info, fail_start=self.fail_start)
        self.calls.append(call)
        return call


@pytest.fixture
def call_factory() -> EchoCallFactory:
    return EchoCallFactory()


@pytest.fixture
async def close_at_end():
    """close_at_end(server): the server (anything with an async close()) is closed when the test ends, pass or fail."""
    servers: list[Any] = []
    yield servers.append
    for server in servers:
        await server.close()


async def until(condition, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture
def wait_until():
    return until


@pytest.fixture
def tone():
    """tone(amplitude) -> 20 ms of a 440 Hz tone as 16-bit 8 kHz PCM."""
    return tone_chunk
