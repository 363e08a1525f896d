"""The cluster's real engines for tests: one private PostgreSQL and one Redis server per test session.

They run from scripts/cluster/stores.py, the same way `make cluster` runs them, on free ports in a temporary
directory, and are stopped in a `finally`. Tests that need them take the `stores` fixture.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scripts.cluster.stores import Postgres, Redis, postgres_bin_dir
from scripts.processes import Processes, free_port


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
