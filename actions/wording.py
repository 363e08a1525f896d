"""Pieces of a sentence an action puts together itself, worded in the domain like every other response.

utter_transactions says 「您尾号{card}的账户有{count}笔交易：{items}。」; {items} is one piece per transaction, and a
piece's words (「3月5日，工资，收入8000元」) are a domain response too, `utter_item_*`, so trainers reword a list
item or a date without Python. Pieces are joined with LIST_SEPARATOR, which is punctuation (a pause), not words.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

log = logging.getLogger(__name__)

LIST_SEPARATOR = "；"


class _KeepUnknown(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"  # as Rasa leaves a variable it has no value for


def piece(domain: dict[str, Any] | None, response: str, **values: Any) -> str:
    """The first text of `response` with `values` filled in ({name} as in any domain response).

    A domain without it (a response renamed, or a Rasa that sends no domain) still speaks the values, joined by
    commas, and logs an error: the caller hears the data rather than nothing.
    """
    variations = ((domain or {}).get("responses") or {}).get(response) or []
    text = next((v.get("text") for v in variations if isinstance(v, dict) and v.get("text")), None)
    if text is None:
        log.error("response %s missing from the domain; speaking its values unworded", response)
        return "，".join(str(v) for v in values.values())
    return text.format_map(_KeepUnknown({k: str(v) for k, v in values.items()}))


def pieces(domain: dict[str, Any] | None, response: str, items: list[dict[str, Any]]) -> str:
    """One `piece` per item, joined as a spoken list."""
    return LIST_SEPARATOR.join(piece(domain, response, **item) for item in items)


def spoken_date(domain: dict[str, Any] | None, day: date) -> str:
    """「3月5日」, worded by utter_item_date."""
    return piece(domain, "utter_item_date", month=day.month, day=day.day)
