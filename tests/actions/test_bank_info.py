"""Public information (branches, rates, FX) and service records (work orders, handoffs)."""

from __future__ import annotations

import re
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from actions.bank import BankService, UnknownCustomer
from actions.bank.views import FxRateView, RateKind, RateView, WorkOrderKind


@pytest.mark.parametrize(
    "query, first_branch",
    [
        ("朝阳", "光银银行北京建国路支行"),
        ("朝阳区", "光银银行北京建国路支行"),
        ("建国路", "光银银行北京建国路支行"),
        ("望京", "光银银行北京望京支行"),
        ("海淀区中关村大街", "光银银行北京中关村支行"),
        ("我想找一下中关村附近的网点", "光银银行北京中关村支行"),
        ("五道口", "光银银行北京五道口支行"),
        ("东城", "光银银行北京王府井支行"),
        ("王府井大街", "光银银行北京王府井支行"),
        ("西城区金融街", "光银银行北京金融街支行"),
        ("丰台", "光银银行北京丰台科技园支行"),
        ("方庄", "光银银行北京方庄支行"),
        ("通州区的网点在哪里", "光银银行北京通州新华大街支行"),
        ("北京市朝阳区建国路", "光银银行北京建国路支行"),
    ],
)
def test_branch_search(bank_service: BankService, query: str, first_branch: str) -> None:
    assert bank_service.branches(query)[0].name == first_branch


def test_branches_of_a_district(bank_service: BankService) -> None:
    found = bank_service.branches("朝阳", limit=10)
    assert len(found) == 3 and {b.district for b in found} == {"朝阳区"}
    assert all(b.address and b.hours and re.fullmatch(r"010-[0-9]{8}", b.phone) for b in found)
    assert len(bank_service.branches("朝阳")) == 3
    assert len(bank_service.branches("朝阳", limit=1)) == 1


def test_a_road_ranks_its_branch_before_the_rest_of_the_district(bank_service: BankService) -> None:
    names = [b.name for b in bank_service.branches("朝阳区望京街", limit=3)]
    assert names[0] == "光银银行北京望京支行" and len(names) == 3


@pytest.mark.parametrize(
    "query",
    ["", "   ", "火星", "上海浦东", "%", "_", "' OR 1=1 --", "'; DROP TABLE branches; --", "😀😀", None,
     pytest.param("网点" * 5000, id="huge")],
)
def test_branch_search_without_a_match(bank_service: BankService, query) -> None:
    assert bank_service.branches(query) == []
    assert bank_service.branches("朝阳")  # the table is still there


def test_deposit_rates(bank_service: BankService) -> None:
    rates = bank_service.deposit_rates()
    assert rates[0] == RateView("活期存款", "活期", Decimal("0.10"))
    assert RateView("整存整取定期存款", "一年", Decimal("1.10")) in rates
    assert all(isinstance(r.rate_percent, Decimal) and Decimal(0) < r.rate_percent < Decimal(10) for r in rates)


def test_loan_rates(bank_service: BankService) -> None:
    rates = bank_service.loan_rates()
    assert RateView("贷款市场报价利率(LPR)", "一年期", Decimal("3.00")) in rates
    assert len(rates) >= 4 and not set(rates) & set(bank_service.deposit_rates())


@pytest.mark.parametrize("spoken", ["USD", "usd", " USD ", "美元", "美金"])
def test_fx_rate(bank_service: BankService, spoken: str) -> None:
    rate = bank_service.fx_rate(spoken)
    assert rate == FxRateView("USD", "美元", Decimal("711.20"), Decimal("714.18"), rate.as_of)
    assert str(rate.buy) == "711.20"
    assert rate.as_of.isoformat() == "2026-11-20"


def test_fx_rates_of_the_main_currencies(bank_service: BankService) -> None:
    for code in ("USD", "EUR", "JPY", "HKD", "GBP"):
        rate = bank_service.fx_rate(code)
        assert rate.currency == code and rate.buy < rate.sell
    assert bank_service.fx_rate("JPY").sell == Decimal("4.6350")
    assert bank_service.fx_rate("港币").currency == "HKD"


@pytest.mark.parametrize(
    "currency", ["XYZ", "", "   ", "比特币", "' OR 1=1 --", None, 840, pytest.param("USD" * 1000, id="huge")]
)
def test_unknown_currency(bank_service: BankService, currency) -> None:
    assert bank_service.fx_rate(currency) is None


def test_work_order(bank_service: BankService, bank_db_url: str) -> None:
    ticket = bank_service.create_work_order("complaint", "  柜台排队太久 服务态度不好  ", "call-7", "C1001", "call-7:complaint")
    assert re.fullmatch(r"8[0-9]{11}", ticket)
    assert bank_service.create_work_order("complaint", "柜台排队太久 服务态度不好", "call-7", "C1001", "call-7:complaint") == ticket
    other = bank_service.create_work_order("callback", "", "call-8")
    assert other != ticket and re.fullmatch(r"[0-9]{12}", other)
    with sqlite3.connect(Path(bank_db_url.removeprefix("sqlite:///"))) as connection:
        rows = connection.execute(
            "SELECT kind, description, call_id, customer_id FROM work_orders ORDER BY id"
        ).fetchall()
    assert rows == [("complaint", "柜台排队太久 服务态度不好", "call-7", 1), ("callback", "", "call-8", None)]


def test_work_orders_without_request_id_are_all_kept(bank_service: BankService) -> None:
    first, second = (bank_service.create_work_order("complaint", "a", "c") for _ in range(2))
    assert first != second


def test_huge_work_order_description_is_truncated(bank_service: BankService) -> None:
    assert re.fullmatch(r"[0-9]{12}", bank_service.create_work_order("complaint", "投诉" * 10_000, "call-1"))


@pytest.mark.parametrize(
    "kind, call_id", [("praise", "call-1"), ("", "call-1"), ("complaint", ""), ("complaint", "  "), ("complaint", None)]
)
def test_invalid_work_orders(bank_service: BankService, kind, call_id) -> None:
    with pytest.raises(ValueError):
        bank_service.create_work_order(kind, "x", call_id)


def test_work_order_for_an_unknown_customer(bank_service: BankService) -> None:
    with pytest.raises(UnknownCustomer):
        bank_service.create_work_order("complaint", "x", "call-1", customer_ref="C0000")


def test_record_handoff(bank_service: BankService, bank_db_url: str) -> None:
    bank_service.record_handoff("call-1", "elderly_priority", "green_channel", None, False, None)
    bank_service.record_handoff("call-2", "card_services", "pin_locked", "check_balance", True, "C1001")
    with sqlite3.connect(Path(bank_db_url.removeprefix("sqlite:///"))) as connection:
        rows = connection.execute(
            "SELECT call_id, queue, reason, intent, verified, customer_ref FROM handoff_records ORDER BY id"
        ).fetchall()
    assert rows == [
        ("call-1", "elderly_priority", "green_channel", None, 0, None),
        ("call-2", "card_services", "pin_locked", "check_balance", 1, "C1001"),
    ]


def test_handoff_needs_a_call_and_queue(bank_service: BankService) -> None:
    with pytest.raises(ValueError):
        bank_service.record_handoff("", "general", "human_agent", None, False, None)


def test_rates_by_kind(bank_service: BankService) -> None:
    assert bank_service.information.rates(RateKind.DEPOSIT) == bank_service.deposit_rates()
    assert bank_service.information.rates("loan") == bank_service.loan_rates()
    with pytest.raises(ValueError):
        bank_service.information.rates("mortgage")


def test_work_order_kinds_are_the_enum(bank_service: BankService, bank_db_url: str) -> None:
    bank_service.records.create_work_order(WorkOrderKind.CALLBACK, "回电", "call-9")
    with sqlite3.connect(Path(bank_db_url.removeprefix("sqlite:///"))) as connection:
        assert connection.execute("SELECT kind FROM work_orders").fetchall() == [("callback",)]
