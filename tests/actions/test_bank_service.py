"""The façade: the bank's domains on one store, and the one-class API that the actions are written against."""

from __future__ import annotations

import inspect

import pytest

from actions.bank import BankService
from actions.bank import service as service_module
from actions.bank.accounts import AccountService
from actions.bank.identity import IdentityService
from actions.bank.information import InformationService
from actions.bank.payments import PaymentService, commit_deadline
from actions.bank.records import RecordService
from actions.bank.store import BankStore

DOMAINS = {
    "identity": IdentityService,
    "accounts": AccountService,
    "payments": PaymentService,
    "information": InformationService,
    "records": RecordService,
}
STORE_METHODS = {"prepare": "prepare", "ping": "ping", "reset_sandbox": "reset", "close": "close"}


def _facade_methods() -> list[str]:
    return [name for name, _ in inspect.getmembers(BankService, inspect.isfunction) if not name.startswith("_")]


def test_every_domain_works_on_the_one_store(bank_service: BankService) -> None:
    assert isinstance(bank_service.store, BankStore)
    for attribute, domain in DOMAINS.items():
        service = getattr(bank_service, attribute)
        assert isinstance(service, domain)
        assert service._store is bank_service.store


def test_a_write_through_one_domain_is_read_by_another(bank_service: BankService) -> None:
    bank_service.payments.report_card_loss("C1001", "1234", "loss-1")
    assert bank_service.identity.find_card("1234").status == "lost"
    assert bank_service.accounts.card("C1001", "1234").status == "lost"


@pytest.mark.parametrize("name", _facade_methods())
def test_each_facade_method_is_a_domain_method_with_the_same_signature(name: str) -> None:
    if name in STORE_METHODS:
        target = getattr(BankStore, STORE_METHODS[name])
    else:
        owners = [domain for domain in DOMAINS.values() if hasattr(domain, name)]
        assert len(owners) == 1, f"{name} must belong to exactly one domain, not {owners}"
        target = getattr(owners[0], name)
    facade, domain = inspect.signature(getattr(BankService, name)), inspect.signature(target)
    assert facade.parameters.keys() == domain.parameters.keys()
    assert [p.default for p in facade.parameters.values()] == [p.default for p in domain.parameters.values()]


def test_the_actions_api_is_all_there() -> None:
    """The methods actions/*.py and tests call on BankService; removing one breaks a caller."""
    assert all(callable(getattr(BankService, name, None)) for name in {
        "from_settings", "prepare", "ping", "reset_sandbox", "close", "customer_by_phone", "find_card", "verify_pin",
        "cards", "balance", "transactions", "credit_card_statement", "repay_credit_card", "transfer",
        "report_card_loss", "activate_card", "branches", "deposit_rates", "loan_rates", "fx_rate",
        "create_work_order", "record_handoff",
    })


def test_commit_deadline_is_still_importable_from_the_service() -> None:
    assert service_module.commit_deadline is commit_deadline
