"""actions/card_grammar.py: which cards a sentence names and which is paid from or into.

Sentences written for these tests, not taken from data/ or the held-out split. The attacks are the adversarial
review's: amounts, dates, phone tails, codes, full card numbers, negations and two cards in one role must never
become a card or a role; the form asks instead.
"""

from __future__ import annotations

import pytest

from actions.card_grammar import card_mentions, cards_by_role, transfer_roles


def roles(text: str) -> list[tuple[str, str | None]]:
    return [(m.spoken, m.role) for m in transfer_roles(card_mentions(text))]


@pytest.mark.parametrize(("text", "wanted"), [
    ("从尾号四三二一往尾号九九九九转一千", [("四三二一", "source"), ("九九九九", "destination")]),
    ("给后四位是1234的卡打三百 用我的尾号5678", [("1234", "destination"), ("5678", "source")]),
    ("收款卡尾号八八八八 付款卡尾号七七七七", [("八八八八", "destination"), ("七七七七", "source")]),
    ("收款用尾数0001，付款用末四位0002", [("0001", "destination"), ("0002", "source")]),
    ("收款账户尾号九九九九，付款账户尾号四三二一", [("九九九九", "destination"), ("四三二一", "source")]),
    ("收款人尾号四三二一", [("四三二一", "destination")]),
    ("对方卡号后四位九九九九 转五百", [("九九九九", "destination")]),
    ("转入卡号后四位幺二三四 转出洞洞洞幺", [("幺二三四", "destination"), ("洞洞洞幺", "source")]),
    ("幺二三四转入 四三二一那张卡转出", [("幺二三四", "destination"), ("四三二一", "source")]),
    ("四三二一那张卡转三千到五六七八", [("四三二一", "source"), ("五六七八", "destination")]),
    ("尾号一二三四的卡转五百", [("一二三四", "source")]),
    ("转一千到尾号四三二一", [("四三二一", "destination")]),
    ("从尾号４３２１转到尾号９９９９", [("４３２１", "source"), ("９９９９", "destination")]),  # full-width digits
    ("从尾号肆叁贰壹转到尾号玖玖玖玖", [("肆叁贰壹", "source"), ("玖玖玖玖", "destination")]),
])
def test_the_words_give_each_card_its_role(text, wanted):
    assert roles(text) == wanted


@pytest.mark.parametrize(("text", "cards"), [
    ("转3000块到尾号5678", ["5678"]),           # units after: an amount
    ("转3000", []),                             # a bare number: as likely an amount as a card
    ("转账1000到九九九九", ["九九九九"]),
    ("汇2000到尾号九九九九", ["九九九九"]),
    ("给尾号九九九九打3000", ["九九九九"]),
    ("往九九九九转账3000", ["九九九九"]),
    ("转到九九九九 1000", ["九九九九"]),
    ("转1万2000到尾号九九九九", ["九九九九"]),   # part of 1万2000
    ("从四三二一转出1234.5元到九九九九", ["四三二一", "九九九九"]),  # a decimal amount
    ("从2025年开始每月转", []),                  # a year
    ("查一下从2024年开始的交易记录", []),
    ("我的密码是一三五七九零", []),               # six digits: a PIN
    ("我手机尾号五六七八，转五百到尾号九九九九", ["九九九九"]),  # a phone tail
    ("用手机尾号五六七八的那个号码", []),
    ("转五百到尾号九九九九，验证码1234", ["九九九九"]),
    ("从卡号6222 0212 3456 4321转五百", []),     # a full card number, not a tail
    ("四 三 二 一", []),
])
def test_amounts_dates_phone_tails_and_codes_are_not_cards(text, cards):
    assert [m.spoken for m in card_mentions(text)] == cards


@pytest.mark.parametrize(("text", "wanted"), [
    ("从五六七八转到九九九九，不要从四三二一转", {"source": "5678", "destination": "9999"}),
    ("往九九九九转，别往八八八八转", {"destination": "9999"}),
    ("转到九九九九，不是八八八八", {"destination": "9999"}),
])
def test_a_card_in_a_negation_is_not_named(text, wanted):
    assert cards_by_role({"text": text, "entities": []}) == wanted


@pytest.mark.parametrize("text", [
    "从四三二一转五百到九九九九，到八八八八",
    "从四三二一转到九九九九，从五六七八转",
])
def test_two_cards_in_one_role_leave_it_open_for_the_form_to_ask(text):
    found = cards_by_role({"text": text, "entities": []})
    assert len(found) == 1  # the other role is the one two cards claimed


def entity(value: str, role: str | None = None) -> dict:
    return {"entity": "card_last4", "value": value, **({"role": role} if role else {})}


@pytest.mark.parametrize(("message", "roles_found"), [
    ({"text": "从尾号4321的卡转两百块钱到尾号9999的卡上", "entities": [entity("4321"), entity("9999")]},
     {"source": "4321", "destination": "9999"}),
    ({"text": "x", "entities": [entity("4321", "source"), entity("9999", "destination")]},
     {"source": "4321", "destination": "9999"}),
    ({"text": "往尾号九九九九转一百块 从尾号四三二一出", "entities": []}, {"source": "4321", "destination": "9999"}),
    ({"text": "转一千到尾号四三二一", "entities": [entity("四三二一")]}, {"destination": "4321"}),
    ({"text": "尾号一二三四的卡余额", "entities": [entity("一二三四")]}, {"source": "1234"}),
    ({"text": "四 三 二 一", "entities": [entity("四 三 二 一")]}, {"source": "4321"}),  # the classifier's, then
])
def test_the_words_decide_and_the_classifier_fills_in(message, roles_found):
    assert cards_by_role(message) == roles_found


def test_a_keypad_message_names_no_card():
    assert card_mentions('/dtmf{"digits":"4321"}') == []
    assert card_mentions(None) == []


def test_a_huge_text_is_read_in_linear_time():
    import time

    started = time.process_time()
    found = card_mentions("从1234 " * 8000)
    assert len(found) == 8000  # every run is a card said after 从; what matters is that this returns at all
    assert time.process_time() - started < 30  # generous: the quadratic version took minutes at this size
