"""The bank service on a real PostgreSQL server (the `stores` fixture: the cluster's own, scripts/cluster/stores.py),
where row locks really matter: `make cluster` runs two action servers on one bank database.

The cross-process tests fork real processes, each with its own BankService (engine, pool, connections), as two
action servers are: a lock that only held inside one process would not hold here.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from itertools import count

import psycopg2
import pytest

from actions.bank import BankService
from settings import BankSettings

pytestmark = pytest.mark.integration
_database_numbers = count(1)
PROCESS_TIMEOUT_S = 60
CHEN, CHEN_PHONE = "C1003", "13900000003"  # debit 4321 holds 1200.00 yuan; credit 9999 owes nothing


@pytest.fixture
def pg_url(stores) -> str:
    """A fresh, empty database on the session's PostgreSQL (psycopg2, the driver of .venv-rasa)."""
    return stores.database(f"bank_{next(_database_numbers)}")


@pytest.fixture
def pg_bank(pg_url: str, bank_settings: BankSettings) -> Iterator[BankService]:
    """A seeded bank in a fresh database."""
    service = BankService(pg_url, bank_settings)
    yield service
    service.close()


def test_seed_and_reads(pg_bank: BankService) -> None:
    assert pg_bank.ping()
    assert pg_bank.customer_by_phone("13800000001", today=date(2026, 11, 26)).is_elderly
    assert pg_bank.balance("C1001", "1234") == 5_234_050
    assert pg_bank.fx_rate("JPY").buy == Decimal("4.6012")
    assert pg_bank.deposit_rates()[0].rate_percent == Decimal("0.10")
    assert pg_bank.branches("建国路")[0].district == "朝阳区"
    assert len(pg_bank.transactions("C1001", "1234", limit=20)) == 10


def test_every_other_operation(pg_bank: BankService) -> None:
    assert pg_bank.find_card("6666", caller_phone="13600000006").customer_ref == "C1006"
    assert [card.last4 for card in pg_bank.cards(CHEN)] == ["4321", "9999", "7777"]
    assert pg_bank.activate_card(CHEN, "7777").status == "activated"
    assert pg_bank.activate_card(CHEN, "7777").status == "already_active"
    plan = pg_bank.payments.repayment_plan("C1001", None)
    assert plan.statement.card_last4 == "8888" and plan.source.last4 == "1234"
    assert pg_bank.credit_card_statement("C1001", "8888").amount_due_cents == 328_000
    assert pg_bank.payments.transfer_limit_left("C1001") == pg_bank.store.config.daily_transfer_limit_cents
    assert pg_bank.transactions("C1001", "1234", start=date(2026, 11, 1), end=date(2026, 11, 10))
    pg_bank.record_handoff("call-1", "general", "human_agent", None, False, None)
    assert pg_bank.create_work_order("callback", "请回电", "call-1", None, "call-1:callback").isdigit()
    assert pg_bank.report_card_loss("C1001", "1234", "loss-1").status == "reported"
    pg_bank.reset_sandbox()
    assert pg_bank.cards("C1001")[0].status == "active"
    assert pg_bank.activate_card(CHEN, "7777").status == "activated"  # inactive again after the reset


def test_pin_lock_out(pg_bank: BankService) -> None:
    statuses = [pg_bank.verify_pin("1234", "000000").status for _ in range(3)]
    assert statuses == ["wrong", "wrong", "locked"]
    assert pg_bank.verify_pin("1234", "135790").status == "locked"


def test_concurrent_retries_move_money_once(pg_bank: BankService) -> None:
    results = _run_concurrently(8, lambda: pg_bank.repay_credit_card("C1001", "8888", "1234", 10_000, "same-id"))
    assert len({replace(r, repeated=False) for r in results}) == 1 and results[0].status == "ok"
    assert sum(not r.repeated for r in results) == 1  # moved once
    assert pg_bank.balance("C1001", "1234") == 5_234_050 - 10_000


def test_concurrent_transfers_respect_the_daily_limit(pg_bank: BankService) -> None:
    request_ids = iter(range(100))
    lock = threading.Lock()

    def transfer():
        with lock:
            request_id = f"t-{next(request_ids)}"
        return pg_bank.transfer("C1001", "1234", "8888", 2_000_000, request_id)

    results = _run_concurrently(6, transfer)
    assert sorted(r.status for r in results) == ["daily_limit"] * 4 + ["ok"] * 2
    assert pg_bank.balance("C1001", "1234") == 5_234_050 - 4_000_000


def test_card_loss_and_work_order(pg_bank: BankService) -> None:
    reported = pg_bank.report_card_loss("C1001", "1234", "loss-1")
    assert reported.status == "reported"
    assert pg_bank.report_card_loss("C1001", "1234", "loss-1") == replace(reported, repeated=True)
    assert pg_bank.report_card_loss("C1001", "1234", "loss-2").status == "already_lost"
    ticket = pg_bank.create_work_order("complaint", "排队太久", "call-1", "C1001", "call-1:complaint")
    assert ticket == pg_bank.create_work_order("complaint", "排队太久", "call-1", "C1001", "call-1:complaint")


# ---------------------------------------------------------------- several action servers on one database


def test_action_servers_starting_together_make_and_seed_the_bank_once(pg_url: str, bank_settings) -> None:
    """Four processes start on an empty database at once: all are ready, and the bank holds one seed.
    (Before the schema lock, the later ones failed on the tables or rows the first had not committed yet.)"""
    outcomes = _in_processes(4, pg_url, bank_settings, lambda bank, _: bank.prepare(), prepared=False)
    assert outcomes == [True] * 4
    assert _count(pg_url, "customers") == 6 and _count(pg_url, "branches") == 14


def test_transfers_from_two_processes_keep_the_daily_limit(pg_url: str, bank_settings) -> None:
    """Six transfers of 20,000 yuan from six processes against a 50,000 daily limit: two go through."""
    BankService(pg_url, bank_settings).prepare()
    outcomes = _in_processes(6, pg_url, bank_settings,
                             lambda bank, i: bank.transfer("C1001", "1234", "8888", 2_000_000, f"limit-{i}").status)
    assert sorted(outcomes) == ["daily_limit"] * 4 + ["ok"] * 2
    bank = BankService(pg_url, bank_settings)
    assert bank.balance("C1001", "1234") == 5_234_050 - 4_000_000
    assert bank.payments.transfer_limit_left("C1001") == 1_000_000


def test_transfers_from_two_processes_never_overdraw(pg_url: str, bank_settings) -> None:
    """陈晓明 holds 1,200 yuan; four processes each move 1,000 of it: one goes through, the balance never goes
    below zero and one pair of statement lines is booked."""
    BankService(pg_url, bank_settings).prepare()
    outcomes = _in_processes(4, pg_url, bank_settings,
                             lambda bank, i: bank.transfer(CHEN, "4321", "9999", 100_000, f"funds-{i}").status)
    assert sorted(outcomes) == ["insufficient_funds"] * 3 + ["ok"]
    bank = BankService(pg_url, bank_settings)
    assert bank.balance(CHEN, "4321") == 20_000
    assert len(bank.transactions(CHEN, "4321", limit=50)) == 11


def test_first_wrong_pins_of_a_calling_number_at_once_are_all_counted(pg_url: str, bank_settings) -> None:
    """One calling number tries four customers' cards at the same moment (a PIN spray through two action
    servers). Every attempt is answered and counted, so the fifth locks the number.
    (Before, the first failure's counter row was inserted by each at once: all but one failed on a duplicate key,
    uncounted.)"""
    BankService(pg_url, bank_settings).prepare()
    cards = ("1234", "5678", "4321", "2468")
    outcomes = _in_processes(4, pg_url, bank_settings,
                             lambda bank, i: bank.verify_pin(cards[i], "000000", caller_phone="13512345678").status)
    assert outcomes == ["wrong"] * 4
    fifth = BankService(pg_url, bank_settings).verify_pin("6666", "000000", caller_phone="13512345678")
    assert fifth.status == "locked"  # max_pin_failures_per_caller = 5


def test_wrong_pins_for_one_card_from_two_processes_lock_it(pg_url: str, bank_settings) -> None:
    """Three wrong PINs for one card at once, from three numbers: each is counted, so the card locks."""
    BankService(pg_url, bank_settings).prepare()
    outcomes = _in_processes(3, pg_url, bank_settings,
                             lambda bank, i: bank.verify_pin("5678", "000000", caller_phone=f"1350000000{i}").status)
    assert sorted(outcomes) == ["locked", "wrong", "wrong"]
    assert BankService(pg_url, bank_settings).verify_pin("5678", "246802").status == "locked"


def _in_processes(n: int, db_url: str, settings: BankSettings, work: Callable[[BankService, int], object],
                  prepared: bool = True) -> list:
    """`work(bank, i)` in n forked processes at once, each on its own BankService; their results, in order.
    Each process connects (and with `prepared`, checks the bank is made) before the start line, so the work
    itself starts together."""
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(n), context.Queue()

    def run(i: int) -> None:
        bank = BankService(db_url, settings)
        try:
            bank.prepare() if prepared else bank.store.ping()
            barrier.wait(timeout=PROCESS_TIMEOUT_S)
            results.put((i, work(bank, i)))
        except BaseException as exc:  # reported to the test, never a silent exit
            results.put((i, f"{type(exc).__name__}: {exc}"))
        finally:
            bank.close()

    processes = [context.Process(target=run, args=(i,)) for i in range(n)]
    for process in processes:
        process.start()
    try:
        collected = dict(results.get(timeout=PROCESS_TIMEOUT_S) for _ in processes)
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    return [collected[i] for i in range(n)]


def _count(db_url: str, table: str) -> int:
    with psycopg2.connect(db_url) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        return cursor.fetchone()[0]


def _run_concurrently(n: int, work) -> list:
    results: list = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run() -> None:
        barrier.wait()
        try:
            results.append(work())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results
