"""MaskingSQLTrackerStore on a real PostgreSQL (the `stores` fixture), shared by several Rasa servers as in
`make cluster`: the PIN is masked there too, one server continues what another saved, servers starting together
make the table once without waiting, and a database restart costs no saved turn."""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from itertools import count
from types import SimpleNamespace

import psycopg2
import pytest
from rasa.core.channels.channel import UserMessage
from rasa.core.tracker_store import FailSafeTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from call_contract import UNAVAILABLE_APOLOGY
from dialogue.channel import CallChannel
from dialogue.tracker_store import MASK, MaskingSQLTrackerStore, tracker_url
from settings import REPO_ROOT
from tests.dialogue.test_tracker_store import PIN, dtmf, spoken, verification_events

pytestmark = pytest.mark.integration
_numbers = count(1)
DOMAIN = Domain.load(str(REPO_ROOT / "domain"))


@pytest.fixture
def db_url(stores) -> str:
    return stores.database(f"tracker_{next(_numbers)}")


def rows(db_url: str, sender_id: str) -> list[str]:
    with psycopg2.connect(db_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT data FROM events WHERE sender_id = %s ORDER BY id", (sender_id,))
        return [row[0] for row in cursor.fetchall()]


async def test_the_pin_is_masked_in_postgresql(db_url):
    events = verification_events(dtmf(PIN))
    await MaskingSQLTrackerStore(domain=DOMAIN, db_url=db_url).save(DialogueStateTracker.from_events("call-1", events))
    saved = rows(db_url, "call-1")
    assert len(saved) == len(events)
    assert not any(PIN in row for row in saved) and sum(MASK in row for row in saved) == 1


async def test_one_server_continues_what_another_saved(db_url):
    first, second = (MaskingSQLTrackerStore(domain=DOMAIN, db_url=db_url) for _ in range(2))
    events = verification_events(spoken("一三五七九零"))
    await first.save(DialogueStateTracker.from_events("call-2", events[:14]))
    tracker = await second.retrieve("call-2")
    assert len(tracker.events) == 14
    for event in events[14:]:
        tracker.update(event)
    tracker.update(UserUttered("再查一下余额", intent={"name": "check_balance", "confidence": 0.9}))
    await second.save(tracker)
    back = await first.retrieve("call-2")
    assert len(back.events) == len(events) + 1 and back.latest_message.text == "再查一下余额"
    assert back.get_slot("verified") is True
    assert not any("一三五七九零" in row for row in rows(db_url, "call-2"))


def test_servers_starting_together_make_the_table_once_without_waiting(db_url):
    """Rasa's own table creation, when servers collide on it, waits 5 s and tries again; under the advisory lock
    the later ones just find the table."""
    context = multiprocessing.get_context("fork")
    barrier, times = context.Barrier(3), context.Queue()

    def start() -> None:
        barrier.wait(timeout=30)
        started = time.monotonic()
        MaskingSQLTrackerStore(domain=None, db_url=db_url)
        times.put(time.monotonic() - started)

    for _ in range(3):  # a collision is a matter of timing: try a few fresh databases' worth of starts
        processes = [context.Process(target=start) for _ in range(3)]
        for process in processes:
            process.start()
        taken = [times.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=10)
        assert max(taken) < 3, taken
        with psycopg2.connect(db_url) as connection, connection.cursor() as cursor:
            cursor.execute("DROP TABLE events")


async def test_a_database_restart_costs_no_saved_turn(db_url):
    """Every pooled connection is cut (as a PostgreSQL restart does); the next save still reaches the database.
    Without the pre-ping it failed, and Rasa's fail-safe wrapper kept that turn in one server's memory."""
    store = MaskingSQLTrackerStore(domain=DOMAIN, db_url=db_url)
    events = verification_events(dtmf(PIN))
    await store.save(DialogueStateTracker.from_events("call-3", events[:5]))
    with psycopg2.connect(db_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    await store.save(DialogueStateTracker.from_events("call-3", events))
    assert len(rows(db_url, "call-3")) == len(events)


def test_urls_for_this_venv():
    assert tracker_url("postgresql+psycopg://u:p@h:1/d").drivername == "postgresql+psycopg2"
    assert tracker_url("postgresql://u:p@h:1/d").query == {"connect_timeout": "3"}
    assert tracker_url("postgresql://u:p@h:1/d?connect_timeout=9").query == {"connect_timeout": "9"}
    assert str(tracker_url("sqlite:///var/tracker.db")) == "sqlite:///var/tracker.db"


@contextlib.contextmanager
def database_away(db_url: str):
    """The database refuses every connection, and the open ones are cut: an outage as Rasa sees it, on the
    session's shared server without stopping it."""
    name = psycopg2.extensions.parse_dsn(db_url)["dbname"]
    admin = db_url.rsplit("/", 1)[0] + "/postgres"

    def allow(allowed: bool) -> None:
        connection = psycopg2.connect(admin)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        connection.close()

    allow(False)
    try:
        yield
    finally:
        allow(True)


async def test_a_turn_while_the_database_is_away_fails_closed_and_keeps_the_verified_conversation(db_url):
    """Rasa wraps every tracker store in FailSafeTrackerStore: a tracker it cannot read becomes a new, empty one and
    a turn it cannot save is kept in one server's memory, so a verified caller would silently be a stranger talking
    to a fresh dialogue. The channel turns any tracker-store failure during a turn into the apology and a handoff;
    the verified conversation is still there when the database is back."""
    store = MaskingSQLTrackerStore(domain=DOMAIN, db_url=db_url)
    await store.save(DialogueStateTracker.from_events("call-4", verification_events(dtmf(PIN))))
    failsafe = FailSafeTrackerStore(store)  # what rasa.core.agent.Agent makes of every tracker store
    agent = SimpleNamespace(tracker_store=failsafe, domain=None)
    request = SimpleNamespace(app=SimpleNamespace(ctx=SimpleNamespace(agent=agent)))

    async def rasa_turn(message: UserMessage) -> None:
        """What Rasa's processor does with a message: get or create the tracker, answer, save."""
        tracker = await failsafe.get_or_create_tracker(message.sender_id)
        verified = tracker.get_slot("verified")
        await message.output_channel.send_text_message(message.sender_id, "您的余额是…" if verified else "请输入卡号。")
        tracker.update(UserUttered(message.text))
        await failsafe.save(tracker)

    with database_away(db_url):
        reply = await CallChannel()._handle(rasa_turn, request, "call-4", "查余额", {})
    assert reply[0]["text"] == UNAVAILABLE_APOLOGY and reply[1]["custom"]["event"] == "handoff"
    back = await store.retrieve("call-4")
    assert back.get_slot("verified") is True and back.latest_message.text != "查余额"
    assert [m["text"] for m in await CallChannel()._handle(rasa_turn, request, "call-4", "查余额", {})] == ["您的余额是…"]
