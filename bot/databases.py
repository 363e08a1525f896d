"""Database URLs as the gateway's venv opens them: the one place a URL written for the Rasa venv is translated.

Both venvs read the same settings (TRACKER_DB_URL, BANK_DB_URL, CALL_RECORDS_DB_URL). In the Rasa venv
`postgresql://` means psycopg2, which Rasa's SQLAlchemy needs; the gateway's venv has psycopg 3 only, and under its
SQLAlchemy 2 the same URL would load psycopg2 and fail. So the gateway reads `postgresql://`, `postgres://` and
`postgresql+psycopg2://` as `postgresql+psycopg://` (same server, same libpq parameters).
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

GATEWAY_POSTGRES_DRIVER = "postgresql+psycopg"
_POSTGRES_SCHEMES = frozenset({"postgres", "postgresql", "postgresql+psycopg2"})


def gateway_db_url(db_url: str, setting: str) -> URL:
    """`db_url` for the gateway's SQLAlchemy; ValueError naming `setting` (the environment variable) when it is
    not a database URL at all."""
    try:
        url = make_url(db_url.strip() if isinstance(db_url, str) else db_url)
    except (ArgumentError, ValueError) as exc:
        raise ValueError(f"{setting} is not a database URL: {exc}") from exc
    if url.drivername in _POSTGRES_SCHEMES:
        url = url.set(drivername=GATEWAY_POSTGRES_DRIVER)
    return url


def is_postgres(url: URL) -> bool:
    return url.get_backend_name() == "postgresql"
