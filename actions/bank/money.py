"""Money helpers: amounts are integer cents inside the bank and Decimal yuan at the edges, never float."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

CENTS_PER_YUAN = 100
# 1,000,000 yuan: the most one phone-banking request may move; a larger amount heard on the phone is a mishearing.
MAX_AMOUNT_CENTS = 100_000_000


def cents_from_yuan(yuan: str | int | Decimal) -> int:
    """Exact conversion of a yuan amount ("52340.50", Decimal, int) to cents; more than 2 decimals is an error."""
    if isinstance(yuan, float) or isinstance(yuan, bool):
        raise TypeError("money must be given as str, int or Decimal, never float or bool")
    try:
        cents = Decimal(yuan) * CENTS_PER_YUAN
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {yuan!r}") from exc
    if not cents.is_finite() or cents != cents.to_integral_value():
        raise ValueError(f"amount has fractions of a cent: {yuan!r}")
    return int(cents)


def yuan_from_cents(cents: int) -> Decimal:
    """Cents as a Decimal yuan amount with two places, e.g. 5234050 -> Decimal('52340.50')."""
    return (Decimal(cents) / CENTS_PER_YUAN).quantize(Decimal("0.01"))


def is_valid_amount(cents: object) -> bool:
    """True for a positive integer number of cents (bool, float and str are rejected)."""
    return isinstance(cents, int) and not isinstance(cents, bool) and cents > 0


def is_phone_amount(cents: object) -> bool:
    """A valid amount (see `is_valid_amount`) of at most MAX_AMOUNT_CENTS: what a caller may ask to move."""
    return is_valid_amount(cents) and cents <= MAX_AMOUNT_CENTS


def tidy_decimal(value: Decimal, min_places: int = 2) -> Decimal:
    """Drop storage padding but keep at least `min_places` decimals: 711.2000 -> 711.20, 4.6012 -> 4.6012."""
    floor = Decimal(1).scaleb(-min_places)
    quantized = value.quantize(floor)
    return quantized if quantized == value else value.normalize()
