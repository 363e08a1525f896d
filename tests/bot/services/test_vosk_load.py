"""The load-adaptive recognition core (bot/services/vosk/load.py), sans-I/O: the clock is stepped by hand."""

from __future__ import annotations

import pytest

from bot.services.vosk.load import DecodeJob, DecodeQueue, LoadPolicy, RecognitionLoad

POLICY = LoadPolicy(tighten_above_s=0.5, relax_below_s=0.15, hold_s=1.0, skip_partials_above_s=0.3,
                    per_call_allowance_s=0.0)  # the allowance has its own tests


def job(call_id: str, *, final: bool = False) -> DecodeJob:
    return DecodeJob(call_id, final, 0.1, work=lambda: None)


# -- backlog ---------------------------------------------------------------------------------------------------------


def test_backlog_is_speech_queued_minus_decoded_summed_over_calls():
    load = RecognitionLoad(2, POLICY, now=0.0)
    load.queued("a", 0.4, now=0.0)
    load.queued("b", 0.3, now=0.0)
    load.decoded("a", 0.1, now=0.1)

    assert load.backlog_s == pytest.approx(0.6)
    assert load.call_backlog_s("a") == pytest.approx(0.3)


def test_a_finished_call_takes_its_backlog_with_it():
    load = RecognitionLoad(2, POLICY, now=0.0)
    load.queued("a", 2.0, now=0.0)
    load.queued("b", 0.2, now=0.0)
    load.forget("a", now=0.5)

    assert load.backlog_s == pytest.approx(0.2)


def test_decoding_more_than_was_queued_never_makes_a_negative_backlog():
    load = RecognitionLoad(1, POLICY, now=0.0)
    load.queued("a", 0.1, now=0.0)
    load.decoded("a", 0.5, now=0.1)
    load.decoded("ghost", 1.0, now=0.1)

    assert load.backlog_s == 0.0


# -- tightening and relaxing -----------------------------------------------------------------------------------------


def test_a_lasting_backlog_tightens_new_utterances_one_step_per_hold_down_to_the_floor():
    load = RecognitionLoad(2, POLICY, now=0.0)
    assert load.level_for_new_utterance(now=0.0) == 0

    load.queued("a", 1.0, now=0.0)
    assert load.level_for_new_utterance(now=0.5) == 0, "load must last hold_s before the first step"
    assert load.level_for_new_utterance(now=1.0) == 1
    assert load.level_for_new_utterance(now=1.9) == 1, "one step per hold_s, not straight to the floor"
    assert load.level_for_new_utterance(now=2.0) == 2
    assert load.level_for_new_utterance(now=9.0) == 2, "never beyond the floor"


def test_when_the_backlog_drains_utterances_step_back_to_the_models_own_limits():
    load = RecognitionLoad(2, POLICY, now=0.0)
    load.queued("a", 1.0, now=0.0)
    load.level_for_new_utterance(now=1.0)
    load.level_for_new_utterance(now=2.0)
    assert load.level == 2

    load.decoded("a", 0.9, now=2.5)  # 0.1 s left: below relax_below_s
    assert load.level_for_new_utterance(now=3.0) == 1
    assert load.level_for_new_utterance(now=3.5) == 1
    assert load.level_for_new_utterance(now=4.0) == 0


def test_after_a_quiet_spell_the_first_utterance_is_back_at_the_models_own_limits():
    load = RecognitionLoad(3, POLICY, now=0.0)
    load.queued("a", 2.0, now=0.0)
    for now in (1.0, 2.0, 3.0):
        load.level_for_new_utterance(now=now)
    load.decoded("a", 2.0, now=3.0)
    assert load.level == 3

    assert load.level_for_new_utterance(now=600.0) == 0, "nothing happened for ten minutes: no load is left"


def test_between_the_thresholds_the_level_holds_either_way():
    load = RecognitionLoad(2, POLICY, now=0.0)
    load.queued("a", 0.3, now=0.0)  # above relax, below tighten
    assert load.level_for_new_utterance(now=5.0) == 0
    load.queued("a", 0.5, now=5.0)
    assert load.level_for_new_utterance(now=6.0) == 1
    load.decoded("a", 0.5, now=7.0)  # back to 0.3 s
    assert load.level_for_new_utterance(now=10.0) == 1


def test_a_burst_that_drains_within_the_hold_does_not_tighten():
    load = RecognitionLoad(3, POLICY, now=0.0)
    load.queued("a", 3.0, now=0.0)
    load.decoded("a", 3.0, now=0.5)

    assert load.level_for_new_utterance(now=0.6) == 0
    assert load.level_for_new_utterance(now=5.0) == 0


def test_callers_talking_on_idle_cores_are_no_backlog():
    # Each speaking call holds a batch being gathered and a slice being decoded, and a new utterance brings its
    # 0.6 s pre-roll at once: none of that is load.
    load = RecognitionLoad(2, LoadPolicy(hold_s=1.0), now=0.0)
    for caller in "abcde":
        load.queued(caller, 0.2, now=0.0)
    load.queued("starting", 0.6, now=0.0)

    assert load.backlog_s == pytest.approx(0.4)
    load.decoded("starting", 0.6, now=0.2)
    assert load.level_for_new_utterance(now=5.0) == 0
    assert load.partials_wanted()


def test_a_model_with_no_tighter_levels_never_tightens():
    load = RecognitionLoad(0, POLICY, now=0.0)
    load.queued("a", 10.0, now=0.0)

    assert load.level_for_new_utterance(now=10.0) == 0


def test_partials_are_skipped_under_load_before_anything_else():
    load = RecognitionLoad(2, POLICY, now=0.0)
    load.queued("a", 0.3, now=0.0)
    assert load.partials_wanted()
    load.queued("b", 0.1, now=0.0)
    assert not load.partials_wanted()
    assert load.level_for_new_utterance(now=5.0) == 0, "skipping partials comes before tighter limits"


@pytest.mark.parametrize("kwargs", [
    {"tighten_above_s": 0.2, "relax_below_s": 0.2},
    {"relax_below_s": -1.0},
    {"hold_s": -1.0},
    {"quantum_s": 0.0},
    {"per_call_allowance_s": -0.1},
])
def test_a_policy_that_would_oscillate_or_stall_is_refused(kwargs):
    with pytest.raises(ValueError):
        LoadPolicy(**kwargs)


# -- the order of decode work ----------------------------------------------------------------------------------------


def test_a_final_runs_before_streaming_work_queued_earlier():
    queue = DecodeQueue()
    for caller in ("a", "b", "c"):
        queue.put(job(caller))
    queue.put(job("d", final=True))

    assert queue.take().call_id == "d"
    assert [queue.take().call_id for _ in range(3)] == ["a", "b", "c"]


def test_two_jobs_of_one_call_never_run_at_once():
    queue = DecodeQueue()
    first, second, other = job("a"), job("a", final=True), job("b")
    for item in (first, second, other):
        queue.put(item)

    assert queue.take() is first
    assert queue.take() is other, "a's final must wait for a's running job, even though finals go first"
    assert queue.take() is None
    queue.done(first)
    assert queue.take() is second


def test_a_caller_who_keeps_talking_waits_behind_the_others_next_slice():
    queue = DecodeQueue()
    queue.put(job("talker"))
    queue.put(job("b"))
    queue.put(job("c"))

    served = []
    for _ in range(6):  # each call puts its next slice when its last one is done, as the service does
        current = queue.take()
        served.append(current.call_id)
        queue.done(current)
        queue.put(job(current.call_id))

    assert served == ["talker", "b", "c", "talker", "b", "c"]


def test_when_a_caller_stops_their_waiting_slice_goes_ahead_as_a_final():
    queue = DecodeQueue()
    for caller in ("a", "b", "stopped"):
        queue.put(job(caller))

    queue.expedite("stopped")

    assert [queue.take().call_id for _ in range(3)] == ["stopped", "a", "b"]


def test_an_ended_calls_waiting_jobs_are_dropped_and_others_keep_their_order():
    queue = DecodeQueue()
    for caller in ("a", "gone", "b", "gone"):
        queue.put(job(caller))

    assert [j.call_id for j in queue.drop("gone")] == ["gone", "gone"]
    assert [queue.take().call_id for _ in range(2)] == ["a", "b"] and queue.take() is None
