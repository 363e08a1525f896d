"""Identity: customers by reserved phone, cards by last 4 digits, and the phone-banking PIN with its lock-out."""

from __future__ import annotations

import logging
import sqlite3
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from actions.bank import BankService
from actions.bank import identity as identity_module
from actions.bank.identity import age_on
from actions.bank.views import CardView, CustomerView, PinResult, PinStatus

MORNING = datetime(2026, 11, 26, 9, 0)


@pytest.mark.parametrize(
    "phone, expected",
    [
        ("13800000001", CustomerView("C1001", "王", "先生", 74, True)),
        ("+86 138-0000-0001", CustomerView("C1001", "王", "先生", 74, True)),
        ("008613800000001", CustomerView("C1001", "王", "先生", 74, True)),
        ("013800000001", CustomerView("C1001", "王", "先生", 74, True)),
        ("13800000002", CustomerView("C1002", "李", "女士", 63, False)),
        ("13900000003", CustomerView("C1003", "陈", "先生", 36, False)),
        ("13800000004", CustomerView("C1004", "张", "女士", 78, True)),
    ],
)
def test_customer_by_reserved_phone(bank_service: BankService, phone: str, expected: CustomerView) -> None:
    assert bank_service.customer_by_phone(phone, today=date(2026, 11, 26)) == expected


@pytest.mark.parametrize(
    "phone", ["13812345678", "", "   ", "anonymous", "' OR 1=1 --", None, pytest.param("1" * 10_000, id="huge")]
)
def test_unknown_or_garbage_phone_is_nobody(bank_service: BankService, phone: str | None) -> None:
    assert bank_service.customer_by_phone(phone) is None


def test_elderly_threshold_comes_from_settings(bank_db_url, bank_settings) -> None:
    import dataclasses

    service = BankService(bank_db_url, dataclasses.replace(bank_settings, elderly_age=60))
    try:
        assert service.customer_by_phone("13800000002", today=date(2026, 11, 26)).is_elderly
    finally:
        service.close()


def test_age_counts_birthdays(bank_service: BankService) -> None:
    # 陈晓明 was born 1990-11-02
    assert bank_service.customer_by_phone("13900000003", today=date(2026, 11, 1)).age == 35
    assert bank_service.customer_by_phone("13900000003", today=date(2026, 11, 2)).age == 36


def test_find_card(bank_service: BankService) -> None:
    assert bank_service.find_card("1234") == CardView("1234", "debit", "active", "C1001")
    assert bank_service.find_card("8888") == CardView("8888", "credit", "active", "C1001")
    assert bank_service.find_card("7777") == CardView("7777", "credit", "inactive", "C1003")
    assert bank_service.find_card("1111") == CardView("1111", "debit", "lost", "C1006")


def test_shared_last4_prefers_the_callers_card(bank_service: BankService) -> None:
    assert bank_service.find_card("6666", caller_phone="13700000005").customer_ref == "C1005"
    assert bank_service.find_card("6666", caller_phone="+8613600000006").customer_ref == "C1006"
    assert bank_service.find_card("6666", caller_phone="13800000001").customer_ref in ("C1005", "C1006")


@pytest.mark.parametrize("last4", ["0000", "123", "12345", "abcd", "", "1234'; DROP TABLE cards; --", None, 1234])
def test_unknown_or_malformed_card_is_none(bank_service: BankService, last4) -> None:
    assert bank_service.find_card(last4) is None


def test_right_pin_verifies(bank_service: BankService) -> None:
    assert bank_service.verify_pin("1234", "135790", now=MORNING) == PinResult("ok", 3, "C1001")
    assert bank_service.verify_pin("5678", "246802", now=MORNING) == PinResult("ok", 3, "C1002")
    assert bank_service.verify_pin("4321", "112233", now=MORNING) == PinResult("ok", 3, "C1003")


def test_pin_works_with_any_card_of_the_customer_even_a_lost_one(bank_service: BankService) -> None:
    assert bank_service.verify_pin("8888", "135790", now=MORNING).status == "ok"
    assert bank_service.verify_pin("1111", "468024", now=MORNING).status == "ok"


def test_shared_last4_verifies_the_callers_customer(bank_service: BankService) -> None:
    result = bank_service.verify_pin("6666", "468024", caller_phone="13600000006", now=MORNING)
    assert result == PinResult("ok", 3, "C1006")


def test_unknown_card(bank_service: BankService) -> None:
    assert bank_service.verify_pin("0000", "135790", now=MORNING) == PinResult("unknown_card", 3, None)


def test_three_wrong_pins_lock_until_the_end_of_the_day(bank_service: BankService) -> None:
    assert bank_service.verify_pin("1234", "000000", now=MORNING) == PinResult("wrong", 2, None)
    assert bank_service.verify_pin("1234", "111111", now=MORNING) == PinResult("wrong", 1, None)
    assert bank_service.verify_pin("1234", "222222", now=MORNING) == PinResult("locked", 0, None)
    # while locked even the right PIN discloses nothing, through any of the customer's cards
    assert bank_service.verify_pin("1234", "135790", now=MORNING + timedelta(hours=14)) == PinResult("locked", 0, None)
    assert bank_service.verify_pin("8888", "135790", now=MORNING) == PinResult("locked", 0, None)
    # other customers are not affected
    assert bank_service.verify_pin("5678", "246802", now=MORNING).status == "ok"
    # the next bank day the service is open again
    next_day = datetime(2026, 11, 27, 0, 0, 1)
    assert bank_service.verify_pin("1234", "135790", now=next_day) == PinResult("ok", 3, "C1001")


def test_lock_follows_bank_time_for_aware_datetimes(bank_service: BankService) -> None:
    late_evening_utc = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)  # 23:00 in Beijing
    for _ in range(3):
        bank_service.verify_pin("1234", "000000", now=late_evening_utc)
    assert bank_service.verify_pin("1234", "135790", now=late_evening_utc + timedelta(minutes=59)).status == "locked"
    just_after_midnight = late_evening_utc + timedelta(hours=1, seconds=1)
    assert bank_service.verify_pin("1234", "135790", now=just_after_midnight).status == "ok"


def test_success_resets_the_count(bank_service: BankService) -> None:
    bank_service.verify_pin("1234", "000000", now=MORNING)
    bank_service.verify_pin("1234", "000000", now=MORNING)
    assert bank_service.verify_pin("1234", "135790", now=MORNING).status == "ok"
    assert bank_service.verify_pin("1234", "000000", now=MORNING) == PinResult("wrong", 2, None)


def test_wrong_pins_of_yesterday_do_not_count_today(bank_service: BankService) -> None:
    bank_service.verify_pin("1234", "000000", now=MORNING)
    bank_service.verify_pin("1234", "000000", now=MORNING)
    assert bank_service.verify_pin("1234", "000000", now=MORNING + timedelta(days=1)) == PinResult("wrong", 2, None)


def test_max_attempts_come_from_settings(bank_db_url, bank_settings) -> None:
    import dataclasses

    service = BankService(bank_db_url, dataclasses.replace(bank_settings, max_pin_attempts=5))
    try:
        assert service.verify_pin("1234", "000000", now=MORNING) == PinResult("wrong", 4, None)
    finally:
        service.close()


@pytest.mark.parametrize(
    "pin",
    ["", "13579", "1357900", "abcdef", "135790 ", "' OR '1'='1", None, 135790, pytest.param("9" * 10_000, id="huge")],
)
def test_malformed_pin_is_a_wrong_attempt(bank_service: BankService, pin) -> None:
    assert bank_service.verify_pin("1234", pin, now=MORNING) == PinResult("wrong", 2, None)


def test_pin_is_stored_only_as_a_salted_hash(bank_service: BankService, bank_db_url: str) -> None:
    bank_service.verify_pin("1234", "135790", now=MORNING)
    bank_service.verify_pin("1234", "246802", now=MORNING)
    database = Path(bank_db_url.removeprefix("sqlite:///"))
    raw = database.read_bytes()
    for pin in ("135790", "246802", "112233"):
        assert pin.encode() not in raw
    with sqlite3.connect(database) as connection:
        hashes = [row[0] for row in connection.execute("SELECT pin_hash FROM customers")]
    assert all(h.startswith("pbkdf2_sha256$1000$") for h in hashes)
    salts = {h.split("$")[2] for h in hashes}
    assert len(salts) == len(hashes)  # a salt per customer


def test_pin_is_never_logged(bank_service: BankService, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)  # even SQL echo must not show it
    try:
        for pin in ("864213", "864213", "864213"):
            bank_service.verify_pin("1234", pin, now=MORNING)
        bank_service.verify_pin("1234", "135790", now=MORNING)
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    assert "locked" in caplog.text
    assert "864213" not in caplog.text and "135790" not in caplog.text


def test_an_unknown_card_costs_the_same_hashing_as_a_wrong_pin(bank_service: BankService, monkeypatch) -> None:
    checks: list[str] = []
    real = identity_module.pin_matches
    monkeypatch.setattr(identity_module, "pin_matches", lambda pin, stored: checks.append(stored) or real(pin, stored))
    bank_service.verify_pin("1234", "000000", caller_phone="17700000000", now=MORNING)
    bank_service.verify_pin("0009", "000000", caller_phone="17700000000", now=MORNING)
    assert len(checks) == 2  # one PBKDF2 each, whether or not the card exists
    for _ in range(3):  # the calling number gets locked out (5 failures): still one PBKDF2 per attempt
        bank_service.verify_pin("0009", "000000", caller_phone="17700000000", now=MORNING)
    assert bank_service.verify_pin("1234", "135790", caller_phone="17700000000", now=MORNING).status is PinStatus.LOCKED
    assert len(checks) == 6


@pytest.mark.parametrize(
    "born, today, age",
    [(date(1952, 3, 8), date(2026, 3, 7), 73), (date(1952, 3, 8), date(2026, 3, 8), 74),
     (date(1948, 2, 29), date(2026, 2, 28), 77), (date(1948, 2, 29), date(2026, 3, 1), 78)],
)
def test_age_on(born: date, today: date, age: int) -> None:
    assert age_on(born, today) == age
