"""Masking of caller numbers in logs, call records and CDRs; dependency-free so every layer can use it.

Secure input (a PIN) is masked with the call contract's `SECURE_MASK` / `mask_secure` (call_contract.py): the
dialogue's side masks it too, so it lives where both venvs read it.
"""

from __future__ import annotations


def mask_caller_number(number: str) -> str:
    """138****0001: numbers longer than 7 keep their first 3 and last 4 characters; shorter ones are fully masked."""
    number = (number or "").strip()
    if len(number) <= 7:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 7) + number[-4:]
