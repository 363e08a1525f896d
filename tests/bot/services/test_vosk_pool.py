"""The recognizer pool (bot/services/vosk/pool.py) with test-double recognizers: bounds, keys, thread safety, and
what never goes back (a failed call's, a scrub that fails); and its hand-off ordering on the decode scheduler."""

from __future__ import annotations

import asyncio
import threading

import pytest

from bot.services.vosk.pool import RecognizerPool, pool_capacity, scrub
from bot.services.vosk.scheduler import DecodeScheduler


class FakeRecognizer:
    """Records what was done to it, in Vosk's method names."""

    def __init__(self, name: str = "r", *, fail_scrub: bool = False) -> None:
        self.name = name
        self.calls: list[str] = []
        self.fail_scrub = fail_scrub

    def AcceptWaveform(self, data: bytes) -> bool:  # noqa: N802 (Vosk's names)
        self.calls.append(f"AcceptWaveform({len(data)})")
        return False

    def FinalResult(self) -> str:  # noqa: N802
        if self.fail_scrub:
            raise RuntimeError("kaldi is in a bad state")
        self.calls.append("FinalResult")
        return '{"text": ""}'

    def Reset(self) -> None:  # noqa: N802
        self.calls.append("Reset")

    def __repr__(self) -> str:
        return f"FakeRecognizer({self.name})"


FREE = ("model-0", None)
DIGITS = ("model-0", '["一", "二"]')
TIGHT = ("model-1", None)


def test_an_empty_pool_misses_and_a_returned_recognizer_is_taken_again_scrubbed():
    pool = RecognizerPool(4)
    first = FakeRecognizer()

    assert pool.take(FREE) is None
    assert pool.give_back(FREE, first)
    assert pool.take(FREE) is first
    assert pool.take(FREE) is None  # it is the taker's now, not shared
    assert (pool.hits, pool.misses) == (1, 2)
    assert first.calls == ["AcceptWaveform(0)", "FinalResult", "Reset"]  # scrubbed before anyone else saw it


def test_keys_are_never_mixed_model_view_or_grammar():
    pool = RecognizerPool(4)
    free, digits, tight = FakeRecognizer("free"), FakeRecognizer("digits"), FakeRecognizer("tight")
    for key, recognizer in ((FREE, free), (DIGITS, digits), (TIGHT, tight)):
        pool.give_back(key, recognizer)

    assert pool.take(("model-0", '["一"]')) is None  # another grammar
    assert pool.take(("model-2", None)) is None  # another model view
    assert pool.take(DIGITS) is digits
    assert pool.take(TIGHT) is tight
    assert pool.take(FREE) is free
    assert len(pool) == 0


def test_the_pool_never_holds_more_than_its_capacity_and_drops_the_oldest():
    pool = RecognizerPool(2)
    a, b, c = FakeRecognizer("a"), FakeRecognizer("b"), FakeRecognizer("c")

    assert pool.give_back(FREE, a) and pool.give_back(DIGITS, b)
    assert pool.give_back(FREE, c)  # kept; the oldest (a) goes

    assert len(pool) == 2 and pool.discarded == {"full": 1}
    assert pool.take(FREE) is c
    assert pool.take(FREE) is None
    assert pool.take(DIGITS) is b


def test_the_most_recently_returned_of_a_key_is_taken_first():
    pool = RecognizerPool(3)
    older, newer = FakeRecognizer("older"), FakeRecognizer("newer")
    pool.give_back(FREE, older)
    pool.give_back(FREE, newer)

    assert pool.take(FREE) is newer


def test_capacity_zero_is_off():
    pool = RecognizerPool(0)
    recognizer = FakeRecognizer()

    assert not pool.enabled
    assert not pool.give_back(FREE, recognizer)
    assert pool.take(FREE) is None
    assert recognizer.calls == []  # not even scrubbed: nobody will reuse it


def test_a_recognizer_whose_scrub_fails_is_dropped_not_reused():
    pool = RecognizerPool(2)
    broken = FakeRecognizer(fail_scrub=True)

    assert not pool.give_back(FREE, broken)
    assert pool.take(FREE) is None
    assert pool.discarded == {"scrub_failed": 1}


def test_a_recognizer_is_retired_after_max_uses_calls():
    pool = RecognizerPool(2, max_uses=3)
    recognizer = FakeRecognizer()

    for _ in range(2):
        assert pool.give_back(FREE, recognizer)
        assert pool.take(FREE) is recognizer
    assert not pool.give_back(FREE, recognizer)  # its third call is over: retired
    assert pool.take(FREE) is None and pool.discarded == {"retired": 1}


def test_bad_sizes_are_refused_and_auto_follows_the_admission_limit():
    with pytest.raises(ValueError):
        RecognizerPool(-1)
    with pytest.raises(ValueError):
        RecognizerPool(2, max_uses=0)
    assert pool_capacity(-1, admission_limit=3) == 6
    assert pool_capacity(0, admission_limit=3) == 0
    assert pool_capacity(5, admission_limit=3) == 5


def test_scrub_ends_the_utterance_before_resetting():
    # Order matters: Reset() alone keeps the feature pipeline (the last caller's frames and adaptation);
    # FinalResult() of a running recognizer deletes it. AcceptWaveform(b"") makes any recognizer a running one.
    recognizer = FakeRecognizer()
    scrub(recognizer)
    assert recognizer.calls == ["AcceptWaveform(0)", "FinalResult", "Reset"]


def test_many_threads_never_get_the_same_recognizer_at_once():
    pool = RecognizerPool(8)
    for i in range(8):
        pool.give_back(FREE, FakeRecognizer(str(i)))
    in_use: set[int] = set()
    guard, clashes, errors = threading.Lock(), [], []
    start = threading.Barrier(8)

    def caller() -> None:
        try:
            start.wait()
            for _ in range(300):
                recognizer = pool.take(FREE) or FakeRecognizer("new")
                with guard:
                    if id(recognizer) in in_use:
                        clashes.append(recognizer)
                    in_use.add(id(recognizer))
                with guard:
                    in_use.discard(id(recognizer))
                pool.give_back(FREE, recognizer)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors and not clashes
    assert len(pool) <= 8


async def test_after_call_work_waits_for_the_calls_decode_step_in_progress():
    # The hand-back must never scrub a recognizer while the call's last decode step still runs on a thread.
    scheduler = DecodeScheduler(workers=2)
    started, gate, order = threading.Event(), threading.Event(), []

    def last_step() -> None:
        started.set()
        gate.wait(5)
        order.append("decode")

    decoding = asyncio.ensure_future(scheduler.decode("call", last_step, audio_s=0.1, final=False))
    assert await asyncio.to_thread(started.wait, 5)  # the step is running
    scheduler.call_ended("call")
    scheduler.after_call("call", lambda: order.append("hand back"))
    await asyncio.sleep(0.1)
    assert order == []  # a thread was free, yet the hand-back waited

    gate.set()
    await decoding
    for _ in range(50):
        if len(order) == 2:
            break
        await asyncio.sleep(0.02)
    assert order == ["decode", "hand back"]


async def test_a_failing_after_call_job_is_logged_and_the_thread_lives_on(caplog):
    scheduler = DecodeScheduler(workers=1)

    def broken() -> None:
        raise RuntimeError("scrub exploded")

    scheduler.after_call("gone", broken)
    # oldest first on the one thread: once the next job ran, the failed one has been logged
    assert await scheduler.decode("next", lambda: "alive", audio_s=0.0, final=False) == "alive"
    assert "scrub exploded" in caplog.text


def test_hits_misses_size_and_discards_are_on_metrics():
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    hits, misses = sample("ivr_asr_recognizer_pool_takes_total", outcome="hit"), \
        sample("ivr_asr_recognizer_pool_takes_total", outcome="miss")
    full = sample("ivr_asr_recognizer_pool_discarded_total", reason="full")
    pool = RecognizerPool(1)

    pool.take(FREE)
    pool.give_back(FREE, FakeRecognizer("a"))
    pool.give_back(FREE, FakeRecognizer("b"))
    assert sample("ivr_asr_recognizer_pool_size") == 1
    pool.take(FREE)

    assert sample("ivr_asr_recognizer_pool_takes_total", outcome="hit") == hits + 1
    assert sample("ivr_asr_recognizer_pool_takes_total", outcome="miss") == misses + 1
    assert sample("ivr_asr_recognizer_pool_discarded_total", reason="full") == full + 1
    assert sample("ivr_asr_recognizer_pool_size") == 0
