"""Masking of caller numbers in logs, call records and CDRs, and of long digit runs in transcript text; dependency-free
(the call contract aside) so every layer can use it.

Secure input (a PIN) is masked with the call contract's `SECURE_MASK` / `mask_secure` (call_contract.py): the
dialogue's side masks it too, so it lives where both venvs read it.

Transcript text (a caller's turn in the call record, every turn of the agent's screen-pop) goes through
`mask_long_digits`: one rule for both, so what the shared database keeps is never more than what the agent sees.
"""

from __future__ import annotations

import re

from call_contract import SECURE_MASK

# A digit as ASR or a keypad writes it: ASCII, full-width, or spoken Chinese (一三五七九零, 幺 for 1, 两 for 2).
DIGIT_CHARS = "0-9０-９零〇一二三四五六七八九幺两"
# What ASR puts between digits said in groups: spaces, dashes, commas, enumeration commas, full stops, middle dots.
DIGIT_SEPARATORS = "\\s\\-－,，、.。·"
MIN_DIGIT_RUN = 6
# Six or more digits, any of those separators between them: a card or account number, a PIN said aloud. The run
# starts and ends on a digit, so the separators around it stay; shorter numbers (an amount of 500, the last four
# digits of a card the bot asks for) are kept. A large amount said with separators (10,000.00) is masked too.
LONG_DIGITS_RE = re.compile(f"[{DIGIT_CHARS}](?:[{DIGIT_SEPARATORS}]*[{DIGIT_CHARS}]){{{MIN_DIGIT_RUN - 1},}}")


def mask_long_digits(text: str) -> str:
    """Every run of 6+ digits (separators between them allowed) becomes one `****`."""
    return LONG_DIGITS_RE.sub(SECURE_MASK, text)


def mask_caller_number(number: str) -> str:
    """138****0001: numbers longer than 7 keep their first 3 and last 4 characters; shorter ones are fully masked."""
    number = (number or "").strip()
    if len(number) <= 7:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 7) + number[-4:]
