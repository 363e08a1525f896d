"""The store itself: deterministic seed, idempotent setup, health check, and a dead database."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

import settings
from actions.bank import BankService, BankUnavailable
from actions.bank.database import build_engine
from actions.bank.normalise import optional_text, required_text
from actions.bank.store import bank_now, end_of_bank_day, reference_number


def test_seed_matches_the_issue(bank_service: BankService) -> None:
    wang = bank_service.customer_by_phone("13800000001", today=date(2026, 11, 26))
    li = bank_service.customer_by_phone("13800000002", today=date(2026, 11, 26))
    chen = bank_service.customer_by_phone("13900000003", today=date(2026, 11, 26))
    assert (wang.surname, li.surname, chen.surname) == ("王", "李", "陈")
    assert [(c.last4, c.kind, c.status) for c in bank_service.cards(wang.ref)] == [
        ("1234", "debit", "active"), ("8888", "credit", "active")
    ]
    assert bank_service.balance(wang.ref, "1234") == 5_234_050
    statement = bank_service.credit_card_statement(wang.ref, "8888")
    assert (statement.amount_due_cents, statement.minimum_due_cents, statement.due_date) == (
        328_000, 32_800, date(2026, 12, 5)
    )
    assert [(c.last4, c.kind) for c in bank_service.cards(li.ref)] == [("5678", "debit")]
    assert bank_service.balance(li.ref, "5678") == 800_000
    assert [(c.last4, c.kind, c.status) for c in bank_service.cards(chen.ref)] == [
        ("4321", "debit", "active"), ("9999", "credit", "active"), ("7777", "credit", "inactive")
    ]
    assert bank_service.balance(chen.ref, "4321") == 120_000
    assert bank_service.credit_card_statement(chen.ref, "9999").amount_due_cents == 0
    for card, pin in (("1234", "135790"), ("5678", "246802"), ("4321", "112233")):
        assert bank_service.verify_pin(card, pin).status == "ok"


def test_more_customers_include_another_elderly_one(bank_service: BankService) -> None:
    elderly = [bank_service.customer_by_phone(p) for p in ("13800000001", "13800000004")]
    assert all(c.is_elderly for c in elderly) and elderly[1].title == "女士"


def test_setup_is_idempotent(bank_db_url: str, bank_settings) -> None:
    for _ in range(2):
        service = BankService(bank_db_url, bank_settings)
        assert service.balance("C1001", "1234") == 5_234_050
        service.close()
    with sqlite3.connect(Path(bank_db_url.removeprefix("sqlite:///"))) as connection:
        assert connection.execute("SELECT COUNT(*) FROM customers").fetchone() == (6,)
        assert connection.execute("SELECT COUNT(*) FROM cards WHERE last4 = '1234'").fetchone() == (1,)


def test_two_services_share_one_database(bank_db_url: str, bank_settings) -> None:
    first, second = BankService(bank_db_url, bank_settings), BankService(bank_db_url, bank_settings)
    try:
        first.transfer("C1003", "4321", "9999", 10_000, "t-1")
        assert second.transfer("C1003", "4321", "9999", 10_000, "t-1").status == "ok"
        assert second.balance("C1003", "4321") == 110_000
    finally:
        first.close()
        second.close()


def test_sqlite_parent_folders_are_created(tmp_path: Path, bank_settings) -> None:
    database = tmp_path / "deep" / "er" / "bank.db"
    service = BankService(f"sqlite:///{database}", bank_settings)
    try:
        assert service.ping() and service.find_card("1234") is not None
        assert database.exists()
    finally:
        service.close()


def test_in_memory_sqlite_works(bank_settings) -> None:
    service = BankService("sqlite://", bank_settings)
    try:
        assert service.repay_credit_card("C1001", "8888", "1234", 100, "r-1").status == "ok"
        assert service.balance("C1001", "1234") == 5_234_050 - 100
    finally:
        service.close()


def test_ping(bank_service: BankService) -> None:
    assert bank_service.ping() is True


def test_dead_database_is_reported_not_crashed(bank_settings) -> None:
    dead = BankService("postgresql+psycopg2://bank:secret@127.0.0.1:9/bank", bank_settings)
    try:
        assert dead.ping() is False
        with pytest.raises(BankUnavailable):
            dead.customer_by_phone("13800000001")
        with pytest.raises(BankUnavailable):
            dead.verify_pin("1234", "135790")
    finally:
        dead.close()


def test_unreadable_sqlite_file_is_unavailable(tmp_path: Path, bank_settings) -> None:
    garbage = tmp_path / "bank.db"
    garbage.write_bytes(b"this is not a database" * 100)
    service = BankService(f"sqlite:///{garbage}", bank_settings)
    try:
        assert service.ping() is False
        with pytest.raises(BankUnavailable):
            service.find_card("1234")
    finally:
        service.close()


def test_a_sqlite_folder_that_cannot_be_made_is_unavailable_not_a_crash(tmp_path: Path, bank_settings) -> None:
    # the action server builds its service at start-up: a raise here would stop the whole server
    (tmp_path / "a-file").write_text("")
    service = BankService(f"sqlite:///{tmp_path / 'a-file' / 'bank.db'}", bank_settings)
    try:
        assert service.prepare() is False
        assert service.ping() is False
        with pytest.raises(BankUnavailable):
            service.customer_by_phone("13800000001")
    finally:
        service.close()


def test_postgres_urls_get_a_plain_engine() -> None:
    engine = build_engine("postgresql+psycopg2://bank:secret@db.example:5432/bank")
    assert engine.dialect.name == "postgresql" and engine.url.database == "bank"
    engine.dispose()


def test_from_settings_is_one_service_per_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from actions.bank import service as service_module

    monkeypatch.setenv("BANK_DB_URL", f"sqlite:///{tmp_path / 'settings.db'}")
    monkeypatch.setenv("BANK_PIN_HASH_ITERATIONS", "1000")
    settings.get_settings.cache_clear()
    service_module._service_from_settings.cache_clear()
    try:
        service = BankService.from_settings()
        assert service is BankService.from_settings()
        assert service.find_card("1234").customer_ref == "C1001"
        assert (tmp_path / "settings.db").exists()
        service.close()
    finally:
        settings.get_settings.cache_clear()
        service_module._service_from_settings.cache_clear()


def test_reset_sandbox_restores_the_seed(bank_service: BankService) -> None:
    bank_service.report_card_loss("C1001", "1234", "loss-1")
    bank_service.repay_credit_card("C1001", "8888", "1234", 32_800, "r-1")
    for _ in range(3):
        bank_service.verify_pin("5678", "000000")
    bank_service.reset_sandbox()
    assert bank_service.find_card("1234").status == "active"
    assert bank_service.balance("C1001", "1234") == 5_234_050
    assert bank_service.verify_pin("5678", "246802").status == "ok"
    assert bank_service.report_card_loss("C1001", "1234", "loss-1").status == "reported"  # old ids are gone too


def test_command_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from actions.bank import service as service_module
    from actions.bank.__main__ import main

    monkeypatch.setenv("BANK_DB_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("BANK_PIN_HASH_ITERATIONS", "1000")
    settings.get_settings.cache_clear()
    service_module._service_from_settings.cache_clear()
    try:
        BankService.from_settings().report_card_loss("C1001", "1234", "loss-1")
        assert main(["status"]) == 0
        before = capsys.readouterr().out
        assert "C1001 王先生 13800000001 age" in before and "1234 debit lost 52340元5角" in before
        assert main(["reset"]) == 0
        assert "1234 debit active 52340元5角" in capsys.readouterr().out
        BankService.from_settings().close()
    finally:
        settings.get_settings.cache_clear()
        service_module._service_from_settings.cache_clear()


def test_reads_do_not_wait_for_a_writer(bank_service: BankService, bank_db_url: str) -> None:
    """Another process holding SQLite's write lock must not stall balance enquiries."""
    assert bank_service.find_card("1234")  # the first call creates and seeds the store
    writer = sqlite3.connect(bank_db_url.removeprefix("sqlite:///"), isolation_level=None, timeout=1)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE branches SET hours = hours")
        assert bank_service.balance("C1001", "1234") == 5_234_050
        assert bank_service.branches("朝阳")
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_bank_time_is_beijing_time_without_a_zone() -> None:
    assert bank_now(datetime(2026, 11, 26, 16, 30, tzinfo=timezone.utc)) == datetime(2026, 11, 27, 0, 30)
    assert bank_now(datetime(2026, 11, 26, 9, 0)) == datetime(2026, 11, 26, 9, 0)  # naive: already bank time
    assert bank_now().tzinfo is None
    assert end_of_bank_day(datetime(2026, 11, 26, 23, 59)) == datetime(2026, 11, 27, 0, 0)


def test_reference_numbers_tell_what_they_are_for() -> None:
    created = datetime(2026, 11, 26, 9, 0)
    assert reference_number("card_loss", created, 42) == "126112600042"
    assert reference_number("work_order", created, 1_234_567) == "82611261234567"


@pytest.mark.parametrize("value", ["", "   ", None, 42])
def test_required_text_refuses_what_is_not_text(value) -> None:
    with pytest.raises(ValueError):
        required_text(value, "call_id", 128)


def test_text_is_trimmed_and_cut() -> None:
    assert required_text("  call-1  ", "call_id", 4) == "call"
    assert optional_text(None, 4) is None and optional_text(" ab ", 4) == "ab"
