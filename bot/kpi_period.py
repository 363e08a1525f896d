"""The period a KPI request asks for: `from` and `to` as a person types them, checked (dashboard, `make report`).

Both are ISO 8601, a date (`2026-11-01`, midnight UTC) or a time (`2026-11-01T08:00`, `...+08:00`, `...Z`); a time
without an offset is UTC. The period is [from, to): `to` is excluded, so a day is `from=2026-11-01&to=2026-11-02`.
Empty `to` is now; empty `from` is `default_days` before `to`. Anything else (not ISO, `to` not after `from`, a span
over MAX_DAYS, before 1970, more than MAX_DAYS after now: no call has happened there, and the year 9999 would
overflow the reading window) raises BadPeriod with a message for the person who typed it.
"""

from __future__ import annotations

from datetime import datetime, timezone

from bot.kpis import Period

MAX_DAYS = 366
MAX_CHARS = 40


class BadPeriod(ValueError):
    """A period the KPIs cannot be computed over; the message says why."""


def parse_period(start: str, end: str, *, now: float, default_days: int) -> Period:
    until = parse_instant(end, "to") if end else now
    since = parse_instant(start, "from") if start else until - default_days * 86400
    if until <= since:
        raise BadPeriod("'to' must be after 'from'")
    if until - since > MAX_DAYS * 86400:
        raise BadPeriod(f"the period is longer than {MAX_DAYS} days")
    if until > now + MAX_DAYS * 86400:
        raise BadPeriod(f"the period ends more than {MAX_DAYS} days from now: there are no calls there yet")
    return Period(since, until)


def parse_instant(text: str, name: str) -> float:
    text = text.strip()
    if len(text) > MAX_CHARS or not text.isascii():
        raise BadPeriod(f"'{name}' is not an ISO 8601 date or time")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadPeriod(f"'{name}' is not an ISO 8601 date or time (e.g. 2026-11-01 or 2026-11-01T08:00+08:00)") \
            from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        when = parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        raise BadPeriod(f"'{name}' is out of range") from None
    if when < 0:
        raise BadPeriod(f"'{name}' is before 1970")
    return when
