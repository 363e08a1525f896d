"""AtomicRedisLockStore: Rasa's RedisLockStore, safe with several Rasa servers (`make cluster`).

Rasa keeps one conversation's turns in order with a ticket lock: each turn takes a ticket, waits until it is served,
and hands the lock on. Its RedisLockStore stores the lock as one Redis value and changes it by read, modify, write
with nothing in between to stop another server doing the same (RasaHQ/rasa#9213; the fix, ConcurrentRedisLockStore,
is in Rasa Pro only). Two servers taking a ticket for one conversation at the same moment can both get the same
number and run both turns at once on one tracker; a server handing the lock on can overwrite a ticket just taken
or delete the lock under a waiting turn, which then fails. Here every change of a lock is atomic: Redis WATCH/MULTI,
tried again when another server changed the lock in between.

More differences, for phone calls and for several servers:
- A ticket is a lease of `lock_lifetime_s` (LEASE_S, 5 s; why that long: at LEASE_S below), renewed while its server
  is alive: at every look of a waiting turn, and every second while the turn runs. Rasa's tickets live a fixed 60 s
  from when they are taken, so a server killed mid-turn held that call's lock for up to a minute, and the caller's
  next turns, on any server, failed after waiting out their budget. Here the lock is free at most one lease after
  the server died, while a live turn keeps it however long it takes (the call channel cancels a turn at the turn
  budget anyway).
- Ticket numbers never repeat within a conversation: the last one issued is kept apart from the lock
  (`<prefix>:lastticket:<conversation id>`, for a day). Rasa numbers a ticket after the last one in the lock, so once
  a lock had expired the next turn got ticket 0 again, and a server that had stalled past its lease while holding
  ticket 0 then handed on the new holder's ticket on waking: a third turn ran beside the second. Now a server can
  only ever remove or renew its own ticket.
- A server whose event loop stalls past its lease (4 s at least) loses the lock, and another turn may run at the
  same time; its renewal then finds its ticket gone, logs an error and stops its turn at the next await with
  LockError (the caller hears the channel's apology); at the end of a turn a ticket found gone is logged too.
- Tickets expire by Redis's clock (TIME, read in every change), never a server's own: a server whose clock ran
  ahead by more than a lease would drop the others' live tickets.
- A waiting turn looks again every `poll_interval_s` (Rasa: 1 s, a second of silence on the phone), and gives up with
  LockError after `max_wait_s` (the channel's turn budget, 6 s); Rasa waits as long as the lock exists. The lock's
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
from collections import deque
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Deque, Optional, TypeVar

from rasa.core.lock import NO_TICKET_ISSUED, Ticket, TicketLock
from rasa.core.lock_store import LockError, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

logger = logging.getLogger(__name__)

# The lease must outlast the longest synchronous block a turn makes on the Rasa server's event loop, or a live turn
# loses its lock to the next one: Rasa's SQL tracker store is synchronous on the loop, and a PostgreSQL connection
# attempt blocks up to dialogue/tracker_store.py's CONNECT_TIMEOUT_S (3 s), a renewal up to the Redis socket_timeout
# (1 s). Renewed every LEASE_S / RENEWALS_PER_LEASE (1 s), a ticket survives a stall of 4 s at the least. The price:
# a server killed mid-turn keeps the call's lock up to 5 s, so the caller's next turn may wait that long in its 6 s
# budget (the gateway waits ~7 s, Settings.rasa_reply_timeout_s); the caller's reply to the failed turn's apology
# usually comes later than that.
LEASE_S = 5.0
RENEWALS_PER_LEASE = 5
POLL_INTERVAL_S = 0.05
KEY_EXPIRY_MARGIN_S = 1.0
# A conversation's last ticket number is kept this long after its last ticket was taken, so that numbers never repeat
# within a call (a day: longer than any call, and any stall).
LAST_TICKET_TTL_S = 24 * 3600

Result = TypeVar("Result")


class RedisClockTicketLock(TicketLock):
    """Rasa's TicketLock, with tickets timed by Redis's clock (`now`, from TIME when the lock was read) instead of
    each server's own, and numbered after `last_issued_ever`, the conversation's last number, kept apart from the
    lock (so a number is never issued twice, even after the lock expired or was deleted)."""

    def __init__(self, conversation_id: str, tickets: Optional[Deque[Ticket]], now: float,
                 last_issued_ever: int = NO_TICKET_ISSUED) -> None:
        super().__init__(conversation_id, tickets)
        self.now = now
        self.last_issued_ever = last_issued_ever

    def remove_expired_tickets(self) -> None:
        self.tickets = deque(ticket for ticket in self.tickets if ticket.expires >= self.now)

    def issue_ticket(self, lifetime: float) -> int:
        self.remove_expired_tickets()
        self.last_issued_ever = max(self.last_issued_ever, self.last_issued) + 1
        self.tickets.append(Ticket(self.last_issued_ever, self.now + lifetime))
        return self.last_issued_ever


class AtomicRedisLockStore(RedisLockStore):
    """RedisLockStore whose ticket locks are changed atomically and held as renewed leases (see the module)."""

    def __init__(
        self,
        endpoint_config: Optional[EndpointConfig] = None,
        lock_lifetime_s: Optional[float] = None,
        poll_interval_s: float = POLL_INTERVAL_S,
        max_wait_s: Optional[float] = None,
        **kwargs: Any,
    ) -> None:
        if endpoint_config is not None:  # how Rasa makes a lock store named by its module path
            kwargs = {"host": endpoint_config.url or "localhost", **endpoint_config.kwargs, **kwargs}
            lock_lifetime_s = kwargs.pop("lock_lifetime_s", lock_lifetime_s)
            poll_interval_s = kwargs.pop("poll_interval_s", poll_interval_s)
            max_wait_s = kwargs.pop("max_wait_s", max_wait_s)
        if "socket_timeout" in kwargs:  # from ${ENV} in the endpoints file it is a string
            kwargs["socket_timeout"] = float(kwargs["socket_timeout"])
        super().__init__(**kwargs)
        self.lock_lifetime_s = float(lock_lifetime_s or LEASE_S)
        self.poll_interval_s = float(poll_interval_s)
        if max_wait_s is None:  # the call channel's budget for a whole turn (ACTION_TIMEOUT_S × 2, 6 s)
            from settings import get_settings

            max_wait_s = get_settings().actions.turn_budget_s
        self.max_wait_s = float(max_wait_s)
        # keys are <prefix>:lock:<conversation id>; each conversation's last ticket number is <prefix>:lastticket:<id>
        self.last_ticket_prefix = self.key_prefix[: -len("lock:")] + "lastticket:"

    def lock(
        self, conversation_id: str, lock_lifetime: Optional[float] = None, wait_time_in_seconds: Optional[float] = None
    ):
        """Rasa's `lock` (async context manager), with this store's lease and poll interval by default."""
        return self._lock(conversation_id, lock_lifetime or self.lock_lifetime_s,
                          wait_time_in_seconds or self.poll_interval_s)

    @asynccontextmanager
    async def _lock(self, conversation_id: str, lease_s: float, wait_s: float) -> AsyncIterator[TicketLock]:
        ticket = self.issue_ticket(conversation_id, lease_s)
        served = False
        try:
            lock = await self._wait_for_turn(conversation_id, ticket, lease_s, wait_s, self.max_wait_s)
            served = True
            lost: list[bool] = []
            renewing = asyncio.create_task(
                self._keep_renewing(conversation_id, ticket, lease_s, asyncio.current_task(), lost))
            try:
                yield lock
            except asyncio.CancelledError:
                if lost:  # stopped by _keep_renewing: Rasa's error, which the call channel answers with its apology
                    raise LockError(f"Lost the lock of conversation '{conversation_id}' during its turn.") from None
                raise
            finally:
                renewing.cancel()
        finally:
            handed_on = self._hand_on(conversation_id, ticket)
            if served and handed_on is False:
                logger.error("the lock of conversation %s expired during its turn (its server stalled longer than "
                             "the %.1f s lease): another turn of it may have run at the same time", conversation_id,
                             lease_s)

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = 0) -> int:
        """A new ticket at the end of the conversation's queue (the lock is made if there is none)."""
        lifetime = lock_lifetime or self.lock_lifetime_s
        try:
            return self._change(conversation_id, lambda lock: lock.issue_ticket(lifetime))
        except Exception as exc:  # noqa: BLE001 - Redis down or slow: Rasa's own type, as RedisLockStore raises
            raise LockError(f"Error while acquiring lock. Error:\n{exc}") from exc

    async def _acquire_lock(self, conversation_id: str, ticket: int, wait_time_in_seconds: float) -> TicketLock:
        return await self._wait_for_turn(conversation_id, ticket, self.lock_lifetime_s, wait_time_in_seconds,
                                         self.max_wait_s)

    async def _wait_for_turn(
        self, conversation_id: str, ticket: int, lease_s: float, wait_s: float, max_wait_s: float
    ) -> TicketLock:
        """Waits until `ticket` is served, renewing it at every look; LockError if it expired meanwhile, or after
        `max_wait_s`. The caller of a turn that gives up hears the call channel's apology and is handed to a person
        (dialogue/channel.py answers any failure of a turn so); the channel also stops a whole turn at the same
        budget, but the restart of a conversation at /call_start waits for the lock outside that budget."""
        give_up_at = time.monotonic() + max_wait_s
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
            if time.monotonic() >= give_up_at:
                logger.warning("gave up waiting for the lock of conversation %s after %.1f s", conversation_id,
                               max_wait_s)
                raise LockError(f"Could not acquire lock for conversation_id '{conversation_id}' "
                                f"within {max_wait_s:.1f} s.")
            await asyncio.sleep(wait_s)

    async def _keep_renewing(self, conversation_id: str, ticket: int, lease_s: float,
                             holder: Optional[asyncio.Task], lost: list[bool]) -> None:
        """While the turn runs: the lease renewed every RENEWALS_PER_LEASE-th of it. A Redis hiccup is logged and
        tried again. A ticket found gone (its server stalled past the lease) is logged as an error, and the turn is
        stopped at its next await (`holder` cancelled; `_lock` turns that into LockError): another turn may hold
        the lock now."""
        while True:
            await asyncio.sleep(lease_s / RENEWALS_PER_LEASE)
            try:
                renewed = self._change(conversation_id, lambda lock: self._renew(lock, ticket, lease_s))
            except Exception as exc:  # noqa: BLE001
                logger.warning("could not renew the lock of conversation %s (%s)", conversation_id,
                               type(exc).__name__)
                continue
            if renewed is None or renewed is False:
                logger.error("the lock of conversation %s expired during its turn (its server stalled longer than "
                             "the %.1f s lease); stopping the turn", conversation_id, lease_s)
                lost.append(True)
                if holder is not None:
                    holder.cancel()
                return

    def _hand_on(self, conversation_id: str, ticket_number: int) -> Optional[bool]:
        """Removes `ticket_number`, and only it (numbers never repeat): True if it was there, False if it had
        expired, None if Redis failed (logged; the ticket expires by itself)."""
        try:
            return self._change(conversation_id, lambda lock: self._remove(lock, ticket_number))
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not hand on the lock of conversation %s (%s); its ticket expires in %.0f s",
                           conversation_id, type(exc).__name__, self.lock_lifetime_s)
            return None

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        """Hands the lock on: removes `ticket_number`; the lock goes when no ticket is left. A failure is logged,
        not raised: the turn is done, and the ticket expires by itself."""
        self._hand_on(conversation_id, ticket_number)

    def finish_serving(self, conversation_id: str, ticket_number: int) -> None:
        self._change(conversation_id, lambda lock: self._remove(lock, ticket_number))

    def update_lock(self, conversation_id: str) -> None:
        self._change(conversation_id, lambda lock: None)  # expired tickets are dropped by every change

    @staticmethod
    def _remove(lock: TicketLock, ticket_number: int) -> bool:
        ticket = lock._ticket_for_ticket_number(ticket_number)  # drops expired tickets first
        if ticket is None:
            return False
        lock.tickets.remove(ticket)
        return True

    @staticmethod
    def _renew(lock: RedisClockTicketLock, ticket_number: int, lease_s: float) -> Optional[TicketLock | bool]:
        """Renews `ticket_number` for `lease_s`: the lock if that ticket is now served, False if it waits, None if
        it is gone (expired)."""
        ticket = lock._ticket_for_ticket_number(ticket_number)  # drops expired tickets first
        if ticket is None:
            return None
        ticket.expires = lock.now + lease_s
        return lock if lock.now_serving == ticket_number else False

    def _change(self, conversation_id: str, change: Callable[[RedisClockTicketLock], Result]) -> Result:
        """Reads the conversation's lock (a new one if there is none), applies `change` to it and writes it back,
        all or nothing: if another server changes the lock in between, everything is done again on its version.
        Times are Redis's (TIME), so servers' clocks need not agree. A lock left without tickets is deleted;
        otherwise its key expires just after its last ticket. The conversation's last ticket number outlives it."""
        key, last_key = self.key_prefix + conversation_id, self.last_ticket_prefix + conversation_id

        def attempt(pipe) -> Result:
            stored, last_stored = pipe.get(key), pipe.get(last_key)
            seconds, microseconds = pipe.time()
            now = seconds + microseconds / 1e6
            last_issued_ever = int(last_stored) if last_stored is not None else NO_TICKET_ISSUED
            tickets = TicketLock.from_dict(json.loads(stored)).tickets if stored else None
            lock = RedisClockTicketLock(conversation_id, tickets, now, last_issued_ever)
            result = change(lock)
            lock.remove_expired_tickets()
            pipe.multi()
            if lock.last_issued_ever != last_issued_ever:
                pipe.set(last_key, lock.last_issued_ever, ex=LAST_TICKET_TTL_S)
            if lock.tickets:
                expiry_s = max(t.expires for t in lock.tickets) - now + KEY_EXPIRY_MARGIN_S
                pipe.set(key, lock.dumps(), px=max(int(expiry_s * 1000), 1))
            elif stored:
                pipe.delete(key)
            return result

        return self.red.transaction(attempt, key, last_key, value_from_callable=True)
