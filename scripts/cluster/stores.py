"""The cluster's shared state on real engines: a private PostgreSQL server and a private Redis server on loopback.

Both run in the foreground under the supervisor (scripts/stack.py), with their data in the cluster's work directory,
so a `make cluster` never touches a system-wide PostgreSQL or Redis. PostgreSQL refuses to run as root: as root, its
commands run as the `postgres` user the Debian package creates (setpriv), and the data directory is theirs.

Least privilege in PostgreSQL: initdb makes the superuser `ivr`, which only administers (`provision`, tests); every
application process logs in as a role of its own (`Postgres.provision`: a database's owner, or a role that may only
connect), each with its own random password. scripts/cluster/topology.py says which part gets which.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from scripts.stack import ChildSpec

LOOPBACK = "127.0.0.1"
POSTGRES_SYSTEM_USER = "postgres"
DB_SUPERUSER = "ivr"
SQL_NAME = re.compile(r"[a-z_][a-z0-9_]*")  # role and database names go into SQL unquoted-safe


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

    @property
    def role_passwords_file(self) -> Path:
        """The application roles' passwords, {role: password} in JSON, 0600 beside the superuser's."""
        return self.datadir.parent / "postgres.roles.json"

    def password_of(self, role: str) -> str:
        """The superuser's password, or an application role's: made on first ask and kept in role_passwords_file
        (`provision` sets it in the server)."""
        if role == DB_SUPERUSER:
            return self.password
        _check_name(role)
        passwords = json.loads(self.role_passwords_file.read_text()) if self.role_passwords_file.exists() else {}
        if role not in passwords:
            passwords[role] = secrets.token_urlsafe(24)
            write_private(self.role_passwords_file, json.dumps(passwords, indent=1, sort_keys=True) + "\n")
        return passwords[role]

    def url(self, database: str, driver: str = "postgresql", role: str = DB_SUPERUSER) -> str:
        """Database `database` as `role` (the superuser unless told: administration and tests only)."""
        return f"{driver}://{role}:{self.password_of(role)}@{LOOPBACK}:{self.port}/{database}"

    def initialise(self) -> None:
        """initdb once: a superuser `ivr` with a random password (kept 0600 beside the data directory)."""
        if (self.datadir / "PG_VERSION").exists():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        if not self.password_file.exists():
            write_private(self.password_file, secrets.token_urlsafe(24) + "\n")
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
        """CREATE DATABASE for each missing name, owned by the superuser (the server must be up): scratch databases
        for tests. The cluster's own databases come from `provision`."""
        self._psql("postgres", "".join(_create_database(_check_name(name), DB_SUPERUSER) for name in names))

    def provision(self, owners: Mapping[str, str], connect_only: Mapping[str, Iterable[str]] = {}) -> None:
        """The cluster's databases and roles, idempotently (the server must be up; run at every start):

        - every role named here logs in with its password (`password_of`) and nothing more: no superuser,
          CREATEDB, CREATEROLE, replication or row-security bypass;
        - `owners[database]` owns the database, its schema `public` and everything in it (a database an older
          cluster made as the superuser is handed over, its tables and sequences too), so it creates and writes its
          own tables;
        - `connect_only[database]`: roles that may connect and nothing else (no use of schema `public`: a
          `SELECT 1` works, reading or making a table does not);
        - PUBLIC (every role) may neither connect to these databases, use their schema `public`, nor connect to the
          maintenance databases `postgres` and `template1`.
        The superuser keeps everything, for administration."""
        allowed = {database: {*roles} - {owners.get(database)} for database, roles in connect_only.items()}
        roles = sorted({*owners.values(), *(role for roles in allowed.values() for role in roles)})
        script = ["REVOKE CONNECT ON DATABASE postgres, template1 FROM PUBLIC;\n"]
        for role in roles:
            password = self.password_of(role)  # token_urlsafe: letters, digits, - and _ only
            script.append(f"SELECT 'CREATE ROLE {role}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
                          f"'{role}')\n\\gexec\n"
                          f"ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                          f"NOBYPASSRLS INHERIT PASSWORD '{password}';\n")
        for database, owner in owners.items():
            others = [role for role in roles if role != owner]
            script += [_create_database(_check_name(database), owner),
                       f"ALTER DATABASE {database} OWNER TO {owner};\n",
                       f"REVOKE ALL ON DATABASE {database} FROM PUBLIC;\n",
                       *(f"REVOKE ALL ON DATABASE {database} FROM {role};\n" for role in others),
                       *(f"GRANT CONNECT ON DATABASE {database} TO {role};\n"
                         for role in sorted(allowed.get(database, ())))]
        self._psql("postgres", "".join(script))
        for database, owner in owners.items():
            self._psql(database, _hand_over(owner), single_transaction=True)

    def _psql(self, database: str, script: str, single_transaction: bool = False) -> None:
        """Run `script` as the superuser on its standard input (no password on a command line)."""
        argv = [str(postgres_bin_dir() / "psql"), "-h", LOOPBACK, "-p", str(self.port), "-U", DB_SUPERUSER,
                "-d", database, "-v", "ON_ERROR_STOP=1", "-qAt", *(["-1"] if single_transaction else []), "-f", "-"]
        done = subprocess.run(argv, input=script, env=dict(os.environ, PGPASSWORD=self.password),
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"psql on database {database} failed: {done.stderr.strip()}")

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


def _check_name(name: str) -> str:
    if not SQL_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a plain PostgreSQL name (lower-case letters, digits and _)")
    return name


def _create_database(name: str, owner: str) -> str:
    """psql: CREATE DATABASE unless it exists (\\gexec runs the statement the query returns, if any)."""
    return (f"SELECT 'CREATE DATABASE {name} OWNER {owner}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = '{name}')\n\\gexec\n")


def _hand_over(owner: str) -> str:
    """In one database: schema `public` and what the superuser made in it (an older cluster ran everything as the
    superuser) become `owner`'s; PUBLIC loses its use of the schema. Tables first: their sequences follow them."""
    return f"""ALTER SCHEMA public OWNER TO {owner};
REVOKE ALL ON SCHEMA public FROM PUBLIC;
DO $$
DECLARE item record;
BEGIN
  FOR item IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
              WHERE c.relnamespace = 'public'::regnamespace AND c.relowner = '{DB_SUPERUSER}'::regrole
                AND c.relkind IN ('r', 'p', 'v', 'm', 'f') LOOP
    EXECUTE format('ALTER %s %s OWNER TO {owner}', CASE item.relkind WHEN 'v' THEN 'VIEW'
      WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, item.name);
  END LOOP;
  FOR item IN SELECT c.oid::regclass AS name FROM pg_class c
              WHERE c.relnamespace = 'public'::regnamespace AND c.relowner = '{DB_SUPERUSER}'::regrole
                AND c.relkind = 'S' LOOP
    EXECUTE format('ALTER SEQUENCE %s OWNER TO {owner}', item.name);
  END LOOP;
  FOR item IN SELECT t.oid::regtype AS name, t.typtype FROM pg_type t
              WHERE t.typnamespace = 'public'::regnamespace AND t.typowner = '{DB_SUPERUSER}'::regrole
                AND t.typtype IN ('e', 'd') LOOP
    EXECUTE format('ALTER %s %s OWNER TO {owner}', CASE item.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
                   item.name);
  END LOOP;
END $$;
"""


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only, from the first byte (no window at the umask's mode)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.replace(temporary, path)


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
