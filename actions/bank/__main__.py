"""Command line for the sandbox bank on `settings.bank.db_url`.

    python -m actions.bank status   # does the store answer, and what is in it
    python -m actions.bank reset    # back to the seed data (cards reported lost become active again, ...)
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from actions.bank.errors import BankError
from actions.bank.seed import CUSTOMERS
from actions.bank.service import BankService
from actions.cn_numbers import speak_amount


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actions.bank", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("status", "reset"))
    args = parser.parse_args(argv)
    service = BankService.from_settings()
    try:
        if args.command == "reset":
            service.reset_sandbox()
            print("the sandbox bank is back to its seed data")
        return _print_status(service)
    except BankError as exc:
        print(f"bank store error: {exc}", file=sys.stderr)
        return 1


def _print_status(service: BankService) -> int:
    if not service.ping():
        print("the bank store does not answer", file=sys.stderr)
        return 1
    for spec in CUSTOMERS:
        customer = service.customer_by_phone(spec.phone, today=date.today())
        cards = ", ".join(
            f"{card.last4} {card.kind} {card.status} {speak_amount(service.balance(customer.ref, card.last4))}"
            for card in service.cards(customer.ref)
        )
        print(f"{customer.ref} {customer.surname}{customer.title} {spec.phone} age {customer.age}: {cards}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
