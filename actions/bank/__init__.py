"""The sandbox bank service module: customers, cards, money movements and public information on SQL.

No Rasa imports here: the action server (actions/*.py) calls `BankService`, which is all other layers need.
"""

from actions.bank.errors import BankError, BankUnavailable, IdempotencyConflict, NotYourCard, UnknownCustomer
from actions.bank.service import BankService

__all__ = ["BankError", "BankService", "BankUnavailable", "IdempotencyConflict", "NotYourCard", "UnknownCustomer"]
