"""The Rasa tier of the cluster: N action servers and N Rasa servers, each the `make run` process (scripts/stack.py
`build_specs`, the same command line) on its own port, with the cluster's shared stores.

- An action server is stateless: any of them can run any action, on the one bank database (BANK_DB_URL, as the
  bank's owner role).
- A Rasa server runs with deploy/rasa/endpoints.cluster.yml: the conversations in PostgreSQL (TRACKER_DB_URL), the
  conversation locks in Redis (REDIS_HOST, REDIS_PORT), and its actions through HAProxy's action front, so it
  reaches whichever action server is up.
HAProxy (scripts/cluster/haproxy.py) fronts both; the gateways know only its Rasa front.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Protocol, Sequence

from scripts.stack import ChildSpec, build_specs, child_env
from settings import Settings

CLUSTER_ENDPOINTS = "deploy/rasa/endpoints.cluster.yml"  # relative to the repository, the children's cwd


class TierPorts(Protocol):
    """Where the tier listens (scripts/cluster/topology.py `Layout` is one)."""

    rasa: Sequence[int]
    actions: Sequence[int]
    actions_front: int


def rasa_name(index: int) -> str:
    return f"rasa{index + 1}"


def actions_name(index: int) -> str:
    return f"actions{index + 1}"


def rasa_tier_specs(ports: TierPorts, env: Mapping[str, str], *, rasa_env: Mapping[str, str] = {},
                    actions_env: Mapping[str, str] = {}) -> list[ChildSpec]:
    """The action servers, then the Rasa servers (start order: a Rasa server's actions should be reachable when
    it takes its first turn). `env` holds what both share (REDIS_HOST, REDIS_PORT, ...); `rasa_env` and
    `actions_env` are added for one kind only: the cluster gives each its own database URL (TRACKER_DB_URL to Rasa,
    BANK_DB_URL to the action servers, scripts/cluster/topology.py `DATABASE_URLS`)."""
    if not ports.rasa or not ports.actions:
        raise ValueError("the Rasa tier needs at least one Rasa server and one action server")
    if not Settings.from_env(dict(env)).rasa.redis_host:
        raise ValueError("REDIS_HOST is empty: Rasa servers of a cluster share their conversation locks in Redis")
    specs = []
    for index, port in enumerate(ports.actions):
        spec = _stack_spec("actions", {**env, **actions_env, "ACTIONS_PORT": str(port)})
        specs.append(dataclasses.replace(spec, name=actions_name(index)))
    for index, port in enumerate(ports.rasa):
        # ACTIONS_PORT is the front: child_env makes ACTION_SERVER_URL of it, which the endpoints file reads.
        spec = _stack_spec("rasa", {**env, **rasa_env, "RASA_PORT": str(port),
                                    "ACTIONS_PORT": str(ports.actions_front)})
        specs.append(dataclasses.replace(spec, name=rasa_name(index), argv=with_endpoints(spec.argv)))
    return specs


def with_endpoints(argv: Sequence[str], endpoints: str = CLUSTER_ENDPOINTS) -> tuple[str, ...]:
    """`rasa run` argv with its --endpoints file replaced."""
    argv = list(argv)
    argv[argv.index("--endpoints") + 1] = endpoints
    return tuple(argv)


def _stack_spec(name: str, env: Mapping[str, str]) -> ChildSpec:
    settings = Settings.from_env(dict(env))
    return next(spec for spec in build_specs(settings, child_env(settings, env)) if spec.name == name)
