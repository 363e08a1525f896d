"""The minimal cluster, every part a real process: Kamailio + 2 gateways + HAProxy + 2 Rasa + 2 action servers +
Redis + PostgreSQL, started with the same specs `make cluster` uses (scripts/cluster/topology.py) on free ports.

Calls are real SIP calls with audio (sipp, G.711 from a pcap) through Kamailio. The checks are the issue's:
calls are dispatched to both gateways, a conversation crosses Rasa servers, a gateway killed mid-run is skipped.
"""

from __future__ import annotations

import itertools
import os
import re
import time

import pytest

from scripts.cluster.running import RunningCluster, running_cluster
from scripts.cluster.topology import gateway_name
from scripts.stack import find_model
from settings import get_settings
from tests.integration.caller import Caller, joined

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> RunningCluster:
    base = get_settings()
    if find_model(base.rasa.model_dir) is None:
        pytest.skip(f"no trained Rasa model in {base.rasa.model_dir}: run `make train` first")
    env = {**os.environ, "RASA_TOKEN": "cluster-test-token", "RASA_TIMEOUT_S": "15", "CLUSTER_PROBE_INTERVAL_S": "1"}
    with running_cluster(env) as running:
        yield running


def test_calls_through_kamailio_reach_both_gateways(cluster):
    result = cluster.sip_calls(calls=4, rate=1)
    assert (result.successful, result.failed) == (4, 0)
    answered = until(lambda: [cluster.calls_finished_by(i) for i in range(2)], lambda counts: sum(counts) == 4)
    assert sum(answered) == 4 and min(answered) >= 1, f"calls per gateway: {answered}"


def test_a_conversation_crosses_rasa_servers(cluster):
    """Every turn goes to the other Rasa server, by its own port: the card is asked on one, the PIN checked on the
    other, the balance read on the first again. The shared tracker store and lock store make that one conversation."""
    wang = Caller(_EachServerInTurn(cluster), "13800000001", card="1234", pin="135790")
    wang.start()
    reply = wang.answer_prompts(wang.say("查余额"), done=lambda items: "余额" in joined(items))
    assert "余额" in joined(reply) and re.search(r"\d", joined(reply)), f"no balance read out: {wang.all_texts()}"


def until(read, good, timeout_s: float = 10.0):
    """Read until `good(value)` or the timeout (a gateway counts a call once its BYE is answered); the last value."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while not good(value) and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    return value


class _EachServerInTurn:
    """What tests.integration.caller.Caller needs of a stack (`send`), each turn to the next Rasa server."""

    def __init__(self, cluster: RunningCluster) -> None:
        self.cluster, self.ports = cluster, itertools.cycle(cluster.layout.rasa)

    def send(self, sender: str, message: str, caller: str = "", channel: str = "text") -> list[dict]:
        return self.cluster.send(sender, message, caller, rasa_port=next(self.ports))


def test_a_killed_gateway_is_skipped_within_5_s(cluster):
    """SIGKILL, as a host lost mid-day: Kamailio takes it out of the pool within 5 s (probing, or the first INVITE
    it leaves unanswered), and the calls offered right after the kill are all answered by the survivor."""
    log_mark = cluster.log_size("kamailio")
    before = cluster.calls_finished_by(1)
    cluster.kill(gateway_name(0))
    killed_at = time.monotonic()
    calls = cluster.start_sip_calls(calls=2, rate=1)
    marked_down = cluster.wait_log("kamailio", "dst-down", since=log_mark, timeout_s=10)
    result = calls.wait()
    assert marked_down is not None and marked_down - killed_at < 5, cluster.log_tail("kamailio")
    assert (result.successful, result.failed) == (2, 0), "calls offered after the kill failed"
    assert until(lambda: cluster.calls_finished_by(1), lambda count: count == before + 2) == before + 2
