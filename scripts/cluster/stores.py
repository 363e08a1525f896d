"""The cluster's shared state on real engines: a private PostgreSQL server and a private Redis server on loopback.

Both run in the foreground under the supervisor (scripts/stack.py), with their data in the cluster's work directory,
so a `make cluster` never touches a system-wide PostgreSQL or Redis. PostgreSQL refuses to run as root: as root, its
commands run as the `postgres` user the Debian package creates (setpriv), and the data directory is theirs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from scripts.stack import ChildSpec

LOOPBACK = "127.0.0.1"
POSTGRES_SYSTEM_USER = "postgres"
DB_SUPERUSER = "ivr"


def postgres_bin_dir() -> Path:
    """The server binaries of the newest PostgreSQL the Debian packages installed (not on PATH there)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if candidates:
        return candidates[-1].parent
    found = shutil.which("postgres")
    if found is None:
        raise FileNotFoundError("no PostgreSQL server binaries: install the Debian package `postgresql`")
    return Path(found).parent


def as_postgres_user(argv: list[str]) -> list[str]:
    # setpriv execs the command itself (runuser would stay as its parent and kill it on the stop signal).
    drop = ["setpriv", f"--reuid={POSTGRES_SYSTEM_USER}", f"--regid={POSTGRES_SYSTEM_USER}", "--init-groups"]
    return [*drop, *argv] if os.geteuid() == 0 else argv


@dataclass(frozen=True)
class Postgres:
    """One PostgreSQL server: password login over TCP on loopback only, its socket inside the data directory."""

    datadir: Path
    port: int

    @property
    def password_file(self) -> Path:
        return self.datadir.parent / "postgres.password"

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{DB_SUPERUSER}:{self.password}@{LOOPBACK}:{self.port}/{database}"

    def initialise(self) -> None:
        """initdb once: a superuser `ivr` with a random password (kept 0600 beside the data directory)."""
        if (self.datadir / "PG_VERSION").exists():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        if not self.password_file.exists():
            self.password_file.write_text(secrets.token_urlsafe(24) + "\n")
            self.password_file.chmod(0o600)
        pwfile = self.datadir.parent / ".initdb-password"  # initdb reads it as the postgres user; removed after
        shutil.copyfile(self.password_file, pwfile)
        self._hand_to_postgres_user(self.datadir, pwfile)
        self._check_reachable()
        try:
            subprocess.run(as_postgres_user([
                str(postgres_bin_dir() / "initdb"), "-D", str(self.datadir), "-U", DB_SUPERUSER, "-E", "UTF8",
                "--locale=C", "--auth-local=peer", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]),
                check=True, stdout=subprocess.DEVNULL)
        finally:
            pwfile.unlink(missing_ok=True)

    def spec(self, env: Mapping[str, str]) -> ChildSpec:
        argv = as_postgres_user([str(postgres_bin_dir() / "postgres"), "-D", str(self.datadir), "-p", str(self.port),
                                 "-c", f"listen_addresses={LOOPBACK}", "-c", f"unix_socket_directories={self.datadir}"])
        return ChildSpec("postgres", tuple(argv), f"tcp://{LOOPBACK}:{self.port}", env)

    def create_databases(self, *names: str) -> None:
        """CREATE DATABASE for each missing name (the server must be up)."""
        env = dict(os.environ, PGPASSWORD=self.password)
        base = [str(postgres_bin_dir() / "psql"), "-h", LOOPBACK, "-p", str(self.port), "-U", DB_SUPERUSER,
                "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt"]
        for name in names:
            exists = subprocess.run([*base, "-c", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
                                    env=env, check=True, capture_output=True, text=True).stdout.strip()
            if not exists:
                subprocess.run([*base, "-c", f'CREATE DATABASE "{name}"'], env=env, check=True,
                               stdout=subprocess.DEVNULL)

    def _check_reachable(self) -> None:
        """As root, the postgres user must be able to reach the data directory through every parent (a clone under
        a 0700 home cannot): say so plainly instead of initdb's "Permission denied"."""
        if os.geteuid() == 0 and subprocess.run(as_postgres_user(["test", "-w", str(self.datadir)])).returncode:
            raise PermissionError(f"the {POSTGRES_SYSTEM_USER} user cannot reach {self.datadir}: put the cluster's "
                                  "files where it can, e.g. CLUSTER_DIR=/var/tmp/ivr-cluster")

    @staticmethod
    def _hand_to_postgres_user(*paths: Path) -> None:
        if os.geteuid() == 0:
            for path in paths:
                shutil.chown(path, POSTGRES_SYSTEM_USER, POSTGRES_SYSTEM_USER)
                path.chmod(0o700 if path.is_dir() else 0o600)


@dataclass(frozen=True)
class Redis:
    """One Redis server for Rasa's lock store. Locks live seconds, so nothing is written to disk."""

    workdir: Path
    port: int

    def spec(self, env: Mapping[str, str]) -> ChildSpec:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = (shutil.which("redis-server") or "/usr/bin/redis-server", "--bind", LOOPBACK, "--port", str(self.port),
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "yes")
        return ChildSpec("redis", argv, f"tcp://{LOOPBACK}:{self.port}", env)
