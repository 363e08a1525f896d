"""Greeting and identity verification, run as the action server runs them, on a real temporary bank."""

from __future__ import annotations

import json

import pytest

from actions.call import ActionCallStart
from actions.accounts import ActionCheckBalance
from actions.service import ActionHumanHandoff
from actions.verification import ValidateBalanceForm, ValidateCardLossForm
from tests.actions.dialogue_harness import Call, dtmf, user

ELDERLY_PHONE = "13800000001"  # 王建国, born 1952
YOUNG_PHONE = "13900000003"  # 陈晓明, born 1990
RIGHT_PIN = "135790"


async def started(phone: str | None) -> tuple[Call, object]:
    call = Call()
    call.say(user("/call_start", "call_start", metadata={"caller_number": phone, "channel": "voice", "asr_available": True}))
    return call, await call.run(ActionCallStart())


async def test_elderly_caller_gets_the_slow_personal_greeting(bank_for_actions):
    call, outcome = await started(ELDERLY_PHONE)
    assert outcome.custom("speech_rate") == {"event": "speech_rate", "rate": 0.8}
    assert "王先生" in outcome.text and "光银岁月" in outcome.text
    assert "人工" in outcome.text and "0" in outcome.text
    assert call.slots["elderly"] is True and call.slots["caller_number"] == ELDERLY_PHONE
    assert outcome.messages[0]["custom"]["event"] == "speech_rate"  # slower from the very first words


async def test_other_callers_get_the_standard_greeting_listing_services(bank_for_actions):
    call, outcome = await started(YOUNG_PHONE)
    assert outcome.custom("speech_rate") is None
    assert "余额" in outcome.text and "挂失" in outcome.text
    assert call.slots["elderly"] is False


async def test_unknown_number_and_keypad_only_portal(bank_for_actions):
    call = Call()
    call.say(user("/call_start", "call_start", metadata={"caller_number": "01012345678", "asr_available": False}))
    outcome = await call.run(ActionCallStart())
    assert "请按1" in outcome.text  # keypad menu spoken when there is no recogniser


async def verify(call: Call, card: dict, pin: str):
    form = ValidateBalanceForm()
    call.active_loop = "balance_form"
    await call.fill(form, "card_last4", card)
    return await call.fill(form, "pin", dtmf(pin))


async def test_spoken_card_and_keyed_pin_verify_without_keeping_the_pin(bank_for_actions):
    call, _ = await started(ELDERLY_PHONE)
    outcome = await verify(call, user("尾号是幺二三四", "inform"), RIGHT_PIN)
    assert call.slots["card_last4"] == "1234"
    assert outcome.slots_set()["verified"] is True and outcome.slots_set()["pin"] is None
    assert call.slots["customer_ref"]
    assert RIGHT_PIN not in json.dumps(outcome.events, ensure_ascii=False)
    assert RIGHT_PIN not in json.dumps(outcome.messages, ensure_ascii=False)
    balance = await call.run(ActionCheckBalance())
    assert "52340元5角" in balance.text


async def test_spoken_pin_is_accepted_too(bank_for_actions):
    call, _ = await started(ELDERLY_PHONE)
    form = ValidateBalanceForm()
    await call.fill(form, "card_last4", dtmf("1234"))
    outcome = await call.fill(form, "pin", user("一三五七九零", "inform"))
    assert outcome.slots_set()["verified"] is True


async def test_wrong_pin_gets_a_retry_without_disclosure(bank_for_actions):
    call, _ = await started(ELDERLY_PHONE)
    outcome = await verify(call, dtmf("1234"), "000000")
    assert outcome.slots_set()["pin"] is None and not call.slots["verified"]
    assert "再试2次" in outcome.text
    assert "余额" not in outcome.text and "王" not in outcome.text


async def test_unknown_card_sounds_like_a_wrong_pin_and_asks_for_the_card_again(bank_for_actions):
    call, _ = await started(ELDERLY_PHONE)
    outcome = await verify(call, dtmf("0000"), RIGHT_PIN)
    assert "卡号或密码不正确" in outcome.text
    assert call.slots["card_last4"] is None


@pytest.mark.parametrize("bad_pin", [dtmf("12345"), user("我不记得了", "inform"), dtmf("1234567")])
async def test_malformed_pin_is_asked_again(bank_for_actions, bad_pin):
    call, _ = await started(ELDERLY_PHONE)
    form = ValidateBalanceForm()
    await call.fill(form, "card_last4", dtmf("1234"))
    outcome = await call.fill(form, "pin", bad_pin)
    assert outcome.slots_set().get("pin", "unset") is None
    assert "6位数字" in outcome.text and not call.slots["verified"]


async def test_three_wrong_pins_lock_for_the_day_and_offer_a_human(bank_for_actions):
    call, _ = await started(ELDERLY_PHONE)
    form = ValidateBalanceForm()
    for wrong in ("000000", "111111", "222222"):
        await call.fill(form, "card_last4", dtmf("1234"))  # a failure asks for card and PIN again
        outcome = await call.fill(form, "pin", dtmf(wrong))
    assert call.slots["pin_locked"] is True
    required = await form.required_slots(["card_last4", "pin"], None, call.tracker(), {})
    assert required == []  # the form ends instead of asking again
    refusal = await call.run(ActionCheckBalance())
    assert "暂停" in refusal.text and "人工" in refusal.text
    assert "元" not in refusal.text  # nothing disclosed
    assert call.slots["pending_offer"] == "human:pin_locked"
    call.say(user("转人工", "human_agent"))
    handoff = (await call.run(ActionHumanHandoff())).custom("handoff")
    assert handoff["reason"] == "pin_locked" and handoff["queue"] == "elderly_priority"
    # the bank keeps the lock: even the right PIN is refused today
    assert bank_for_actions.verify_pin("1234", RIGHT_PIN, caller_phone=ELDERLY_PHONE).status == "locked"


async def test_verification_lasts_for_the_call(bank_for_actions):
    call, _ = await started(ELDERLY_PHONE)
    await verify(call, dtmf("1234"), RIGHT_PIN)
    required = await ValidateBalanceForm().required_slots(["card_last4", "pin"], None, call.tracker(), {})
    assert required == ["card_last4"]  # card known, no PIN asked again


@pytest.mark.parametrize("text, intent, expected", [
    ("是的", "nlu_fallback", True), ("对", "inform", True), ("不用了", "nlu_fallback", False),
    ("取消", "out_of_scope", False), ("今天天气", "out_of_scope", "unset"),
])
async def test_confirmation_understands_bare_yes_and_no(text, intent, expected):
    call = Call()
    call.active_loop = "card_loss_form"
    outcome = await call.fill(ValidateCardLossForm(), "confirmed", user(text, intent))
    assert outcome.slots_set().get("confirmed", "unset") == expected


async def test_card_loss_read_back_can_switch_to_another_card(bank_for_actions):
    call, _ = await started(ELDERLY_PHONE)
    call.slots.update(verified=True, customer_ref="C1001", card_last4="8888")
    call.active_loop = "card_loss_form"
    outcome = await call.fill(ValidateCardLossForm(), "confirmed", user("不是这张 是一二三四", "inform"))
    assert call.slots["card_last4"] == "1234" and call.slots["confirmed"] is None
    assert outcome.events  # the form is not rejected: it reads the new card back


async def test_card_loss_confirmation_by_key_1_still_works(bank_for_actions):
    call, _ = await started(ELDERLY_PHONE)
    call.slots.update(verified=True, customer_ref="C1001", card_last4="8888")
    call.active_loop = "card_loss_form"
    await call.fill(ValidateCardLossForm(), "confirmed", dtmf("1"))
    assert call.slots["confirmed"] is True and call.slots["card_last4"] == "8888"


async def test_asking_for_the_same_task_again_inside_its_form_repeats_the_question(bank_for_actions):
    call, _ = await started(ELDERLY_PHONE)
    call.slots.update(verified=True, customer_ref="C1001", card_last4="1234")
    call.active_loop = "card_loss_form"
    outcome = await call.fill(ValidateCardLossForm(), "confirmed", user("我的卡丢了 要挂失", "report_card_loss"))
    assert outcome.slots_set().get("confirmed", "unset") is None  # not rejected: the read-back is asked again
