"""Issue 8, "conversations that never mishear money": each reproduction replayed over the REST call contract against
a real Rasa server and action server, as 陈晓明 (13900000003; cards 4321 debit, 9999 credit; PIN 112233).

The bank store is shared by the session's servers, so each test uses its own call and moves little money."""

from __future__ import annotations

import itertools
import re
import sqlite3
import time

import pytest

from tests.rasa_servers import DialogueServers, custom, texts

pytestmark = pytest.mark.integration

CHEN = {"caller_number": "13900000003", "channel": "text", "asr_available": True}
PIN = '/dtmf{"digits":"112233"}'
CALL_IDS = itertools.count(1)


def new_call(servers: DialogueServers) -> str:
    call = f"dlg-money-{time.time_ns()}-{next(CALL_IDS)}"
    servers.send(call, "/call_start", CHEN)
    return call


def say(servers: DialogueServers, call: str, message: str) -> list:
    status, reply = servers.send(call, message)
    assert status == 200, f"{message!r} got HTTP {status}"
    return reply


def at_amount_prompt(servers: DialogueServers) -> str:
    """A verified call of 陈晓明 in the transfer form, asked for the amount (4321 → 9999)."""
    call = new_call(servers)
    for message in ("我要转账", '/dtmf{"digits":"4321"}', PIN):
        say(servers, call, message)
    reply = say(servers, call, '/dtmf{"digits":"9999"}')
    assert "金额" in texts(reply), texts(reply)
    return call


def asks_to_confirm(reply: list) -> bool:
    return "确认" in texts(reply) and ("按1" in texts(reply) or "按一" in texts(reply))


def test_a_filler_never_confirms_a_transfer(dialogue_servers):
    call = at_amount_prompt(dialogue_servers)
    read_back = say(dialogue_servers, call, "一百元")
    assert "4321" in texts(read_back) and "9999" in texts(read_back) and "100元" in texts(read_back)
    for filler in ("嗯", "哦", "那个", "就是 就是那个啥"):  # 是 inside 就是 is no yes
        reply = say(dialogue_servers, call, filler)
        assert "转账成功" not in texts(reply), f"{filler!r} moved the money: {texts(reply)}"
        assert asks_to_confirm(reply), f"{filler!r} was not asked again: {texts(reply)}"
    done = say(dialogue_servers, call, "是的")
    assert "转账成功" in texts(done)


def test_a_rate_question_at_the_amount_prompt_is_answered_and_never_an_amount(dialogue_servers):
    call = at_amount_prompt(dialogue_servers)
    reply = say(dialogue_servers, call, "等一下，你们现在一年定期利率是多少")
    assert "利率" in texts(reply) and "百分之" in texts(reply), texts(reply)
    assert not asks_to_confirm(reply) and "1元" not in texts(reply)
    assert "金额" in texts(reply), f"the form did not resume at the amount: {texts(reply)}"
    read_back = say(dialogue_servers, call, "两百块")
    assert "200元" in texts(read_back) and asks_to_confirm(read_back)
    say(dialogue_servers, call, "不")


def test_one_sentence_names_source_and_destination_and_a_later_balance_reads_the_source(dialogue_servers):
    call = new_call(dialogue_servers)
    ask_pin = say(dialogue_servers, call, "从尾号4321的卡转两百块钱到尾号9999的卡上")
    assert custom(ask_pin, "expect") and custom(ask_pin, "expect")["secure"] is True, texts(ask_pin)
    read_back = say(dialogue_servers, call, PIN)
    assert "转入卡" not in texts(read_back), "the destination card was asked for again"
    assert re.search(r"从尾号4321的卡.*尾号9999的卡.*200元", texts(read_back)), texts(read_back)
    say(dialogue_servers, call, '/dtmf{"digits":"2"}')
    balance = say(dialogue_servers, call, "查一下余额")
    assert "尾号4321" in texts(balance) and "9999" not in texts(balance), texts(balance)


def test_a_negative_amount_is_refused(dialogue_servers):
    call = at_amount_prompt(dialogue_servers)
    reply = say(dialogue_servers, call, "负五百")
    assert "大于零" in texts(reply) and "500元" not in texts(reply) and not asks_to_confirm(reply)


def test_zero_and_over_the_balance_are_refused_before_the_read_back(dialogue_servers):
    call = at_amount_prompt(dialogue_servers)
    zero = say(dialogue_servers, call, "零元")
    assert "大于零" in texts(zero) and not asks_to_confirm(zero)
    too_much = say(dialogue_servers, call, "五千块")
    assert "可用余额" in texts(too_much) and not asks_to_confirm(too_much), texts(too_much)
    assert re.search(r"\d+元", texts(too_much)), "the available amount is not said"


def test_a_human_request_at_the_pin_prompt_hands_off(dialogue_servers):
    call = new_call(dialogue_servers)
    say(dialogue_servers, call, "查余额")
    ask_pin = say(dialogue_servers, call, '/dtmf{"digits":"4321"}')
    assert custom(ask_pin, "expect")["secure"] is True
    reply = say(dialogue_servers, call, "我不记得密码了帮我转人工")
    assert custom(reply, "handoff") is not None, texts(reply)
    assert custom(reply, "expect") is None, "the PIN was asked for again"


@pytest.mark.parametrize(("prompt", "words"), [("card", "找客服"), ("amount", "转人工"), ("card", "绿色通道")])
def test_a_human_request_wins_at_every_prompt(dialogue_servers, prompt, words):
    if prompt == "amount":
        call = at_amount_prompt(dialogue_servers)
    else:
        call = new_call(dialogue_servers)
        say(dialogue_servers, call, "我要转账")
    reply = say(dialogue_servers, call, words)
    assert custom(reply, "handoff") is not None, texts(reply)


def test_a_balance_question_inside_the_transfer_is_answered_then_the_form_resumes(dialogue_servers):
    call = at_amount_prompt(dialogue_servers)
    reply = say(dialogue_servers, call, "我卡里还有多少钱")
    assert "余额" in texts(reply) and "4321" in texts(reply), texts(reply)
    assert "金额" in texts(reply) and not asks_to_confirm(reply)


def work_order(servers: DialogueServers, call: str) -> list[tuple[str, str]]:
    with sqlite3.connect(servers.workdir / "bank.db") as db:
        return list(db.execute("SELECT ticket, description FROM work_orders WHERE call_id = ? ORDER BY id", (call,)))


def test_complaint_details_go_to_the_ticket_and_never_to_branch_search(dialogue_servers):
    call = new_call(dialogue_servers)
    first = say(dialogue_servers, call, "我要投诉你们网点的柜员态度太差了")
    assert "工单号" not in texts(first) and not work_order(dialogue_servers, call), "filed before the details"
    details = say(dialogue_servers, call, "上周五在海淀支行办业务，柜员一直玩手机")
    assert "为您找到" not in texts(details) and "网点，地址" not in texts(details)
    assert "工单号" in texts(details) and "海淀支行" in texts(details), texts(details)
    assert "还有要补充的吗" in texts(details)
    [(ticket, description)] = work_order(dialogue_servers, call)
    assert "海淀支行" in description and "玩手机" in description and "态度太差" in description
    more = say(dialogue_servers, call, "他还对我大声嚷嚷，旁边的网点经理也不管")
    assert "为您找到" not in texts(more)
    assert ticket in re.sub(r"[^0-9]", "", texts(more)), texts(more)
    orders = work_order(dialogue_servers, call)
    assert orders[0][0] == ticket and any("大声嚷嚷" in description for _, description in orders)
    close = say(dialogue_servers, call, "没有了")
    assert "还有什么可以帮您" in texts(close)
