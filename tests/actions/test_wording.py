"""actions/wording.py: list items and dates are worded by domain responses, so a trainer's rewording reaches the
caller without Python; a domain that lacks one still speaks the data."""

from __future__ import annotations

import logging
from datetime import date, datetime

import pytest

from actions.accounts import spoken_transaction
from actions.bank.views import TransactionView
from actions.wording import piece, pieces, spoken_date
from tests.actions.dialogue_harness import project_domain


def test_the_projects_pieces_word_a_transaction_a_list_and_a_date():
    domain = project_domain()
    salary = TransactionView(posted_at=datetime(2026, 3, 5, 9, 30), description="工资", amount_cents=800_000, balance_after_cents=None)
    rent = TransactionView(posted_at=datetime(2026, 3, 6, 12, 0), description="房租", amount_cents=-350_000, balance_after_cents=None)

    assert spoken_transaction(domain, salary) == "3月5日，工资，收入8000元"
    assert spoken_transaction(domain, rent) == "3月6日，房租，支出3500元"
    assert spoken_date(domain, date(2026, 12, 1)) == "12月1日"
    assert pieces(domain, "utter_item_branch", [{"name": "海淀支行", "address": "中关村大街1号", "hours": "9点到17点"},
                                               {"name": "朝阳支行", "address": "建国路2号", "hours": "9点到17点"}]) == \
        "海淀支行，地址中关村大街1号，营业时间9点到17点；朝阳支行，地址建国路2号，营业时间9点到17点"


def test_a_trainers_rewording_is_what_the_caller_hears():
    domain = {"responses": {"utter_item_transaction_in": [{"text": "{month}月{day}号 {description} 进账{amount}"}]}}
    salary = TransactionView(posted_at=datetime(2026, 3, 5), description="工资", amount_cents=800_000, balance_after_cents=None)
    assert spoken_transaction(domain, salary) == "3月5号 工资 进账8000元"


def test_values_are_never_read_as_templates():
    domain = {"responses": {"utter_item_branch": [{"text": "{name}，地址{address}"}]}}
    assert piece(domain, "utter_item_branch", name="{address}支行", address="{0}路") == "{address}支行，地址{0}路"
    # a variable the action did not fill stays as Rasa leaves it, rather than failing the action
    assert piece(domain, "utter_item_branch", name="海淀支行") == "海淀支行，地址{address}"


def test_a_domain_without_the_piece_still_speaks_the_values(caplog):
    with caplog.at_level(logging.ERROR, logger="actions.wording"):
        assert piece({}, "utter_item_date", month=3, day=5) == "3，5"
        assert piece(None, "utter_item_date", month=3, day=5) == "3，5"
    assert "utter_item_date missing" in caplog.text


@pytest.mark.parametrize(("text", "spoken"), [
    ("{name}，地址}", "海淀支行，地址}"), ("{0}{name}", "{0}海淀支行"), ("{name.upper}", "{name.upper}"),
    ("{name[1]}", "{name[1]}"), ("{name:>20}", "{name:>20}"), ("{{name}}", "{海淀支行}"),
])
def test_a_stray_brace_or_format_spec_is_text_not_code(text, spoken):
    # Rasa fills {variable} and nothing else; so does an item, and no template can fail the action
    assert piece({"responses": {"utter_item_branch": [{"text": text}]}}, "utter_item_branch", name="海淀支行") == spoken


def test_a_response_without_text_falls_back():
    assert piece({"responses": {"utter_item_branch": [{"text": None}, {"text": 5}]}}, "utter_item_branch",
                 name="海淀支行") == "海淀支行"
