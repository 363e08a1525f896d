"""The bank service on a real PostgreSQL server (started here on a free port), where row locks really matter.

Skipped when PostgreSQL's server binaries are not installed (Debian package `postgresql`).
"""

from __future__ import annotations

from dataclasses import replace

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from itertools import count

import psycopg2
import pytest

from actions.bank import BankService

pytestmark = pytest.mark.integration
STARTUP_TIMEOUT_S = 30
_database_numbers = count(1)


def _server_binaries() -> str | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    found = shutil.which("initdb") or (candidates[0] if candidates else None)
    return os.path.dirname(found) if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user() -> list[str]:
    """PostgreSQL refuses to run as root: run it as the `postgres` system user then."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no postgres user to run the server as")
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture(scope="module")
def postgres_admin_dsn() -> Iterator[str]:
    """A throw-away PostgreSQL cluster; the server's process group is killed and its files removed afterwards."""
    bin_dir = _server_binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    prefix = _as_server_user()
    workdir = tempfile.mkdtemp(prefix="bank-pg-")
    if prefix:
        shutil.chown(workdir, user="postgres")
    data_dir = os.path.join(workdir, "data")
    subprocess.run(
        [*prefix, f"{bin_dir}/initdb", "-D", data_dir, "-U", "bank", "--auth=trust", "-E", "UTF8", "--no-locale"],
        check=True, capture_output=True, timeout=120,
    )
    port = _free_port()
    server = subprocess.Popen(
        [*prefix, f"{bin_dir}/postgres", "-D", data_dir, "-p", str(port), "-h", "127.0.0.1", "-k", workdir,
         "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    dsn = f"host=127.0.0.1 port={port} user=bank dbname=postgres"
    try:
        _wait_until_accepting(dsn, server)
        yield dsn
    finally:
        _stop(server)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_until_accepting(dsn: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            psycopg2.connect(dsn, connect_timeout=1).close()
            return
        except psycopg2.OperationalError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the test PostgreSQL server did not start") from None
            time.sleep(0.2)


def _stop(server: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGINT, 10), (signal.SIGKILL, 5)):  # SIGINT = PostgreSQL's fast shutdown
        if server.poll() is not None:
            return
        try:
            os.killpg(server.pid, sig)
            server.wait(timeout=wait_s)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


@pytest.fixture
def pg_bank(postgres_admin_dsn: str, bank_settings) -> Iterator[BankService]:
    """A seeded bank in a fresh database of the test cluster."""
    name = f"bank_{next(_database_numbers)}"
    admin = psycopg2.connect(postgres_admin_dsn)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    admin.close()
    params = dict(part.split("=") for part in postgres_admin_dsn.split())
    service = BankService(
        f"postgresql+psycopg2://bank@{params['host']}:{params['port']}/{name}", bank_settings
    )
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
