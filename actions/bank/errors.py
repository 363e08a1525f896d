"""Exceptions of the bank service. Expected business outcomes are status strings in the views, not exceptions."""

from __future__ import annotations


class BankError(Exception):
    """Base class of every error the bank service raises on purpose."""


class BankUnavailable(BankError):
    """The bank database could not be reached or failed; the caller should apologise and offer an agent."""


class UnknownCustomer(BankError):
    """A customer reference that the bank does not know."""


class NotYourCard(BankError):
    """The card does not belong to the (verified) customer."""


class IdempotencyConflict(BankError):
    """A request id was reused for a different request; the original request is not repeated."""


class DeadlineExceeded(BankUnavailable):
    """A money movement finished after the caller's reply deadline and was rolled back: nothing changed.

    The dialogue gives up on a slow action and apologises; a movement committed after that would be money moved
    behind an apology. So it is not committed, and the apology is the truth.
    """
