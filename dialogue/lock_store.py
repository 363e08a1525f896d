"""AtomicRedisLockStore: Rasa's RedisLockStore, safe with several Rasa servers (`make cluster`).

Rasa keeps one conversation's turns in order with a ticket lock: each turn takes a ticket, waits until it is served,
and hands the lock on. Its RedisLockStore stores the lock as one Redis value and changes it by read, modify, write
with nothing in between to stop another server doing the same (RasaHQ/rasa#9213; the fix, ConcurrentRedisLockStore,
is in Rasa Pro only). Two servers taking a ticket for one conversation at the same moment can both get the same
number and run both turns at once on one tracker; a server handing the lock on can overwrite a ticket just taken
or delete the lock under a waiting turn, which then fails. Here every change of a lock is atomic: Redis WATCH/MULTI,
tried again when another server changed the lock in between.

Two more differences, both for phone calls:
- A ticket is a lease of `lock_lifetime_s` (LEASE_S, 3 s), renewed while its server is alive: at every look of a
  waiting turn, and every third of the lease while the turn runs. Rasa's tickets live a fixed 60 s from when they are
  taken, so a server killed mid-turn held that call's lock for up to a minute, and the caller's next turns, on any
  server, failed after waiting out their budget. Here the lock is free at most one lease after the server died,
  while a live turn keeps it however long it takes (the call channel cancels a turn at the turn budget anyway).
  A server whose event loop stalls longer than a lease (2 s past the last renewal) could lose its lock to a
  turn on another server: Rasa's turns are tenths of a second of CPU.
- A waiting turn looks again every `poll_interval_s` (Rasa: 1 s, a second of silence on the phone). The lock's
  Redis key expires with its last ticket, so a dead server leaves nothing behind.

endpoints (deploy/rasa/endpoints.cluster.yml):

    lock_store:
      type: dialogue.lock_store.AtomicRedisLockStore
      url: ${REDIS_HOST}
      port: ${REDIS_PORT}
      socket_timeout: 1      # any Redis call fails after this (RasaHQ/rasa#6226); the turn gets the apology
      key_prefix: ivr        # keys are ivr:lock:<conversation id>
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Optional, TypeVar

from rasa.core.lock import TicketLock
from rasa.core.lock_store import LockError, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

logger = logging.getLogger(__name__)

LEASE_S = 3.0
RENEWALS_PER_LEASE = 3
POLL_INTERVAL_S = 0.05
KEY_EXPIRY_MARGIN_S = 1.0

Result = TypeVar("Result")


class AtomicRedisLockStore(RedisLockStore):
    """RedisLockStore whose ticket locks are changed atomically and held as renewed leases (see the module)."""

    def __init__(
        self,
        endpoint_config: Optional[EndpointConfig] = None,
        lock_lifetime_s: Optional[float] = None,
        poll_interval_s: float = POLL_INTERVAL_S,
        **kwargs: Any,
    ) -> None:
        if endpoint_config is not None:  # how Rasa makes a lock store named by its module path
            kwargs = {"host": endpoint_config.url or "localhost", **endpoint_config.kwargs, **kwargs}
            lock_lifetime_s = kwargs.pop("lock_lifetime_s", lock_lifetime_s)
            poll_interval_s = kwargs.pop("poll_interval_s", poll_interval_s)
        if "socket_timeout" in kwargs:  # from ${ENV} in the endpoints file it is a string
            kwargs["socket_timeout"] = float(kwargs["socket_timeout"])
        super().__init__(**kwargs)
        self.lock_lifetime_s = float(lock_lifetime_s or LEASE_S)
        self.poll_interval_s = float(poll_interval_s)

    def lock(
        self, conversation_id: str, lock_lifetime: Optional[float] = None, wait_time_in_seconds: Optional[float] = None
    ):
        """Rasa's `lock` (async context manager), with this store's lease and poll interval by default."""
        return self._lock(conversation_id, lock_lifetime or self.lock_lifetime_s,
                          wait_time_in_seconds or self.poll_interval_s)

    @asynccontextmanager
    async def _lock(self, conversation_id: str, lease_s: float, wait_s: float) -> AsyncIterator[TicketLock]:
        ticket = self.issue_ticket(conversation_id, lease_s)
        try:
            lock = await self._wait_for_turn(conversation_id, ticket, lease_s, wait_s)
            renewing = asyncio.create_task(self._keep_renewing(conversation_id, ticket, lease_s))
            try:
                yield lock
            finally:
                renewing.cancel()
        finally:
            self.cleanup(conversation_id, ticket)

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = 0) -> int:
        """A new ticket at the end of the conversation's queue (the lock is made if there is none)."""
        lifetime = lock_lifetime or self.lock_lifetime_s
        try:
            return self._change(conversation_id, lambda lock: lock.issue_ticket(lifetime))
        except Exception as exc:  # noqa: BLE001 - Redis down or slow: Rasa's own type, as RedisLockStore raises
            raise LockError(f"Error while acquiring lock. Error:\n{exc}") from exc

    async def _acquire_lock(self, conversation_id: str, ticket: int, wait_time_in_seconds: float) -> TicketLock:
        return await self._wait_for_turn(conversation_id, ticket, self.lock_lifetime_s, wait_time_in_seconds)

    async def _wait_for_turn(self, conversation_id: str, ticket: int, lease_s: float, wait_s: float) -> TicketLock:
        """Waits until `ticket` is served, renewing it at every look; LockError if it expired meanwhile."""
        while True:
            try:
                served = self._change(conversation_id, lambda lock: self._renew(lock, ticket, lease_s))
            except Exception as exc:  # noqa: BLE001
                raise LockError(f"Error while acquiring lock. Error:\n{exc}") from exc
            if served is None:
                raise LockError(f"Could not acquire lock for conversation_id '{conversation_id}'.")
            if served:
                logger.debug("Acquired lock for conversation '%s'.", conversation_id)
                return served
            await asyncio.sleep(wait_s)

    async def _keep_renewing(self, conversation_id: str, ticket: int, lease_s: float) -> None:
        """While the turn runs: the lease renewed every third of it. A Redis hiccup is logged and tried again."""
        while True:
            await asyncio.sleep(lease_s / RENEWALS_PER_LEASE)
            try:
                if self._change(conversation_id, lambda lock: self._renew(lock, ticket, lease_s)) is None:
                    logger.warning("the lock of conversation %s expired during its turn", conversation_id)
                    return
            except Exception as exc:  # noqa: BLE001
                logger.warning("could not renew the lock of conversation %s (%s)", conversation_id,
                               type(exc).__name__)

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        """Hands the lock on: removes `ticket_number`; the lock goes when no ticket is left. A failure is logged,
        not raised: the turn is done, and the ticket expires by itself."""
        try:
            self._change(conversation_id, lambda lock: lock.remove_ticket_for(ticket_number))
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not hand on the lock of conversation %s (%s); its ticket expires in %.0f s",
                           conversation_id, type(exc).__name__, self.lock_lifetime_s)

    def finish_serving(self, conversation_id: str, ticket_number: int) -> None:
        self._change(conversation_id, lambda lock: lock.remove_ticket_for(ticket_number))

    def update_lock(self, conversation_id: str) -> None:
        self._change(conversation_id, lambda lock: None)  # expired tickets are dropped by every change

    @staticmethod
    def _renew(lock: TicketLock, ticket_number: int, lease_s: float) -> Optional[TicketLock | bool]:
        """Renews `ticket_number` for `lease_s`: the lock if that ticket is now served, False if it waits, None if
        it is gone (expired)."""
        ticket = lock._ticket_for_ticket_number(ticket_number)  # drops expired tickets first
        if ticket is None:
            return None
        ticket.expires = time.time() + lease_s
        return lock if lock.now_serving == ticket_number else False

    def _change(self, conversation_id: str, change: Callable[[TicketLock], Result]) -> Result:
        """Reads the conversation's lock (a new one if there is none), applies `change` to it and writes it back,
        all or nothing: if another server changes the lock in between, everything is done again on its version.
        A lock left without tickets is deleted; otherwise its key expires just after its last ticket."""
        key = self.key_prefix + conversation_id

        def attempt(pipe) -> Result:
            stored = pipe.get(key)
            lock = TicketLock.from_dict(json.loads(stored)) if stored else TicketLock(conversation_id)
            result = change(lock)
            lock.remove_expired_tickets()
            pipe.multi()
            if lock.tickets:
                expiry_s = max(t.expires for t in lock.tickets) - time.time() + KEY_EXPIRY_MARGIN_S
                pipe.set(key, lock.dumps(), px=max(int(expiry_s * 1000), 1))
            elif stored:
                pipe.delete(key)
            return result

        return self.red.transaction(attempt, key, value_from_callable=True)
