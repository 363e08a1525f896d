"""Service intents: handoff queues and context, green channel, repeat, slower, cancel, keypad, not understood, callback."""

from __future__ import annotations

from actions.call import ActionAffirm, ActionCallStart, ActionDtmf, ActionTransferFailed
from actions.cards import ActionRepayCreditCard
from actions.service import (
    ActionCancelTask, ActionGreenChannel, ActionHumanHandoff, ActionNotUnderstood, ActionRepeat, ActionSpeakSlower,
)
from tests.actions.dialogue_harness import Call, bot, dtmf, project_domain, user


async def greeted(phone: str | None) -> Call:
    call = Call()
    call.say(user("/call_start", "call_start", metadata={"caller_number": phone}))
    await call.run(ActionCallStart())
    return call


async def test_human_request_from_an_elderly_caller_goes_to_the_elderly_queue(bank_for_actions):
    call = await greeted("13800000001")
    call.say(user("我要转人工", "human_agent"))
    outcome = await call.run(ActionHumanHandoff())
    handoff = outcome.custom("handoff")
    assert handoff["queue"] == "elderly_priority" and handoff["priority"] == 9 and handoff["reason"] == "human_agent"
    assert handoff["context"]["call_id"] == "call-test-1" and handoff["context"]["verified"] is False
    assert handoff["context"]["customer_ref"] and not handoff["context"]["customer_ref"].isdigit()  # opaque, not a phone
    assert outcome.texts  # something is said before the transfer


async def test_handoff_context_names_the_task_in_progress(bank_for_actions):
    call = await greeted("13900000003")
    call.say(user("我的卡丢了", "report_card_loss")).say(user("人工", "human_agent"))
    handoff = (await call.run(ActionHumanHandoff())).custom("handoff")
    assert handoff["queue"] == "card_services" and handoff["priority"] == 1
    assert handoff["context"]["intent"] == "report_card_loss"


async def test_green_channel_hands_off_at_once_without_questions(bank_for_actions):
    call = await greeted("02087654321")
    call.say(user("绿色通道", "green_channel"))
    outcome = await call.run(ActionGreenChannel())
    handoff = outcome.custom("handoff")
    assert handoff["queue"] == "elderly_priority" and handoff["priority"] == 9
    assert handoff["reason"] == "green_channel" and handoff["context"]["green_channel"] is True
    assert "？" not in outcome.text


async def test_repeat_says_the_last_prompt_word_for_word_with_its_expect(bank_for_actions):
    call = Call()
    expect = {"event": "expect", "input": "digits", "max_length": 6, "secure": True}
    call.say(user("查余额", "check_balance")).say(bot("请输入6位电话银行密码。", expect)).say(user("再说一遍", "repeat"))
    outcome = await call.run(ActionRepeat())
    assert outcome.texts == ["请输入6位电话银行密码。"] and outcome.custom("expect") == expect
    call.say(user("再说一遍", "repeat"))
    again = await call.run(ActionRepeat())
    assert again.texts == ["请输入6位电话银行密码。"]


async def test_speak_slower_lowers_the_rate_for_the_rest_of_the_call(bank_for_actions):
    call = Call()
    call.say(bot("请问有什么可以帮您？")).say(user("说慢一点", "speak_slower"))
    first = await call.run(ActionSpeakSlower())
    assert first.custom("speech_rate")["rate"] == 0.8 and "请问有什么可以帮您？" in first.texts
    call.say(user("再慢一点", "speak_slower"))
    second = await call.run(ActionSpeakSlower())
    assert second.custom("speech_rate")["rate"] == 0.6 and call.slots["speech_rate"] == 0.6


async def test_cancel_abandons_the_form(bank_for_actions):
    call = Call()
    call.active_loop = "transfer_form"
    call.slots.update(to_card="9999", amount_cents="100")
    call.say(user("算了不转了", "cancel"))
    outcome = await call.run(ActionCancelTask())
    assert call.active_loop is None and call.slots["to_card"] is None and "已取消" in outcome.text


async def test_not_understood_ladder_resets_on_an_understood_turn(bank_for_actions):
    call = await greeted(None)
    texts = []
    for _ in range(2):
        call.say(user("今天天气怎么样", "out_of_scope"))
        texts.append((await call.run(ActionNotUnderstood())).text)
    assert "查余额" in texts[0]
    assert "人工" in texts[1] and "请按1" in texts[1]
    call.say(user("今天天气怎么样", "nlu_fallback"))
    third = await call.run(ActionNotUnderstood())
    assert third.custom("handoff")["reason"] == "nlu_fallback"
    call.say(user("谢谢", "thank")).say(user("嗯嗯啊", "out_of_scope"))
    assert (await call.run(ActionNotUnderstood())).custom("handoff") is None


async def test_keypad_star_menu_digit_choice_and_zero(bank_for_actions):
    call = await greeted(None)
    call.say(dtmf("*"))
    assert "查询余额请按1" in (await call.run(ActionDtmf())).text
    call.say(dtmf("1"))
    chosen = await call.run(ActionDtmf())
    replayed = [e for e in chosen.events if e["event"] == "user"]
    assert replayed and replayed[0]["parse_data"]["intent"]["name"] == "check_balance"
    call.say(dtmf("0"))
    assert (await call.run(ActionDtmf())).custom("handoff")["reason"] == "human_agent"


async def test_failed_transfer_offers_a_callback_ticket(bank_for_actions):
    call = await greeted("13900000003")
    call.say(user("/transfer_failed", "transfer_failed"))
    offer = await call.run(ActionTransferFailed())
    assert "回电" in offer.text and call.slots["pending_offer"] == "callback"
    call.say(user("好的", "affirm"))
    outcome = await call.run(ActionAffirm())
    assert "工单号是" in outcome.text and call.slots["pending_offer"] is None


async def test_goodbye_hangs_up():
    goodbye = project_domain()["responses"]["utter_goodbye"][0]
    assert goodbye["custom"] == {"event": "hangup"} and "再见" in goodbye["text"]


async def test_a_retried_repayment_turn_moves_money_once(bank_for_actions):
    call = Call()
    ref = bank_for_actions.verify_pin("1234", "135790", caller_phone="13800000001").customer_ref
    call.slots.update(verified=True, customer_ref=ref, card_last4="1234")
    call.say(user("是", "affirm"))
    for _ in range(2):  # the same confirmed turn run twice (e.g. Rasa retrying the action)
        call.slots.update(amount_cents="10000", confirmed=True)
        await call.run(ActionRepayCreditCard())
    assert bank_for_actions.balance(ref, "1234") == 5_234_050 - 10_000


async def test_bank_down_becomes_an_apology_and_a_handoff(bank_for_actions, monkeypatch):
    from actions.bank.errors import BankUnavailable

    call = Call()
    call.slots.update(verified=True, customer_ref="C1001", card_last4="1234")

    def dead(*args, **kwargs):
        raise BankUnavailable("down")

    monkeypatch.setattr(type(bank_for_actions), "balance", dead)
    from actions.accounts import ActionCheckBalance

    outcome = await call.run(ActionCheckBalance())
    assert "抱歉" in outcome.text and outcome.custom("handoff")["reason"] == "action_unavailable"


async def test_repeat_and_slower_inside_a_form_leave_the_question_to_the_form(bank_for_actions):
    call = Call()
    call.active_loop = "balance_form"
    call.say(bot("请输入6位电话银行密码。")).say(user("再说一遍", "repeat"))
    assert (await call.run(ActionRepeat())).messages == []  # the form asks again right after, word for word
    call.say(user("说慢点", "speak_slower"))
    slower = await call.run(ActionSpeakSlower())
    assert slower.texts == ["好的，我说慢一点。"] and slower.custom("speech_rate")


async def test_an_unsure_yes_still_accepts_an_open_offer(bank_for_actions):
    call = Call()
    call.slots["pending_offer"] = "human:pin_locked"
    call.say(user("好的", "nlu_fallback"))
    handoff = (await call.run(ActionNotUnderstood())).custom("handoff")
    assert handoff and handoff["reason"] == "pin_locked"
