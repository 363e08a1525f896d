"""The cluster's real engines for tests, once per test session, stopped in a `finally`:

- `stores`: one private PostgreSQL and one Redis server (scripts/cluster/stores.py, as `make cluster` runs them),
  on free ports in a temporary directory; both venvs' tests use it (tests/conftest.py);
- `cluster`: the whole cluster (Kamailio, 2 gateways, HAProxy, 2 Rasa and 2 action servers, its own PostgreSQL and
  Redis), for tests/cluster/test_cluster.py and test_rasa_tier.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from scripts.cluster.stores import Postgres, Redis, postgres_bin_dir
from scripts.processes import Processes, free_port

if TYPE_CHECKING:
    from scripts.cluster.running import RunningCluster

CLUSTER_TOKEN = "cluster-test-token"


@dataclass(kw_only=True)
class Stores(Processes):
    postgres: Postgres
    redis: Redis
    databases: set[str] = field(default_factory=set)

    def database(self, name: str, driver: str = "postgresql") -> str:
        """The URL of database `name`, created on first use."""
        if name not in self.databases:
            self.postgres.create_databases(name)
            self.databases.add(name)
        return self.postgres.url(name, driver)


def engines_missing() -> str | None:
    try:
        postgres_bin_dir()
    except FileNotFoundError as error:
        return str(error)
    return None if shutil.which("redis-server") else "no redis-server: install the Debian package `redis-server`"


@pytest.fixture(scope="session")
def stores() -> Stores:
    missing = engines_missing()
    if missing:
        pytest.fail(missing)  # `make test` installs them (scripts/install_apt.sh): missing is a broken setup
    # Not under pytest's tmp_path: that is 0700 to root, and as root PostgreSQL runs as the postgres user.
    workdir = Path(tempfile.mkdtemp(prefix="ivr-stores-"))
    workdir.chmod(0o755)
    postgres, redis = Postgres(workdir / "postgres", free_port()), Redis(workdir / "redis", free_port())
    postgres.initialise()
    env = dict(os.environ)
    running = Stores(specs={"postgres": postgres.spec(env), "redis": redis.spec(env)}, workdir=workdir,
                     postgres=postgres, redis=redis)
    try:
        for name in ("postgres", "redis"):
            running.start(name)
        for name in ("postgres", "redis"):
            running.wait_ready(name, timeout_s=60)
        yield running
    finally:
        running.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster() -> Iterator["RunningCluster"]:
    """The whole cluster as `make cluster` runs it (scripts/cluster/running.py), on free ports, once per session:
    starting two Rasa servers takes 1-2 minutes on 2 cores. Tests that kill a part run last in their module."""
    # Imported here: the Rasa venv's tests load this conftest for `stores`, and the cluster runner is the gateway's
    from scripts.cluster.running import running_cluster
    from scripts.stack import find_model
    from settings import get_settings

    base = get_settings()
    if find_model(base.rasa.model_dir) is None:
        pytest.skip(f"no trained Rasa model in {base.rasa.model_dir}: run `make train` first")
    env = {**os.environ, "RASA_TOKEN": CLUSTER_TOKEN, "RASA_TIMEOUT_S": "15", "CLUSTER_PROBE_INTERVAL_S": "1",
           "BANK_PIN_HASH_ITERATIONS": "1000"}  # PIN checks fast: the tests verify many callers
    with running_cluster(env) as running:
        yield running
