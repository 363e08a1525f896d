"""The Rasa tier's process specs and HAProxy configuration, without starting anything but `haproxy -c`."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import pytest

from scripts.cluster.haproxy import HAPROXY_CFG, haproxy_spec, server_lists
from scripts.cluster.rasa_tier import CLUSTER_ENDPOINTS, rasa_tier_specs


@dataclass(frozen=True)
class Ports:
    rasa: tuple[int, ...] = (5006, 5007, 5008)
    actions: tuple[int, ...] = (5056, 5057, 5058)
    actions_front: int = 5055
    rasa_front: int = 5005


STORES = {"TRACKER_DB_URL": "postgresql://ivr:pw@127.0.0.1:5433/tracker",
          "BANK_DB_URL": "postgresql://ivr:pw@127.0.0.1:5433/bank", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": "6390"}


def test_the_configuration_with_generated_servers_is_valid(tmp_path):
    ports = Ports()
    spec = haproxy_spec(tmp_path, ports.rasa_front, ports.rasa, ports.actions_front, ports.actions, {})
    assert spec.argv[1] == "-db" and spec.ready_url == "tcp://127.0.0.1:5005"
    checked = subprocess.run([spec.argv[0], "-c", *spec.argv[2:]], env=dict(spec.env), capture_output=True,
                             text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    servers = (tmp_path / "servers.cfg").read_text()
    assert servers == server_lists(ports.rasa, ports.actions)
    assert re.findall(r"server (\S+) (\S+)", servers) == [
        ("rasa1", "127.0.0.1:5006"), ("rasa2", "127.0.0.1:5007"), ("rasa3", "127.0.0.1:5008"),
        ("actions1", "127.0.0.1:5056"), ("actions2", "127.0.0.1:5057"), ("actions3", "127.0.0.1:5058")]


def test_timeouts_follow_the_turn_budget(tmp_path):
    default = haproxy_spec(tmp_path, 5005, [5006], 5055, [5056], {}).env
    assert (default["HAPROXY_RASA_TIMEOUT"], default["HAPROXY_ACTIONS_TIMEOUT"]) == ("8000ms", "4000ms")
    slower = haproxy_spec(tmp_path, 5005, [5006], 5055, [5056], {"ACTION_TIMEOUT_S": "5"}).env
    # the gateway waits the turn budget (2 actions × 5 s) + 1 s; the proxy 1 s more; an action 5 s + 1 s
    assert (slower["HAPROXY_RASA_TIMEOUT"], slower["HAPROXY_ACTIONS_TIMEOUT"]) == ("12000ms", "6000ms")


def test_only_connections_never_made_are_retried():
    """A POST that reached a Rasa server must never be replayed on another (a turn, maybe a transfer, twice)."""
    directives = [line.split("#")[0].split() for line in HAPROXY_CFG.read_text().splitlines()]
    assert [d for d in directives if d[:1] == ["retry-on"]] == [["retry-on", "conn-failure"]]
    assert ["option", "http-server-close"] in directives
    assert not [d for d in directives if d[:2] == ["option", "http-buffer-request"] or d[:1] == ["http-reuse"]]


def test_rasa_tier_specs():
    specs = {spec.name: spec for spec in rasa_tier_specs(Ports(), STORES)}
    assert list(specs) == ["actions1", "actions2", "actions3", "rasa1", "rasa2", "rasa3"]
    actions, rasa = specs["actions2"], specs["rasa3"]
    assert actions.argv[-4:] == ("--actions", "actions", "-p", "5057")
    assert actions.ready_url == "http://127.0.0.1:5057/health"
    assert actions.env["BANK_DB_URL"] == STORES["BANK_DB_URL"]
    assert rasa.argv[rasa.argv.index("-p") + 1] == "5008" and rasa.ready_url == "http://127.0.0.1:5008/"
    assert rasa.argv[rasa.argv.index("--endpoints") + 1] == CLUSTER_ENDPOINTS
    assert rasa.env["ACTION_SERVER_URL"] == "http://127.0.0.1:5055/webhook"  # through HAProxy's front
    assert (rasa.env["TRACKER_DB_URL"], rasa.env["REDIS_HOST"], rasa.env["REDIS_PORT"]) == (
        STORES["TRACKER_DB_URL"], "127.0.0.1", "6390")


def test_a_cluster_without_redis_is_refused():
    with pytest.raises(ValueError, match="REDIS_HOST"):
        rasa_tier_specs(Ports(), {**STORES, "REDIS_HOST": ""})
