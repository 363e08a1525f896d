"""MaskingSQLTrackerStore: Rasa's SQL tracker store that never persists secure input (the PIN).

A user message is secure when it answers a bot prompt that carried an `expect` event with secure=true, or
when it arrives while a form is asking for the `pin` slot (keypad `/dtmf` or spoken digits). Such events are
stored with their text, entities and parse data masked. Masking happens on the serialised copy, right before
it is written, so the in-memory tracker the current turn works with is untouched.

Database: `settings.rasa.tracker_db_url` by default (a SQLite file), or any SQLAlchemy URL (PostgreSQL) given
as `db_url` in endpoints.yml. On PostgreSQL, shared by several Rasa servers (`make cluster`,
deploy/rasa/endpoints.cluster.yml):
- the table is created under an advisory lock, so servers starting together do not collide (Rasa's own retry
  after a collision sleeps 5 s);
- pooled connections are checked before use (`pool_pre_ping`): after a database restart a stale connection would
  fail a save, and Rasa's fail-safe wrapper would then keep that turn in this server's memory only, where the
  other servers never see it;
- a connection attempt gives up after CONNECT_TIMEOUT_S (unless the URL says otherwise), within a turn's budget.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator, Sequence

import sqlalchemy as sa
import sqlalchemy.orm
from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import SQLTrackerStore, create_engine_kwargs
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActiveLoop, BotUttered, Event, Restarted, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

import settings as app_settings
from call_contract import is_secure_expect

logger = logging.getLogger(__name__)

MASK = "[secure input]"
PIN_SLOT = "pin"
CONNECT_TIMEOUT_S = 3
# PostgreSQL advisory lock held while the events table is created (any fixed number; "trak" in ASCII).
SCHEMA_LOCK_KEY = 0x7472616B


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


def tracker_url(db_url: str) -> sa.engine.URL:
    """The URL as this venv's SQLAlchemy (1.4) can use it: `postgresql+psycopg` (psycopg 3, the gateway venv's
    driver) becomes psycopg2, and PostgreSQL gets a connect timeout unless the URL sets one."""
    url = sa.engine.make_url(db_url)
    if url.get_backend_name() != "postgresql":
        return url
    if url.drivername == "postgresql+psycopg":
        url = url.set(drivername="postgresql+psycopg2")
    if "connect_timeout" not in url.query:
        url = url.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT_S)})
    return url


def engine_arguments(db_url: str) -> dict[str, Any]:
    """SQLTrackerStore constructor arguments for a SQLAlchemy URL (creating a SQLite file's folder)."""
    url = tracker_url(db_url)
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


def create_postgresql_table(db_url: str) -> None:
    """The events table, created under an advisory lock (a no-op once it exists). A database that is down is
    left to SQLTrackerStore, which waits for it."""
    engine = sa.create_engine(tracker_url(db_url))
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            SQLTrackerStore.Base.metadata.create_all(connection)
    except sa.exc.OperationalError as exc:
        logger.warning("tracker store not reachable yet: %s", type(exc).__name__)
    finally:
        engine.dispose()


# The failures of the tracker store during the current turn. Rasa wraps every tracker store in its
# FailSafeTrackerStore, which hides them: a tracker it cannot read becomes a new, empty conversation (a verified
# caller silently a stranger to the dialogue) and a turn it cannot save stays in one server's memory. The channel
# (dialogue/channel.py) puts a fresh list here for each turn and answers with the apology when anything landed in it.
# A list, not a flag: Rasa runs the turn in a task of its own, which sees this context's list but not a new value.
TURN_STORE_FAILURES: ContextVar[list[str] | None] = ContextVar("turn_store_failures", default=None)


class StaleConversation(RuntimeError):
    """This turn could not read the conversation, so the tracker it would save is not the stored one's sequel."""


def note_store_failure(operation: str, error: Exception) -> None:
    failures = TURN_STORE_FAILURES.get()
    if failures is not None:
        failures.append(f"{operation}: {type(error).__name__}")


@contextlib.contextmanager
def noting_failures(operation: str) -> Iterator[None]:
    """Any exception in the block is noted for the turn's channel (TURN_STORE_FAILURES), then raised on."""
    try:
        yield
    except Exception as error:
        note_store_failure(operation, error)
        raise


class MaskingSQLTrackerStore(SQLTrackerStore):
    """SQLTrackerStore whose saved user events never contain secure input, and whose failures the turn's channel
    hears of (TURN_STORE_FAILURES)."""

    def __init__(
        self,
        domain: Domain | None = None,
        db_url: str | None = None,
        event_broker: EventBroker | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("host", None)  # endpoints.yml `url:` is not used; the database comes from `db_url`
        url = db_url or app_settings.get_settings().rasa.tracker_db_url
        postgresql = tracker_url(url).get_backend_name() == "postgresql"
        if postgresql:
            create_postgresql_table(url)
        super().__init__(domain=domain, event_broker=event_broker, **engine_arguments(url), **kwargs)
        if postgresql:
            self.engine.dispose()
            self.engine = sa.create_engine(self.engine.url, pool_pre_ping=True, **create_engine_kwargs(self.engine.url))
            self.sessionmaker = sa.orm.sessionmaker(bind=self.engine)

    async def retrieve(self, sender_id: str) -> DialogueStateTracker | None:
        with noting_failures("retrieve"):
            return await super().retrieve(sender_id)

    async def retrieve_full_tracker(self, conversation_id: str) -> DialogueStateTracker | None:
        with noting_failures("retrieve_full_tracker"):
            return await super().retrieve_full_tracker(conversation_id)

    async def save(self, tracker: DialogueStateTracker) -> None:
        with noting_failures("save"):
            if any(failure.startswith("retrieve") for failure in TURN_STORE_FAILURES.get() or ()):
                # Rasa ran the turn on a fresh tracker; saving would append its events (an unverified caller,
                # another turn) to the stored conversation, now readable again. Refused: the stored one stands.
                raise StaleConversation(f"{tracker.sender_id}: this turn could not read the conversation")
            await self._save_masked(tracker)

    async def _save_masked(self, tracker: DialogueStateTracker) -> None:
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
