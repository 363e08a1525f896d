"""The admission limit's arithmetic and bookkeeping (bot/admission.py); the doors' behaviour at the limit is in
tests/security/test_admission_across_doors.py."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from bot.admission import Admission, capacity_for, spoken_once
from settings import VoiceSettings


@pytest.mark.parametrize("cores,share,cost,expected", [
    (2, 0.75, 0.6, 2),    # the shipped default on this 2-core machine (docs/VOICE.md, "Admission")
    (2, 0.75, 0.28, 5),
    (16, 0.75, 0.6, 20),
    (1, 0.1, 0.6, 1),     # never below one call
])
def test_capacity_is_the_cores_the_loop_may_use_over_the_cost_of_a_speaking_caller(cores, share, cost, expected):
    voice = dataclasses.replace(VoiceSettings(), cpu_share=share, core_per_speaking_caller=cost)
    assert capacity_for(voice, cores=cores) == expected


def test_the_shipped_defaults_size_two_calls_on_two_cores():
    assert capacity_for(VoiceSettings(), cores=2) == 2


def test_an_operator_can_set_the_limit_outright():
    assert capacity_for(dataclasses.replace(VoiceSettings(), max_calls=12), cores=2) == 12


def test_slots_are_taken_once_per_call_and_freed_once():
    admission = Admission(2)
    assert admission.try_admit("sip-a", "sip") and admission.try_admit("sip-a", "sip")  # the same call again
    assert admission.try_admit("web-b", "web")
    assert not admission.try_admit("media_stream-c", "media_stream")
    admission.release("sip-a")
    admission.release("sip-a")  # a second teardown path frees nothing more
    assert admission.in_use == 1 and admission.try_admit("media_stream-c", "media_stream")
    assert not admission.try_admit("audiosocket-d", "audiosocket")


def test_a_limit_below_one_call_is_refused():
    with pytest.raises(ValueError):
        Admission(0)


async def test_the_busy_prompt_is_synthesised_once_per_rate_even_for_a_burst_of_refusals():
    calls: list[int] = []

    async def synthesize(text: str, rate: int) -> bytes:
        calls.append(rate)
        await asyncio.sleep(0.01)
        return text.encode() * (rate // 8000)

    busy = spoken_once("忙", synthesize)
    results = await asyncio.gather(*(busy(8000) for _ in range(10)), busy(16000))
    assert calls == [8000, 16000] and results[0] == "忙".encode() and results[-1] == "忙".encode() * 2


async def test_a_failed_synthesis_is_tried_again_next_time():
    attempts: list[int] = []

    async def synthesize(text: str, rate: int) -> bytes:
        attempts.append(rate)
        if len(attempts) == 1:
            raise RuntimeError("espeak-ng died")
        return b"ok"

    busy = spoken_once("忙", synthesize)
    with pytest.raises(RuntimeError):
        await busy(8000)
    assert await busy(8000) == b"ok"
