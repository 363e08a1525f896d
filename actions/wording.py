"""Pieces of a sentence an action puts together itself, worded in the domain like every other response.

utter_transactions says 「您尾号{card}的账户有{count}笔交易：{items}。」; {items} is one piece per transaction, and a
piece's words (「3月5日，工资，收入8000元」) are a domain response too, `utter_item_*`, so trainers reword a list
item or a date without Python. Pieces are joined with LIST_SEPARATOR, which is punctuation (a pause), not words.
"""

from __future__ import annotations

import logging
import re
from datetime import date
from typing import Any

log = logging.getLogger(__name__)

LIST_SEPARATOR = "；"


# A {variable} as Rasa's response templates write it; nothing else in a text is special (no format specs).
_VARIABLE = re.compile(r"\{([^\n{}]+?)\}")


def piece(domain: dict[str, Any] | None, response: str, **values: Any) -> str:
    """The first text of `response` with `values` filled in ({name} as in any domain response).

    A variable without a value stays as written, as Rasa leaves it. A domain without the response (renamed, or a
    Rasa that sends no domain) still speaks the values, joined by commas, and logs an error: the caller hears the
    data rather than nothing. tests/actions/test_responses.py keeps the project's domain from getting there.
    """
    variations = ((domain or {}).get("responses") or {}).get(response) or []
    text = next((v.get("text") for v in variations if isinstance(v, dict) and isinstance(v.get("text"), str)), None)
    if text is None:
        log.error("response %s missing from the domain; speaking its values unworded", response)
        return "，".join(str(v) for v in values.values())
    filled = {name: str(value) for name, value in values.items()}
    return _VARIABLE.sub(lambda variable: filled.get(variable.group(1), variable.group(0)), text)


def pieces(domain: dict[str, Any] | None, response: str, items: list[dict[str, Any]]) -> str:
    """One `piece` per item, joined as a spoken list."""
    return LIST_SEPARATOR.join(piece(domain, response, **item) for item in items)


def spoken_date(domain: dict[str, Any] | None, day: date) -> str:
    """「3月5日」, worded by utter_item_date."""
    return piece(domain, "utter_item_date", month=day.month, day=day.day)
