"""The satisfaction survey through the full per-call pipeline (real TTS, keypad, no-input ladder, fake Rasa): the
rating keyed at the survey prompt reaches the call record with the dialogue's other facts, and silence during the
survey goes to the dialogue as /survey_no_answer, never to the keypad menu or an agent.

The same against the real dialogue: tests/dialogue/test_survey_conversations.py (its retry for elderly callers,
its sampling) and tests/integration/test_stack_survey.py (the real stack, keypad to call record).
"""

from __future__ import annotations


import pytest

from bot.processors.rasa_bridge import DIRECT_HANDOFF_TEXT, SURVEY_GOODBYE_TEXT
from call_contract import (
    HUMAN_AGENT, SURVEY_NO_ANSWER, dtmf_message, elderly_caller, fallback_handoff, survey_answer, survey_offered,
    task_completed,
)
from tests.bot.test_pipeline_turns import LONG_PROMPT
from tests.bot.voice_doubles import CallHarness, ScriptedRasa

MENU = dtmf_message("*")
SURVEY_PROMPT = [{"custom": survey_offered()}, {"text": LONG_PROMPT + "满意请按1，一般请按2，不满意请按3。"}]
# the dialogue's reply to the caller's goodbye (here at once to /call_start, so no speech is needed): a task was done
SERVED_THEN_SURVEY = [{"custom": elderly_caller()}, {"custom": task_completed("check_balance")},
                      {"custom": {"event": "task_completed", "task": "steal_money"}},  # not a task: not recorded
                      {"custom": task_completed("check_balance")},  # the same task again: recorded once
                      {"text": "您的余额是一百元。"}, *SURVEY_PROMPT]
THANKS = [{"custom": survey_answer(1)}, {"text": "感谢您的评价，再见。"}, {"custom": {"event": "hangup"}}]
NO_RATING = [{"custom": survey_answer(None)}, {"text": "感谢您的来电，再见。"}, {"custom": {"event": "hangup"}}]


@pytest.fixture
async def rasa():
    server = ScriptedRasa(replies={"/call_start": SERVED_THEN_SURVEY, dtmf_message("1"): THANKS,
                                   SURVEY_NO_ANSWER: NO_RATING, MENU: [{"text": "请按键。"}]})
    await server.start()
    yield server
    await server.stop()


async def test_a_rating_keyed_during_the_survey_prompt_reaches_the_call_record(rasa, make_call, tmp_path):
    call = make_call(rasa, script=[], no_input_s=30.0)
    await call.call.start()
    await call.wait_for(lambda: call.audio_bytes > 8000 * 2 * 2, timeout=5)  # 2 s into the ≈10 s of prompts
    call.call.feed_dtmf("1")

    record = await call.ended_record(tmp_path / "calls")
    assert rasa.messages == ["/call_start", dtmf_message("1")]
    assert call.clears  # the key cut the survey prompt short
    assert record["survey_offered"] is True and record["survey_score"] == 1
    assert record["completed_tasks"] == ["check_balance"] and record["elderly"] is True
    assert record["outcome"] == "served_by_bot"


async def test_silence_at_the_survey_asks_the_dialogue_never_the_menu_or_an_agent(rasa, make_call, tmp_path):
    rasa.replies["/call_start"] = [{"text": "请讲。"}, *SURVEY_PROMPT[:1], {"text": "满意请按1。"}]
    call = make_call(rasa, script=[], no_input_s=0.3)
    await call.call.start()

    record = await call.ended_record(tmp_path / "calls")
    assert rasa.messages == ["/call_start", SURVEY_NO_ANSWER]
    assert MENU not in rasa.messages and HUMAN_AGENT not in rasa.messages
    assert record["survey_offered"] is True and record["survey_score"] is None
    assert record["outcome"] == "served_by_bot" and record["completed_tasks"] == [] and record["elderly"] is False
    assert record["no_inputs"] == 0  # review SHOULD-FIX 5: the optional survey's silence is no failed prompt


async def test_after_the_survey_the_ladder_is_the_usual_one_again(rasa, make_call):
    # 人工 at the survey: the dialogue hands over; the transfer fails and the call goes on, survey closed
    rasa.replies["/call_start"] = [{"text": "满意请按1。"}, {"custom": survey_offered()}]
    rasa.replies[HUMAN_AGENT] = [{"text": "正在转接。"},
                                 {"custom": {"event": "handoff", "queue": "general", "reason": "human_agent"}}]
    rasa.replies["/transfer_failed"] = [{"text": "坐席繁忙。"}]
    call = make_call(rasa, script=[], no_input_s=0.4)
    await call.call.start()
    await call.wait_until_quiet()
    call.call.feed_dtmf("0")
    await call.wait_for(lambda: call.handoffs, timeout=5)
    assert call.call.record.survey_offered is True and call.call.record.survey_score is None
    call.call.transfer_result(False, "486 Busy Here")
    await call.wait_for(lambda: call.bot_texts().count("坐席繁忙。") == 2, timeout=10)  # 1st rung: the prompt again
    assert SURVEY_NO_ANSWER not in rasa.messages


async def test_a_dialogue_gone_during_the_survey_lets_the_caller_go(rasa, make_call, tmp_path):
    rasa.replies["/call_start"] = [{"text": "满意请按1。"}, {"custom": survey_offered()}]
    call = make_call(rasa, script=[], no_input_s=30.0)
    await call.call.start()
    await call.wait_until_quiet()
    await rasa.stop()  # Rasa cannot be reached: no apology offering an agent, a goodbye
    call.call.feed_dtmf("2")

    record = await call.ended_record(tmp_path / "calls")
    assert call.bot_texts()[-1] == SURVEY_GOODBYE_TEXT
    assert record["survey_offered"] is True and record["survey_score"] is None
    assert record["outcome"] == "served_by_bot"


async def test_the_human_key_at_the_survey_while_the_dialogue_is_gone_reaches_a_person(rasa, make_call):
    # Review MUST-FIX 2: the survey being open made this a goodbye, hanging up on a caller who asked for a person.
    rasa.replies["/call_start"] = [{"text": "满意请按1。"}, {"custom": survey_offered()}]
    call = make_call(rasa, script=[], no_input_s=30.0)
    await call.call.start()
    await call.wait_until_quiet()
    await rasa.stop()
    call.call.feed_dtmf("0")  # the human key: /human_agent, which the gateway obeys without the dialogue

    await call.wait_for(lambda: call.handoffs, timeout=10)
    assert call.handoffs == [fallback_handoff(call.call.info.call_id)] and call.hangups == 0
    assert call.bot_texts()[-1] == DIRECT_HANDOFF_TEXT
    record = call.call.record
    assert record.outcome == "handoff" and record.survey_offered is True and record.survey_score is None


async def test_a_survey_the_dialogue_keeps_asking_ends_on_the_last_rung(rasa, make_call, tmp_path):
    # Review SHOULD-FIX 3: the third silence went to the dialogue like the others, and its reply (the question
    # again) armed no more timers: the line stayed open for ever.
    rasa.replies["/call_start"] = [{"text": "满意请按1。"}, {"custom": survey_offered()}]
    rasa.replies[SURVEY_NO_ANSWER] = [{"custom": survey_offered()}, {"text": "满意请按1。"}]
    call = make_call(rasa, script=[], no_input_s=0.3)
    await call.call.start()

    record = await call.ended_record(tmp_path / "calls")
    assert rasa.messages == ["/call_start", SURVEY_NO_ANSWER, SURVEY_NO_ANSWER]
    assert call.bot_texts()[-1] == SURVEY_GOODBYE_TEXT
    assert record["outcome"] == "served_by_bot" and record["survey_score"] is None


async def test_a_reply_that_does_not_ask_again_closes_the_survey(rasa, make_call):
    # Review SHOULD-FIX 3: the survey stayed open after a reply that neither asked again nor closed it, so the
    # ladder's every rung went to the dialogue as /survey_no_answer and none reached the menu or an agent.
    rasa.replies["/call_start"] = [{"text": "满意请按1。"}, {"custom": survey_offered()}]
    rasa.replies[SURVEY_NO_ANSWER] = [{"text": "好的。"}]  # neither the question again nor survey_answer
    call = make_call(rasa, script=[], no_input_s=0.3)
    await call.call.start()

    await call.wait_for(lambda: HUMAN_AGENT in rasa.messages, timeout=15)
    assert rasa.messages == ["/call_start", SURVEY_NO_ANSWER, MENU, HUMAN_AGENT]  # rungs 2 and 3 as usual


async def test_a_key_typed_before_the_survey_question_does_not_answer_it(rasa, make_call, tmp_path):
    # Review SHOULD-FIX 4: a key held while the goodbye turn was with the dialogue was taken as the rating.
    rasa.delay_s = 0.5
    rasa.replies["/call_start"] = [{"text": "满意请按1。"}, {"custom": survey_offered()}]
    rasa.replies[dtmf_message("2")] = THANKS
    call = make_call(rasa, script=[], no_input_s=30.0)
    await call.call.start()
    call.call.feed_dtmf("3")  # while /call_start is with the dialogue: before any survey question
    await call.wait_for(lambda: rasa.messages, timeout=5)
    await call.wait_until_quiet(quiet_s=1.0)
    assert rasa.messages == ["/call_start"]  # held, then dropped: no rating yet

    call.call.feed_dtmf("2")  # keyed at the question: the answer
    await call.wait_for(lambda: call.hangups, timeout=10)
    assert rasa.messages == ["/call_start", dtmf_message("2")]


async def test_keys_typed_while_the_survey_is_open_still_answer_the_question_again(rasa, make_call):
    # An elderly caller's wrong key then the right one, quicker than the dialogue: the 1 answers the retry.
    rasa.delay_s = 0.5
    rasa.replies["/call_start"] = [{"text": "满意请按1。"}, {"custom": survey_offered()}]
    rasa.replies[dtmf_message("9")] = [{"custom": survey_offered()}, {"text": "抱歉，满意请按1。"}]
    call = make_call(rasa, script=[], no_input_s=30.0)
    await call.call.start()
    await call.wait_for(lambda: rasa.messages, timeout=5)
    await call.wait_until_quiet(quiet_s=1.0)
    call.call.feed_dtmf("9")
    await call.wait_for(lambda: len(rasa.messages) == 2, timeout=5)
    call.call.feed_dtmf("1")  # held while the 9 is with the dialogue

    await call.wait_for(lambda: call.hangups, timeout=10)
    assert rasa.messages == ["/call_start", dtmf_message("9"), dtmf_message("1")]


async def test_a_forged_survey_answer_or_elderly_flag_is_not_recorded(rasa, make_call, tmp_path):
    rasa.replies["/call_start"] = [{"custom": {"event": "elderly", "value": "yes"}}, {"text": "满意请按1。"},
                                   {"custom": survey_offered()}]
    rasa.replies[dtmf_message("1")] = [{"custom": {"event": "survey_answer", "score": "1; DROP TABLE"}},
                                       {"text": "再见。"}, {"custom": {"event": "hangup"}}]
    call = make_call(rasa, script=[], no_input_s=30.0)
    await call.call.start()
    await call.wait_until_quiet()
    call.call.feed_dtmf("1")

    record = await call.ended_record(tmp_path / "calls")
    assert record["elderly"] is False and record["survey_score"] is None and record["survey_offered"] is True


def test_a_record_holds_the_dialogue_facts_under_the_names_the_kpis_read():
    from bot.call_records import CallRecord

    document = CallRecord(call_id="c1", caller_number="13800000001").to_json()
    assert {key: document[key] for key in ("completed_tasks", "elderly", "survey_offered", "survey_score")} == {
        "completed_tasks": [], "elderly": False, "survey_offered": False, "survey_score": None}
