"""What the caller's words mean beyond the intent (actions/utterances.py): issue 8's money-safety rules."""

from __future__ import annotations

import pytest

from actions.cn_numbers import amount_in_context
from actions.utterances import card_mentions, cards_by_role, explicit_answer, human_request, is_filler, transfer_roles


@pytest.mark.parametrize("text", ["嗯", "哦", "啊", "那个", "嗯嗯", "呃…那个", "哦，", "嗯 这个"])
def test_backchannels_are_fillers_and_never_a_yes(text):
    assert is_filler(text) and explicit_answer(text) is None


@pytest.mark.parametrize("text", ["是", "是的", "对", "确认", "可以", "没问题", "好的", "嗯 对", "没错"])
def test_explicit_yes_words(text):
    assert explicit_answer(text) is True and not is_filler(text)


@pytest.mark.parametrize("text", ["不", "不是", "不对", "算了", "取消", "不用了", "没有", "不可以"])
def test_no_means_no(text):
    assert explicit_answer(text) is False


@pytest.mark.parametrize(("text", "wanted"), [
    ("我不记得密码了帮我转人工", "human_agent"), ("找客服", "human_agent"), ("人工", "human_agent"),
    ("绿色 通道", "green_channel"), ("我要走绿色通道", "green_channel"), ("一二三四", None), ("/dtmf", None),
])
def test_a_request_for_a_human_is_read_from_the_words(text, wanted):
    assert human_request(text) == wanted


@pytest.mark.parametrize(("text", "cents"), [
    ("等一下，你们现在一年定期利率是多少", None), ("三个月定期", None), ("从尾号4321的卡转两百块钱到尾号9999的卡上", 20000),
    ("两百块", 20000), ("5号转三百", 30000), ("四三二一那张卡转三千", 300000), ("百分之二", None), ("一块钱", 100),
])
def test_amounts_come_only_from_amount_expressions(text, cents):
    assert amount_in_context(text) == cents


def entity(value: str, role: str | None = None) -> dict:
    return {"entity": "card_last4", "value": value, **({"role": role} if role else {})}


@pytest.mark.parametrize(("message", "roles"), [
    ({"text": "从尾号4321的卡转两百块钱到尾号9999的卡上", "entities": [entity("4321"), entity("9999")]},
     {"source": "4321", "destination": "9999"}),
    ({"text": "x", "entities": [entity("4321", "source"), entity("9999", "destination")]},
     {"source": "4321", "destination": "9999"}),
    ({"text": "往尾号九九九九转一百块 从尾号四三二一出", "entities": []}, {"source": "4321", "destination": "9999"}),
    ({"text": "转一千到尾号四三二一", "entities": [entity("四三二一")]}, {"destination": "4321"}),
    ({"text": "尾号一二三四的卡余额", "entities": [entity("一二三四")]}, {"source": "1234"}),
])
def test_source_and_destination_cards_are_told_apart(message, roles):
    assert cards_by_role(message) == roles


def roles(text: str) -> list[tuple[str, str | None]]:
    return [(m.spoken, m.role) for m in transfer_roles(card_mentions(text))]


# Sentences written for this test, not taken from data/ or the held-out split.
@pytest.mark.parametrize(("text", "wanted"), [
    ("从尾号四三二一往尾号九九九九转一千", [("四三二一", "source"), ("九九九九", "destination")]),
    ("给后四位是1234的卡打三百 用我的尾号5678", [("1234", "destination"), ("5678", "source")]),
    ("收款卡尾号八八八八 付款卡尾号七七七七", [("八八八八", "destination"), ("七七七七", "source")]),
    ("收款用尾数0001，付款用末四位0002", [("0001", "destination"), ("0002", "source")]),
    ("转入卡号后四位幺二三四 转出洞洞洞幺", [("幺二三四", "destination"), ("洞洞洞幺", "source")]),
    ("四三二一那张卡转三千到五六七八", [("四三二一", "source"), ("五六七八", "destination")]),
    ("尾号一二三四的卡转五百", [("一二三四", "source")]),
    ("转一千到尾号四三二一", [("四三二一", "destination")]),
])
def test_the_words_give_each_card_its_role(text, wanted):
    assert roles(text) == wanted


@pytest.mark.parametrize(("text", "cards"), [
    ("转3000块到尾号5678", ["5678"]),  # 3000 is an amount: units follow
    ("转3000", []),                    # …and a bare number after 转 is one too
    ("从尾号4321转2000元", ["4321"]),
    ("我的密码是一三五七九零", []),      # six digits: a PIN, never a card
    ("身份证后六位二零三九一五", []),
    ("转两千五", []),
])
def test_amounts_and_longer_numbers_are_not_cards(text, cards):
    assert [m.spoken for m in card_mentions(text)] == cards


def test_a_keypad_message_names_no_card():
    assert card_mentions('/dtmf{"digits":"4321"}') == []
    assert card_mentions(None) == []
