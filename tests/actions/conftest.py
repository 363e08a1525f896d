"""Fixtures for the action-server tests: a real BankService on a fresh temporary SQLite file per test."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from actions.bank import BankService
from settings import BankSettings

TEST_PIN_HASH_ITERATIONS = 1_000  # production uses settings (200k); hashing cost is not what these tests check


@pytest.fixture
def bank_settings() -> BankSettings:
    """Default bank settings (not the environment's), with cheap PIN hashing."""
    return dataclasses.replace(BankSettings(), pin_salt_rounds=TEST_PIN_HASH_ITERATIONS)


@pytest.fixture
def bank_db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'var' / 'bank.db'}"


@pytest.fixture
def bank_service(bank_db_url: str, bank_settings: BankSettings) -> Iterator[BankService]:
    """A seeded sandbox bank on a temporary SQLite file (its folder is created by the service)."""
    service = BankService(bank_db_url, bank_settings)
    yield service
    service.close()


@pytest.fixture
def bank_for_actions(bank_service: BankService, monkeypatch: pytest.MonkeyPatch) -> BankService:
    """The temporary bank, served to the Rasa actions in place of the process-wide one."""
    monkeypatch.setattr(BankService, "from_settings", classmethod(lambda cls: bank_service))
    return bank_service
