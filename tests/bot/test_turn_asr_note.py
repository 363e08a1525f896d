"""The turn taker carries what the recognizer decoded a turn with into the turn, for the call record (issue 12)."""

from __future__ import annotations

from pipecat.frames.frames import TranscriptionFrame, VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.utils.time import time_now_iso8601

from bot.frames import AsrDecodeNote, CallerTurnFrame
from bot.processors.turns import TurnTaker

FLOOR = AsrDecodeNote(level=2, limits="max-active 1000, beam 8.0")


def segment(text: str, note: AsrDecodeNote | None) -> list:
    return [VADUserStartedSpeakingFrame(), VADUserStoppedSpeakingFrame(stop_secs=0.2),
            TranscriptionFrame(text, "", time_now_iso8601(), result=note, finalized=True)]


async def turns_of(frames: list) -> list[CallerTurnFrame]:
    down, _ = await run_test(TurnTaker(end_of_turn_s=0.3), frames_to_send=[*frames, SleepFrame(1.0)])
    return [frame for frame in down if isinstance(frame, CallerTurnFrame)]


async def test_a_turn_with_a_segment_decoded_under_load_carries_the_tightest_limits():
    turns = await turns_of([*segment("我要", AsrDecodeNote(level=1, limits="max-active 2000, beam 9.0")),
                            *segment("查余额", FLOOR)])

    assert [(turn.text, turn.asr_limits) for turn in turns] == [("我要 查余额", FLOOR.limits)]


async def test_a_turn_decoded_with_the_models_own_limits_carries_none():
    turns = await turns_of([*segment("查余额", AsrDecodeNote(level=0, limits="max-active 3000, beam 10.0")),
                            SleepFrame(1.0), *segment("转人工", None)])

    assert [(turn.text, turn.asr_limits) for turn in turns] == [("查余额", None), ("转人工", None)]
