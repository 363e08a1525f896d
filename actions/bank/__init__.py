"""The sandbox bank service module: customers, cards, money movements and public information on SQL.

No Rasa imports here: the action server (actions/*.py) calls `BankService`, a façade over the bank's domains
(`bank.identity`, `bank.accounts`, `bank.payments`, `bank.information`, `bank.records`) on one store.
"""

from actions.bank.errors import BankError, BankUnavailable, IdempotencyConflict, NotYourCard, UnknownCustomer
from actions.bank.service import BankService

__all__ = ["BankError", "BankService", "BankUnavailable", "IdempotencyConflict", "NotYourCard", "UnknownCustomer"]
