"""Multi-turn conversations over the REST call contract, as issue 2's "How this will be judged" lists them."""

from __future__ import annotations

import pytest

from tests.integration.caller import Caller, digits_in, events, expect_of, joined, texts

pytestmark = pytest.mark.integration


def test_card_loss_for_wang_jianguo_from_his_reserved_number(stack):
    wang = Caller(stack, "13800000001", card="1234", pin="135790")
    greeting = wang.start()
    assert "王先生" in joined(greeting) and "人工" in joined(greeting) and "0" in joined(greeting)
    rates = [e["rate"] for e in events(greeting, "speech_rate")]
    assert rates and rates[-1] < 1.0

    reply = wang.say("喂 那个 我的银行卡丢了")
    reply = wang.answer_prompts(reply, done=lambda items: "挂失" in joined(items) and len(digits_in(joined(items))) >= 6)
    assert len(digits_in(joined(reply))) >= 6, f"no reference number read back: {texts(reply)}"
    assert any(e.get("secure") for items in wang.replies for e in events(items, "expect")), "PIN asked without expect"

    again = wang.answer_prompts(wang.say("我的卡丢了 要挂失"), done=lambda items: "已" in joined(items))
    assert "已" in joined(again), f"a second report must say the card is already lost: {texts(again)}"


def test_green_channel_from_an_unknown_number_hands_off_in_the_first_reply(stack):
    stranger = Caller(stack, "17700000000")
    stranger.start()
    reply = stranger.send("/green_channel")
    handoffs = events(reply, "handoff")
    assert handoffs, f"no handoff in the first reply to /green_channel: {reply}"
    assert handoffs[0]["queue"] == "elderly_priority"
    assert handoffs[0]["reason"] == "green_channel"
    assert handoffs[0]["context"]["green_channel"] is True
    assert expect_of(reply) is None  # no questions first


def test_green_channel_spoken(stack):
    stranger = Caller(stack, "17700000000")
    stranger.start()
    handoffs = events(stranger.say("我年纪大了 我要走绿色通道"), "handoff")
    assert handoffs and handoffs[0]["queue"] == "elderly_priority"


def test_balance_with_spoken_card_digits_and_keyed_pin(stack):
    li = Caller(stack, "13800000002", pin="246802", spoken_card="五六七八")
    li.start()
    reply = li.answer_prompts(li.say("帮我查一下余额"), done=lambda items: "8000" in digits_in(joined(items))
                              or "八千" in joined(items))
    assert "8000" in digits_in(joined(reply)) or "八千" in joined(reply), texts(reply)


def test_wrong_pin_never_discloses_and_locks_after_three(stack):
    chen = Caller(stack, "13900000003", card="4321", pin="000000")
    chen.start()
    # Each wrong PIN asks for card and PIN again (the prompt must not tell which was wrong): 3 × 2 answers.
    chen.answer_prompts(chen.say("查余额"), done=lambda items: False, max_turns=6, confirm=False)
    everything = chen.all_texts()
    assert "1200" not in digits_in(everything) and "一千二" not in everything
    last = chen.replies[-1]
    assert "人工" in joined(last) or events(last, "handoff"), f"no human offered after 3 wrong PINs: {texts(last)}"
    # Locked for the day: even the right PIN does not disclose now.
    chen.pin = "112233"
    chen.answer_prompts(chen.say("查余额"), done=lambda items: False, max_turns=3, confirm=False)
    assert "1200" not in digits_in(chen.all_texts())


def test_repeat_says_the_last_prompt_word_for_word(stack):
    caller = Caller(stack, "17700000000")
    caller.start()
    prompt = texts(caller.say("我要查余额"))
    repeated = texts(caller.say("你说什么 再说一遍"))
    assert prompt and all(text in repeated for text in prompt), f"{prompt} vs {repeated}"


def test_speak_slower_sends_a_slower_speech_rate(stack):
    caller = Caller(stack, "17700000000")
    caller.start()
    rates = [e["rate"] for e in events(caller.say("你说话太快了 说慢一点"), "speech_rate")]
    assert rates and rates[-1] < 1.0


def test_escalation_after_three_misunderstandings(stack):
    caller = Caller(stack, "17700000000")
    caller.start()
    first = caller.say("火星上明天天气怎么样")  # no filler words: 「呃 那个 …」 is a filler, which is no strike
    second = caller.say("给我唱首歌吧")
    third = caller.say("帮我订一张去火星的机票")  # not a yes: after the 2nd, a human is on offer
    assert not events(first, "handoff") and texts(first)
    assert "人工" in joined(second) and not events(second, "handoff")
    handoffs = events(third, "handoff")
    assert handoffs and handoffs[0]["reason"] == "nlu_fallback"


def test_complaint_creates_a_ticket_and_reads_back_its_number(stack):
    caller = Caller(stack, "13900000003")
    caller.start()
    caller.say("我要投诉")
    reply = caller.say("你们网点的工作人员态度太差了 让我排队等了两个小时")
    # The complaint form asks where and when, and whether there is more (docs/DIALOGUE.md, "Complaints").
    answers = {"哪个网点": "海淀支行", "什么时间": "上周五下午", "补充": "没有了"}
    for _ in range(4):
        if len(digits_in(joined(reply))) >= 6:
            break
        answer = next((said for asked, said in answers.items() if asked in joined(reply)), None)
        if answer is None:
            break
        reply = caller.say(answer)
    assert len(digits_in(joined(reply))) >= 6, f"no ticket number read back: {texts(reply)}"
