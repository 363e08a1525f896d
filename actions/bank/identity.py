"""Who is calling: the customer behind a phone number or a card, and the phone-banking PIN check.

PINs exist only as salted PBKDF2 hashes, are compared in constant time and are never logged. Wrong PINs count
per customer and per calling number and bank day, and an unknown card costs the same hashing as a wrong PIN, so
neither timing nor the answer tells an unknown card from a wrong PIN.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import secrets
from datetime import date, datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from actions.bank import lookups
from actions.bank.models import CallerPinAttemptState, Customer, PinAttemptState
from actions.bank.normalise import normalise_phone
from actions.bank.security import hash_pin, pin_matches
from actions.bank.store import BankStore, bank_now, end_of_bank_day
from actions.bank.views import CardView, CustomerView, PinResult, PinStatus

log = logging.getLogger(__name__)

_LOCKED = PinResult(PinStatus.LOCKED, 0, None)


class IdentityService:
    """Identification (phone, card) and verification (PIN) of callers, on the shared store."""

    def __init__(self, store: BankStore) -> None:
        self._store = store
        self._config = store.config

    def customer_by_phone(self, phone: str | None, today: date | None = None) -> CustomerView | None:
        """The customer whose reserved phone is `phone` (any common formatting), or None."""
        number = normalise_phone(phone)
        if number is None:
            return None
        today = today or bank_now().date()
        with self._store.transaction(read_only=True) as session:
            customer = session.scalars(
                select(Customer).where(Customer.reserved_phone == number).order_by(Customer.id)
            ).first()
            return self._customer_view(customer, today) if customer else None

    def find_card(self, last4: str, caller_phone: str | None = None) -> CardView | None:
        """The card ending in `last4`; when several customers have one, the caller's own card wins."""
        with self._store.transaction(read_only=True) as session:
            found = lookups.card_by_last4(session, last4, caller_phone)
            return lookups.card_view(*found) if found else None

    def verify_pin(
        self, card_last4: str, pin: str, caller_phone: str | None = None, now: datetime | None = None
    ) -> PinResult:
        """Check the phone-banking PIN of the holder of `card_last4`.

        Wrong PINs count per customer and bank day; the last allowed wrong PIN locks PIN service until
        midnight, and while locked even the right PIN gives LOCKED. A success resets the count.
        Wrong PINs and unknown cards also count per caller number and bank day (`max_pin_failures_per_caller`),
        so one PIN cannot be sprayed across many cards; an unknown card costs the same hashing as a wrong PIN.
        """
        now = bank_now(now)
        with self._store.transaction() as session:
            caller = self._caller_pin_state(session, caller_phone, now)
            if caller is not None and caller.locked_until is not None and caller.locked_until > now:
                pin_matches(str(pin), self._decoy_hash)  # the same work as any other answer
                return _LOCKED
            found = lookups.card_by_last4(session, card_last4, caller_phone)
            if found is None:
                pin_matches(str(pin), self._decoy_hash)  # timing must not tell an unknown card from a wrong PIN
                unknown = PinResult(PinStatus.UNKNOWN_CARD, self._config.max_pin_attempts, None)
                return self._caller_failed(caller, unknown, now)
            return self._check_customer_pin(session, found[1].ref, pin, caller, now)

    def _check_customer_pin(
        self, session: Session, customer_ref: str, pin: object, caller: CallerPinAttemptState | None, now: datetime
    ) -> PinResult:
        """The PIN check proper, for a card that exists: the customer's lock-out, the hash, the counts."""
        customer = lookups.locked_customer(session, customer_ref)
        state = _pin_state(session, customer.id)
        if state.locked_until is not None and state.locked_until > now:
            return _LOCKED
        if state.failed_on != now.date():
            state.failed_count, state.failed_on, state.locked_until = 0, now.date(), None
        if isinstance(pin, str) and pin_matches(pin, customer.pin_hash):
            state.failed_count, state.locked_until = 0, None
            return PinResult(PinStatus.OK, self._config.max_pin_attempts, customer.ref)
        state.failed_count += 1
        attempts_left = max(self._config.max_pin_attempts - state.failed_count, 0)
        result = self._caller_failed(caller, PinResult(PinStatus.WRONG, attempts_left, None), now)
        if attempts_left == 0:
            state.locked_until = end_of_bank_day(now)
            log.warning("PIN service locked for customer %s until %s", customer.ref, state.locked_until)
            return _LOCKED
        return result

    @functools.cached_property
    def _decoy_hash(self) -> str:
        """The hash of a random secret: checking a PIN against it costs what a real check costs, and never matches."""
        return hash_pin(secrets.token_hex(16), self._config.pin_salt_rounds)

    @staticmethod
    def _caller_pin_state(session: Session, caller_phone: str | None, now: datetime) -> CallerPinAttemptState | None:
        """Today's failure count of the calling number (None for an anonymous caller), keyed by a hash of it."""
        phone = normalise_phone(caller_phone)
        if not phone:
            return None
        key = hashlib.sha256(phone.encode("utf-8")).hexdigest()
        state = _locked_counter(session, CallerPinAttemptState, caller_key=key)
        if state.failed_on != now.date():
            state.failed_count, state.failed_on, state.locked_until = 0, now.date(), None
        return state

    def _caller_failed(self, caller: CallerPinAttemptState | None, result: PinResult, now: datetime) -> PinResult:
        """Count a failure against the calling number; the last one allowed locks it until midnight."""
        if caller is None:
            return result
        caller.failed_count += 1
        left = max(self._config.max_pin_failures_per_caller - caller.failed_count, 0)
        if left == 0:
            caller.locked_until = end_of_bank_day(now)
            log.warning("PIN service locked for a calling number until %s", caller.locked_until)
            return _LOCKED
        return dataclasses.replace(result, attempts_left=min(result.attempts_left, left))

    def _customer_view(self, customer: Customer, today: date) -> CustomerView:
        age = age_on(customer.birth_date, today)
        title = "女士" if customer.gender == "F" else "先生"
        return CustomerView(customer.ref, customer.surname, title, age, age >= self._config.elderly_age)


def age_on(born: date, today: date) -> int:
    """Whole years from `born` to `today`: the birthday counts from its day on."""
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _pin_state(session: Session, customer_id: int) -> PinAttemptState:
    return _locked_counter(session, PinAttemptState, customer_id=customer_id)


Counter = TypeVar("Counter", PinAttemptState, CallerPinAttemptState)
_INSERTS = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}  # INSERT ... ON CONFLICT DO NOTHING


def _locked_counter(session: Session, model: type[Counter], **key: object) -> Counter:
    """The failure-counter row with primary key `key`, made if missing and locked (FOR UPDATE) for this transaction.

    Two action servers counting the first failure of a day at once must not both insert it (the loser would fail
    with a duplicate key and its failure would go uncounted): the row is inserted with ON CONFLICT DO NOTHING,
    which waits for a concurrent insert to commit, and then read under the row lock, so increments take turns.
    """
    insert = _INSERTS[session.get_bind().dialect.name]  # the bank runs on these two (docs/ARCHITECTURE.md)
    session.execute(insert(model).values(failed_count=0, **key).on_conflict_do_nothing())
    (ident,) = key.values()
    return session.get(model, ident, with_for_update=True, populate_existing=True)
