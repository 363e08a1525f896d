"""Service records of calls: complaint and callback work orders, and transfers to human queues (for reporting)."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from actions.bank import lookups
from actions.bank.errors import BankUnavailable
from actions.bank.models import HandoffRecord, WorkOrder
from actions.bank.normalise import optional_text, required_text
from actions.bank.store import BankStore, bank_now, reference_number
from actions.bank.views import WorkOrderKind

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2000


class RecordService:
    """Work orders and handoff records, on the shared store."""

    def __init__(self, store: BankStore) -> None:
        self._store = store

    def create_work_order(
        self,
        kind: WorkOrderKind | str,
        description: str,
        call_id: str,
        customer_ref: str | None = None,
        request_id: str | None = None,
    ) -> str:
        """Open a complaint or callback ticket; returns its digits-only number. Idempotent per `request_id`."""
        if kind not in list(WorkOrderKind):
            raise ValueError(f"work order kind must be one of {[k.value for k in WorkOrderKind]}, not {kind!r}")
        call_id = required_text(call_id, "call_id", 128)
        request_id = optional_text(request_id, 128)
        try:
            return self._create_work_order(WorkOrderKind(kind), description, call_id, customer_ref, request_id)
        except IntegrityError:
            # a concurrent retry with the same request id committed first: its ticket is the answer
            with self._store.transaction(read_only=True) as session:
                ticket = session.scalars(select(WorkOrder.ticket).where(WorkOrder.request_id == request_id)).first()
            if ticket is None:
                raise BankUnavailable("could not store the work order") from None
            return ticket

    def record_handoff(
        self,
        call_id: str,
        queue: str,
        reason: str,
        intent: str | None,
        verified: bool,
        customer_ref: str | None,
    ) -> None:
        """Keep a record of a transfer to a human queue, for reporting."""
        with self._store.transaction() as session:
            session.add(HandoffRecord(
                call_id=required_text(call_id, "call_id", 128),
                queue=required_text(queue, "queue", 32),
                reason=required_text(reason, "reason", 64),
                intent=optional_text(intent, 64),
                verified=bool(verified),
                customer_ref=optional_text(customer_ref, 16),
                created_at=bank_now(),
            ))

    def _create_work_order(
        self, kind: WorkOrderKind, description: str, call_id: str, customer_ref: str | None, request_id: str | None
    ) -> str:
        with self._store.transaction() as session:
            if request_id is not None:
                ticket = session.scalars(select(WorkOrder.ticket).where(WorkOrder.request_id == request_id)).first()
                if ticket is not None:
                    return ticket
            customer_id = lookups.customer(session, customer_ref).id if customer_ref else None
            now = bank_now()
            order = WorkOrder(kind=kind.value, description=(description or "").strip()[:MAX_TEXT_CHARS],
                              call_id=call_id, customer_id=customer_id, request_id=request_id, created_at=now)
            session.add(order)
            session.flush()
            order.ticket = reference_number("work_order", now, order.id)
            log.info("work order %s (%s) opened", order.ticket, kind)  # the line names its call (call_logging.py)
            return order.ticket
