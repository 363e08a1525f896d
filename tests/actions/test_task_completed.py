"""`task_completed` (call_contract.py) is said exactly where the caller's business is done: money moved, a card
stopped or activated, figures read out, a complaint filed; never on a refusal, a cancellation or a failure. The
call record's `completed_tasks`, and the KPIs' resolution rate, are made of these."""

from __future__ import annotations

from actions.accounts import ActionBalanceAside, ActionCheckBalance, ActionQueryTransactions
from actions.cards import (
    ActionActivateCard, ActionCreditCardBill, ActionRepayCreditCard, ActionReportCardLoss, ActionResetPassword,
)
from actions.complaints import ValidateComplaintForm
from actions.info import ActionBranchLocator, ActionExchangeRate, ActionInterestRate
from actions.service import ActionRepeat
from actions.transfers import ActionTransferMoney
from tests.actions.test_actions_tasks import CHEN, verified_call
from tests.actions.dialogue_harness import Call, user


def completed(outcome) -> list[str]:
    return [m["custom"]["task"] for m in outcome.messages if (m.get("custom") or {}).get("event") == "task_completed"]


async def test_balance_and_transactions_read_out_are_completed(bank_for_actions):
    call = await verified_call(bank_for_actions)
    assert completed(await call.run(ActionCheckBalance())) == ["check_balance"]
    call = await verified_call(bank_for_actions)
    call.say(user("最近两笔交易", "query_transactions"))
    assert completed(await call.run(ActionQueryTransactions())) == ["query_transactions"]
    aside = await verified_call(bank_for_actions)
    assert completed(await aside.run(ActionBalanceAside())) == ["check_balance"]


async def test_an_unverified_caller_completes_nothing(bank_for_actions):
    call = Call()
    for action in (ActionCheckBalance(), ActionTransferMoney(), ActionReportCardLoss(), ActionBalanceAside()):
        assert completed(await call.run(action)) == []


async def test_money_moved_is_completed_and_a_declined_or_refused_movement_is_not(bank_for_actions):
    declined = await verified_call(bank_for_actions)
    declined.slots.update(to_card="8888", amount_cents="100000", confirmed=False)
    assert completed(await declined.run(ActionTransferMoney())) == []
    too_much = await verified_call(bank_for_actions, CHEN)  # 陈晓明 has 1,200.00
    too_much.slots.update(to_card="9999", amount_cents="500000", confirmed=True)
    refused = await too_much.run(ActionTransferMoney())
    assert "转账成功" not in refused.text and completed(refused) == []
    assert "余额不足" in refused.text  # the refusal itself, not an apology for a crash (it was one)
    done = await verified_call(bank_for_actions)
    done.slots.update(to_card="8888", amount_cents="100000", confirmed=True)
    assert completed(await done.run(ActionTransferMoney())) == ["transfer_money"]

    repay = await verified_call(bank_for_actions)
    repay.slots.update(amount_cents="32800", confirmed=True)
    assert completed(await repay.run(ActionRepayCreditCard())) == ["credit_card_repayment"]
    nothing_due = await verified_call(bank_for_actions, CHEN, card="9999")
    assert completed(await nothing_due.run(ActionRepayCreditCard())) == []


async def test_card_loss_completes_when_the_card_is_stopped_not_when_declined(bank_for_actions):
    declined = await verified_call(bank_for_actions)
    declined.slots["confirmed"] = False
    assert completed(await declined.run(ActionReportCardLoss())) == []
    call = await verified_call(bank_for_actions)
    call.slots["confirmed"] = True
    assert completed(await call.run(ActionReportCardLoss())) == ["report_card_loss"]
    again = await verified_call(bank_for_actions)  # already stopped: what the caller wanted holds
    assert completed(await again.run(ActionReportCardLoss())) == ["report_card_loss"]


async def test_bill_activation_password_help(bank_for_actions):
    assert completed(await (await verified_call(bank_for_actions)).run(ActionCreditCardBill())) == ["credit_card_bill"]
    assert completed(await (await verified_call(bank_for_actions, CHEN, card="7777")).run(ActionActivateCard())) \
        == ["activate_card"]
    password = Call().say(user("密码忘了怎么办", "reset_password"))
    assert completed(await password.run(ActionResetPassword())) == ["reset_password"]
    to_agent = Call().say(user("不记得密码了帮我转人工", "reset_password"))
    assert completed(await to_agent.run(ActionResetPassword())) == []  # handed over, not served


async def test_information_found_is_completed_and_nothing_found_is_not(bank_for_actions):
    branches = Call()
    branches.slots["location"] = "朝阳区"
    assert completed(await branches.run(ActionBranchLocator())) == ["branch_locator"]
    branches.slots["location"] = "火星"
    assert completed(await branches.run(ActionBranchLocator())) == []
    rates = Call().say(user("贷款利率多少", "interest_rate"))
    assert completed(await rates.run(ActionInterestRate())) == ["interest_rate"]
    fx = Call().say(user("美元汇率", "exchange_rate", {"currency": "USD"}))
    assert completed(await fx.run(ActionExchangeRate())) == ["exchange_rate"]


async def test_a_filed_complaint_is_completed_once(bank_for_actions):
    call = Call()
    call.active_loop = "complaint_form"
    asked = await call.fill(ValidateComplaintForm(), "complaint_text", user("网点排队太久了", "inform"))
    assert completed(asked) == []
    filed = await call.fill(ValidateComplaintForm(), "complaint_where", user("上周五在海淀支行", "branch_locator"))
    assert completed(filed) == ["complaint"]
    added = await call.fill(ValidateComplaintForm(), "complaint_more", user("柜员还一直玩手机", "complaint"))
    assert completed(added) == []


async def test_repeat_replays_the_words_not_the_facts(bank_for_actions):
    call = await verified_call(bank_for_actions)
    await call.run(ActionCheckBalance())
    call.say(user("再说一遍", "repeat"))
    again = await call.run(ActionRepeat())
    assert "余额" in again.text and completed(again) == []


ZHAO = ("13600000006", "6666", "468024")  # 赵敏: her card 1111 is reported lost (actions/bank/seed.py)


async def test_an_activation_that_fails_completes_nothing(bank_for_actions):
    # Review nit (test gap): only the activation that worked was tested.
    lost = await verified_call(bank_for_actions, ZHAO)
    lost.slots["card_last4"] = "1111"
    outcome = await lost.run(ActionActivateCard())
    assert "挂失" in outcome.text and completed(outcome) == []
    not_own = await verified_call(bank_for_actions)  # 王建国 names 陈晓明's card
    not_own.slots["card_last4"] = "4321"
    refused = await not_own.run(ActionActivateCard())
    assert "不在您本人名下" in refused.text and completed(refused) == []


async def test_no_rates_found_and_a_transfer_to_the_same_card_complete_nothing(bank_for_actions):
    # Review nit (test gap): the "nothing found" and same-card outcomes.
    fx = Call().say(user("XYZ汇率", "exchange_rate", {"currency": "XYZ"}))
    nothing = await fx.run(ActionExchangeRate())
    assert completed(nothing) == [] and "查不到" in nothing.text
    same = await verified_call(bank_for_actions)
    same.slots.update(to_card="1234", amount_cents="100000", confirmed=True)  # 王建国's own card 1234
    refused = await same.run(ActionTransferMoney())
    assert "不能相同" in refused.text and completed(refused) == []
