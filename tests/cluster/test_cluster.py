"""The minimal cluster, every part a real process: Kamailio + 2 gateways + HAProxy + 2 Rasa + 2 action servers +
Redis + PostgreSQL, started with the same specs `make cluster` uses (scripts/cluster/topology.py) on free ports.

Calls are real SIP calls with audio (sipp, G.711 from a pcap) through Kamailio: they are dispatched to both
gateways, and a gateway killed mid-run is skipped. The Rasa tier's checks (a conversation crossing Rasa servers, a
Rasa server killed) are in test_rasa_tier.py, on the same cluster (the session's `cluster` fixture).
"""

from __future__ import annotations

import time

import pytest

from scripts.cluster.topology import gateway_name

pytestmark = pytest.mark.integration


def test_calls_through_kamailio_reach_both_gateways(cluster):
    result = cluster.sip_calls(calls=4, rate=1)
    assert (result.successful, result.failed) == (4, 0)
    answered = until(lambda: [cluster.calls_finished_by(i) for i in range(2)], lambda counts: sum(counts) == 4)
    assert sum(answered) == 4 and min(answered) >= 1, f"calls per gateway: {answered}"


def until(read, good, timeout_s: float = 10.0):
    """Read until `good(value)` or the timeout (a gateway counts a call once its BYE is answered); the last value."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while not good(value) and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    return value


def test_a_killed_gateway_is_skipped_within_5_s(cluster):
    """SIGKILL, as a host lost mid-day: Kamailio takes it out of the pool within 5 s (probing, or the first INVITE
    it leaves unanswered), and the calls offered right after the kill are all answered by the survivor."""
    log_mark = cluster.log_size("kamailio")
    before = cluster.calls_finished_by(1)
    cluster.kill(gateway_name(0))
    killed_at = time.monotonic()
    try:
        calls = cluster.start_sip_calls(calls=2, rate=1)
        marked_down = cluster.wait_log("kamailio", "dst-down", since=log_mark, timeout_s=10)
        result = calls.wait()
        assert marked_down is not None and marked_down - killed_at < 5, cluster.log_tail("kamailio")
        assert (result.successful, result.failed) == (2, 0), "calls offered after the kill failed"
        assert until(lambda: cluster.calls_finished_by(1), lambda count: count == before + 2) == before + 2
    finally:  # back in the pool for whatever runs next on the session's cluster
        up_mark = cluster.log_size("kamailio")
        cluster.start(gateway_name(0))
        cluster.wait_ready(gateway_name(0))
        cluster.wait_log("kamailio", "dst-up", since=up_mark, timeout_s=15)
