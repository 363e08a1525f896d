"""MaskingSQLTrackerStore: Rasa's SQL tracker store that never persists secure input (the PIN).

A user message is secure when it answers a bot prompt that carried an `expect` event with secure=true, or
when it arrives while a form is asking for the `pin` slot (keypad `/dtmf` or spoken digits). Such events are
stored with their text, entities and parse data masked. Masking happens on the serialised copy, right before
it is written, so the in-memory tracker the current turn works with is untouched.

Database: `settings.rasa.tracker_db_url` by default (a SQLite file), or any SQLAlchemy URL (PostgreSQL) given
as `db_url` in endpoints.yml.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import sqlalchemy as sa
from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActiveLoop, BotUttered, Event, Restarted, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

import settings as app_settings
from call_contract import is_secure_expect

logger = logging.getLogger(__name__)

MASK = "[secure input]"
PIN_SLOT = "pin"


def is_secure_prompt(event: Event) -> bool:
    return is_secure_expect((getattr(event, "data", None) or {}).get("custom"))


def secure_user_event_indexes(events: Sequence[Event]) -> set[int]:
    """Positions of the user events in `events` that carry secure input."""
    secure: set[int] = set()
    prompt_was_secure = False
    requested_slot: Any = None
    loop_active = False
    for index, event in enumerate(events):
        if isinstance(event, BotUttered):
            prompt_was_secure = prompt_was_secure or is_secure_prompt(event)
        elif isinstance(event, SlotSet) and event.key == "requested_slot":
            requested_slot = event.value
        elif isinstance(event, ActiveLoop):
            loop_active = event.name is not None
        elif isinstance(event, (Restarted, SessionStarted)):
            prompt_was_secure, requested_slot, loop_active = False, None, False
        elif isinstance(event, UserUttered):
            if prompt_was_secure or (loop_active and requested_slot == PIN_SLOT):
                secure.add(index)
            prompt_was_secure = False
    return secure


def masked_user_event_data(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a serialised user event with everything the caller typed or said replaced by MASK."""
    masked = copy.deepcopy(data)
    masked["text"] = MASK
    parse_data = masked.get("parse_data") or {}
    parse_data["text"] = MASK
    parse_data["entities"] = []
    parse_data.pop("response_selector", None)
    masked["parse_data"] = parse_data
    return masked


def engine_arguments(db_url: str) -> dict[str, Any]:
    """SQLTrackerStore constructor arguments for a SQLAlchemy URL (creating a SQLite file's folder)."""
    url = sa.engine.make_url(db_url)
    if url.drivername.startswith("sqlite") and url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return {
        "dialect": url.drivername,
        "host": url.host,
        "port": url.port,
        "db": url.database,
        "username": url.username,
        "password": url.password,
        "query": dict(url.query) or None,
    }


class MaskingSQLTrackerStore(SQLTrackerStore):
    """SQLTrackerStore whose saved user events never contain secure input."""

    def __init__(
        self,
        domain: Domain | None = None,
        db_url: str | None = None,
        event_broker: EventBroker | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("host", None)  # endpoints.yml `url:` is not used; the database comes from `db_url`
        url = db_url or app_settings.get_settings().rasa.tracker_db_url
        super().__init__(domain=domain, event_broker=event_broker, **engine_arguments(url), **kwargs)

    async def save(self, tracker: DialogueStateTracker) -> None:
        """Like SQLTrackerStore.save, with secure user events masked before they are written."""
        if self.event_broker is not None:
            logger.warning("an event broker is configured; it receives events unmasked, so it is not used")
        events = list(tracker.events)
        secure = secure_user_event_indexes(events)
        with self.session_scope() as session:
            # the in-memory tracker holds the events of the current session; the stored ones are its prefix
            already_stored = self._event_query(session, tracker.sender_id, fetch_events_from_all_sessions=False).count()
            for index in range(already_stored, len(events)):
                session.add(self._row(tracker.sender_id, events[index], index in secure))
            session.commit()

    def _row(self, sender_id: str, event: Event, secure: bool) -> Any:
        data = event.as_dict()
        if secure:
            data = masked_user_event_data(data)
        return self.SQLEvent(
            sender_id=sender_id,
            type_name=event.type_name,
            timestamp=data.get("timestamp"),
            intent_name=data.get("parse_data", {}).get("intent", {}).get("name"),
            action_name=data.get("name"),
            data=json.dumps(data),
        )
