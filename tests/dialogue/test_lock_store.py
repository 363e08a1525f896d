"""AtomicRedisLockStore on a real Redis (the `stores` fixture): one conversation's turns never overlap, whichever
Rasa server takes them. Each "server" here is its own store with its own Redis connections; the cross-process
test forks real processes, as Rasa servers are.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import threading
import time
import uuid

import pytest
import redis
from rasa.core.lock_store import LockError, RedisLockStore

from dialogue.lock_store import LEASE_S, AtomicRedisLockStore
from scripts.processes import free_port

pytestmark = pytest.mark.integration


def make(stores, cls=AtomicRedisLockStore, **options) -> RedisLockStore:
    return cls(host="127.0.0.1", port=stores.redis.port, key_prefix="test", socket_timeout=1, **options)


def lock_db(stores) -> redis.Redis:
    """The Redis database the lock store writes (Rasa's RedisLockStore: db 1)."""
    return redis.Redis(port=stores.redis.port, db=1)


def conversation() -> str:
    return f"call-{uuid.uuid4().hex[:12]}"


def issue_at_once(stores, cls, servers: int) -> list[int]:
    """One ticket each for one conversation from `servers` stores at the same moment."""
    lock_stores = [make(stores, cls) for _ in range(servers)]
    barrier, tickets, conversation_id = threading.Barrier(servers), [], conversation()

    def take(store: RedisLockStore) -> None:
        barrier.wait()
        tickets.append(store.issue_ticket(conversation_id, 30))

    threads = [threading.Thread(target=take, args=(store,)) for store in lock_stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return sorted(tickets)


def test_rasas_redis_lock_store_hands_out_one_ticket_twice(stores):
    """Why the atomic store exists (RasaHQ/rasa#9213): Rasa's own store, four servers taking a ticket at once."""
    rounds = [issue_at_once(stores, RedisLockStore, 4) for _ in range(10)]
    assert any(len(set(tickets)) < 4 for tickets in rounds), rounds


def test_tickets_taken_at_the_same_moment_are_all_different(stores):
    for _ in range(10):
        assert issue_at_once(stores, AtomicRedisLockStore, 4) == [0, 1, 2, 3]


def test_turns_of_one_conversation_from_three_processes_never_overlap(stores):
    """Three processes, 15 turns each, every turn a read-sleep-write of one counter under the conversation's lock:
    no update is lost, so no two turns overlapped. (Rasa's RedisLockStore loses some: 57 of 60 in one run.)"""
    conversation_id, turns = conversation(), 15
    context = multiprocessing.get_context("fork")
    barrier, failures = context.Barrier(3), context.Queue()

    def server() -> None:
        store, counter = make(stores), redis.Redis(port=stores.redis.port)

        async def turn() -> None:
            async with store.lock(conversation_id):
                value = int(counter.get(f"counter:{conversation_id}") or 0)
                await asyncio.sleep(0.005)
                counter.set(f"counter:{conversation_id}", value + 1)

        async def all_turns() -> int:
            failed = 0
            for _ in range(turns):
                try:
                    await turn()
                except LockError:
                    failed += 1
            return failed

        barrier.wait(timeout=30)
        failures.put(asyncio.run(all_turns()))

    processes = [context.Process(target=server) for _ in range(3)]
    for process in processes:
        process.start()
    try:
        assert [failures.get(timeout=60) for _ in processes] == [0, 0, 0]
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    assert int(redis.Redis(port=stores.redis.port).get(f"counter:{conversation_id}")) == 3 * turns
    assert lock_db(stores).get(f"test:lock:{conversation_id}") is None  # nothing left behind


async def test_a_lock_left_by_a_dead_server_is_free_after_one_lease(stores):
    """A server killed mid-turn never hands its lock on, nor renews it; the next turn waits one lease at most."""
    conversation_id = conversation()
    make(stores, lock_lifetime_s=1.0).issue_ticket(conversation_id)  # taken, never renewed nor given back
    started = time.monotonic()
    async with make(stores, lock_lifetime_s=1.0).lock(conversation_id):
        waited = time.monotonic() - started
    assert 0.8 < waited < 2.0


async def test_a_live_turn_keeps_its_lock_past_the_lease_and_queued_turns_keep_their_places(stores):
    """Leases of 0.5 s; the first turn runs 1.2 s and the second 0.8 s, the third waits 2 s behind them: each
    keeps its lease renewed, so they run one after the other, alone, in order."""
    conversation_id, order = conversation(), []

    async def turn(name: str, hold_s: float, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        async with make(stores, lock_lifetime_s=0.5).lock(conversation_id):
            order.append(f"{name} in")
            await asyncio.sleep(hold_s)
            order.append(f"{name} out")

    await asyncio.gather(turn("first", 1.2, 0), turn("second", 0.8, 0.05), turn("third", 0, 0.1))
    assert order == ["first in", "first out", "second in", "second out", "third in", "third out"]


async def test_redis_down_fails_the_turn_fast_instead_of_hanging_it(stores):
    dead = AtomicRedisLockStore(host="127.0.0.1", port=free_port(), socket_timeout=1)  # nothing listens there
    started = time.monotonic()
    with pytest.raises(LockError):
        async with dead.lock(conversation()):
            pass
    assert time.monotonic() - started < 3


def test_made_from_the_cluster_endpoints_file(stores, monkeypatch, tmp_path):
    """deploy/rasa/endpoints.cluster.yml, read the way Rasa reads it, gives this store with the cluster's options."""
    from rasa.core.lock_store import LockStore
    from rasa.utils.endpoints import read_endpoint_config

    from settings import REPO_ROOT

    monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("REDIS_PORT", str(stores.redis.port))
    for name in ("ACTION_SERVER_URL", "TRACKER_DB_URL"):
        monkeypatch.setenv(name, "unused")
    config = read_endpoint_config(str(REPO_ROOT / "deploy" / "rasa" / "endpoints.cluster.yml"), "lock_store")
    store = LockStore.create(config)
    assert isinstance(store, AtomicRedisLockStore)
    assert store.key_prefix == "ivr:lock:"
    assert store.lock_lifetime_s == LEASE_S
    assert store.red.connection_pool.connection_kwargs["socket_timeout"] == 1
    assert store.issue_ticket(conversation()) == 0


def run_turns_in_threads(*turns) -> None:
    """Each turn on its own thread with its own event loop, as on its own server: a blocking call in one stalls
    that server only."""
    threads = [threading.Thread(target=asyncio.run, args=(turn,)) for turn in turns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)


def test_a_stalled_holder_past_its_lease_never_frees_the_next_turns_lock(stores):
    """The reviewer's reproduction, leases of 0.3 s: A blocks its loop 1.2 s holding the lock, so its lease lapses;
    B takes the lock at 0.5 s and holds it until 1.5 s; C queues at 0.7 s. When A wakes and hands on its ticket it
    must not hand on B's (ticket numbers used to start again at 0 once A's had expired): C waits for B."""
    conversation_id, started, spans = conversation(), time.monotonic(), {}

    async def turn(name: str, delay_s: float, hold_s: float, stall_s: float = 0) -> None:
        await asyncio.sleep(delay_s)
        async with make(stores, lock_lifetime_s=0.3, poll_interval_s=0.02).lock(conversation_id):
            entered = time.monotonic() - started
            time.sleep(stall_s)  # a synchronous call blocking this server's loop
            await asyncio.sleep(hold_s)
            spans[name] = (entered, time.monotonic() - started)

    run_turns_in_threads(turn("A", 0, 0, stall_s=1.2), turn("B", 0.5, 1.0), turn("C", 0.7, 0.1))
    assert set(spans) == {"A", "B", "C"}, spans
    (b_in, b_out), (c_in, c_out) = spans["B"], spans["C"]
    assert c_in >= b_out, spans  # C never ran while B did
    assert lock_db(stores).get(f"test:lock:{conversation_id}") is None


def test_ticket_numbers_are_never_reused_for_a_conversation(stores):
    store, conversation_id = make(stores, lock_lifetime_s=0.2), conversation()
    first = store.issue_ticket(conversation_id)
    time.sleep(0.3)  # expired, and the lock with it
    second = store.issue_ticket(conversation_id)
    store.cleanup(conversation_id, second)
    third = store.issue_ticket(conversation_id)
    assert first < second < third


def test_tickets_expire_by_redis_clock_not_the_servers(stores, monkeypatch):
    """A server whose clock runs 10 s ahead of the others' must not drop their live tickets."""
    conversation_id = conversation()
    holder = make(stores, lock_lifetime_s=3.0)
    holder.issue_ticket(conversation_id)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 10)
    make(stores, lock_lifetime_s=3.0).issue_ticket(conversation_id)
    monkeypatch.undo()
    stored = json.loads(lock_db(stores).get(f"test:lock:{conversation_id}"))
    assert len(stored["tickets"]) == 2, stored


async def test_a_waiting_turn_gives_up_after_its_bound(stores):
    """A turn waits for the lock at most `max_wait_s`, then fails with Rasa's LockError (the call channel answers
    with its apology); its ticket goes with it, so the turns behind it are not held up."""
    conversation_id = conversation()
    holder_in, waiter_done = asyncio.Event(), []

    async def holder() -> None:
        async with make(stores, lock_lifetime_s=0.3).lock(conversation_id):
            holder_in.set()
            await asyncio.sleep(1.5)

    async def waiter() -> None:
        await holder_in.wait()
        started = time.monotonic()
        with pytest.raises(LockError):
            async with make(stores, lock_lifetime_s=0.3, max_wait_s=0.5).lock(conversation_id):
                pass
        waiter_done.append(time.monotonic() - started)
        stored = json.loads(lock_db(stores).get(f"test:lock:{conversation_id}"))
        assert len(stored["tickets"]) == 1, stored  # only the holder's

    await asyncio.gather(holder(), waiter())
    assert 0.45 < waiter_done[0] < 1.0, waiter_done


async def test_a_turn_that_lost_its_lease_is_stopped_with_a_lock_error(stores, caplog):
    """A stall past the lease (here 0.3 s) loses the lock; the turn is stopped at its next await with LockError
    (the channel's apology) instead of running on beside the next turn, and the loss is logged as an error."""
    conversation_id = conversation()
    with pytest.raises(LockError):
        async with make(stores, lock_lifetime_s=0.3).lock(conversation_id):
            time.sleep(0.6)
            await asyncio.sleep(0.5)
    assert any(r.levelname == "ERROR" and conversation_id in r.getMessage() for r in caplog.records), caplog.text
