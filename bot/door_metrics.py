"""Prometheus metrics of calls by door, in the default registry (the gateway renders it at `/metrics`).

All per-door call metric definitions live here; `bot.call_session.CallSession` reports through the small functions
below for every door. Label values are bounded: doors are the constants of `bot.call_ids`, outcomes come from `bot.cdr`, and queues are
routing-table names only (anything else is counted as `unrouted`).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from bot.call_ids import DOOR_AUDIOSOCKET, DOOR_MEDIA_STREAM, DOOR_SIP, DOOR_WEB  # noqa: F401 (re-exported)
UNROUTED_QUEUE = "unrouted"

# Green-channel callers should reach a person within seconds; the tail shows a queue that is not answering.
_TIME_TO_AGENT_BUCKETS = (1, 2, 3, 5, 8, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300)

TIME_TO_AGENT_SECONDS = Histogram(
    "ivr_time_to_agent_seconds", "Call answered to the agent answering (the REFER's NOTIFY 200), for transfers that succeeded",
    ["queue", "green_channel"], buckets=_TIME_TO_AGENT_BUCKETS)
CALLS = Counter("ivr_telephony_calls_total", "Finished calls by door and outcome", ["door", "outcome"])
ACTIVE_CALLS = Gauge("ivr_telephony_active_calls", "Calls in progress by door", ["door"])
TRANSFERS = Counter("ivr_telephony_transfers_total", "Transfers to agents by queue and result", ["queue", "result"])
RTP_PACKETS_LOST = Counter("ivr_telephony_rtp_packets_lost_total", "RTP packets from callers that never arrived")


def call_started(door: str) -> None:
    ACTIVE_CALLS.labels(door).inc()


def call_ended(door: str, outcome: str, packets_lost: int = 0) -> None:
    ACTIVE_CALLS.labels(door).dec()
    CALLS.labels(door, outcome).inc()
    if packets_lost > 0:
        RTP_PACKETS_LOST.inc(packets_lost)


def transfer_finished(queue: str, ok: bool, green_channel: bool, time_to_agent_s: float | None) -> None:
    """One transfer's outcome; the time to agent only counts for transfers that reached the queue."""
    TRANSFERS.labels(queue, "ok" if ok else "failed").inc()
    if ok and time_to_agent_s is not None and time_to_agent_s >= 0:
        TIME_TO_AGENT_SECONDS.labels(queue, "true" if green_channel else "false").observe(time_to_agent_s)
