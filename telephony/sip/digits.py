"""Numbers on the wire: ASCII digits only.

`str.isdigit()` and `int()` accept any Unicode decimal digit ('٣', '۳', fullwidth '３') and `isdigit` even
superscripts that `int()` then rejects ('²'), so a port written `²000` passed the check and blew up the parse.
SIP (RFC 3261 §25.1) and SDP (RFC 4566 §9) define DIGIT as %x30-39, so every number we read goes through here.
"""

from __future__ import annotations

# Leading zeros aside, no number we accept needs more (a CSeq is below 2**31, a port below 65536); it also keeps
# `int()` far away from its 4300-digit limit, whose ValueError would otherwise escape the parser.
MAX_SIGNIFICANT_DIGITS = 12


def is_ascii_digits(text: str) -> bool:
    """True for a non-empty run of 0-9 and nothing else."""
    return bool(text) and text.isascii() and text.isdigit()


def ascii_int(text: str, max_digits: int = MAX_SIGNIFICANT_DIGITS) -> int | None:
    """The non-negative integer `text` spells in ASCII digits, or None (any other character, or too long)."""
    if not is_ascii_digits(text) or len(text.lstrip("0")) > max_digits:
        return None
    return int(text)
