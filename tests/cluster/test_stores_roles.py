"""Least privilege in the cluster's PostgreSQL: each part logs in as its own role (scripts/cluster/topology.py
`DATABASE_URLS`, scripts/cluster/stores.py `Postgres.provision`), and no process gets the superuser.

The role tests run a private PostgreSQL server of their own (provisioning changes server-wide roles and grants, so
not the session's `stores`), provisioned over databases an older cluster made as the superuser; the spec tests
start nothing.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy
from psycopg import errors
from sqlalchemy.engine import make_url

from bot import health
from bot.record_sinks import KIND_CALLS
from bot.records_db import TABLES, create_tables, read_documents, records_engine, row_for
from scripts.cluster.stores import DB_SUPERUSER, Postgres
from scripts.cluster.topology import (DATABASE_OWNERS, DATABASE_URL_VARIABLES, DATABASE_URLS, HEALTH_PROBE_ROLE,
                                      Cluster, connect_only_roles)
from scripts.processes import Processes, free_port
from settings import REPO_ROOT, Settings
from tests.cluster.conftest import engines_missing

RASA_PYTHON = REPO_ROOT / ".venv-rasa" / "bin" / "python"
SUPERUSER_PASSWORD = "the-superuser-password-no-part-may-hold"


# --- which part gets which URL (no processes) ---------------------------------------------------------------------

def cluster_specs(tmp_path: Path) -> tuple[Cluster, dict]:
    cluster = Cluster.from_settings(Settings.from_env({}), tmp_path)
    (tmp_path / "postgres.password").write_text(SUPERUSER_PASSWORD + "\n")  # as initdb's would be; no server
    leaky = {"PATH": os.environ.get("PATH", ""),  # a caller's environment with database URLs of its own
             "BANK_DB_URL": cluster.postgres.url("bank"), "TRACKER_DB_URL": cluster.postgres.url("tracker"),
             "CALL_RECORDS_DB_URL": cluster.postgres.url("records", "postgresql+psycopg")}
    return cluster, {spec.name: spec for spec in cluster.app_specs(leaky, agent_desk=True)}  # as `make cluster`


def cluster_urls(cluster: Cluster, env) -> dict[str, tuple[str, str]]:
    """variable -> (role, database) of every URL in `env` that points at the cluster's PostgreSQL."""
    found = {}
    for name, value in env.items():
        if "://" in value and f"@127.0.0.1:{cluster.layout.postgres}/" in value:
            url = make_url(value)
            assert url.password == cluster.postgres.password_of(url.username)
            found[name] = (url.username, url.database)
    return found


def test_each_part_gets_only_its_own_database_urls(tmp_path):
    cluster, specs = cluster_specs(tmp_path)
    kinds = {kind: [name for name in specs if name.startswith(kind)] for kind in ("gateway", "rasa", "actions")}
    assert all(kinds.values()) and {"haproxy", "kamailio", "agent-desk"} <= set(specs)
    for name, spec in specs.items():
        assert not any(SUPERUSER_PASSWORD in value for value in spec.env.values()), name
        assert not any(f"//{DB_SUPERUSER}:" in value for value in spec.env.values()), name
    expected = {
        "gateway": {"CALL_RECORDS_DB_URL": ("ivr_records", "records"), "TRACKER_DB_URL": ("ivr_gateway", "tracker"),
                    "BANK_DB_URL": ("ivr_gateway", "bank")},
        "rasa": {"TRACKER_DB_URL": ("ivr_rasa", "tracker")},
        "actions": {"BANK_DB_URL": ("ivr_bank", "bank")},
    }
    for kind, names in kinds.items():
        for name in names:
            assert cluster_urls(cluster, specs[name].env) == expected[kind], name
    for name in ("haproxy", "kamailio", "agent-desk"):
        assert cluster_urls(cluster, specs[name].env) == {}
        assert not DATABASE_URL_VARIABLES & set(specs[name].env)
    assert specs["gateway1"].env["CALL_RECORDS_DB_URL"].startswith("postgresql+psycopg://")


def test_the_gateways_share_one_caller_key_secret_and_nothing_else_gets_it(tmp_path):
    """Repeat calls (the resolution rate's 24-hour rule) match across gateways only under one key."""
    cluster, specs = cluster_specs(tmp_path)
    secrets_seen = {name: spec.env.get("CALLER_KEY_SECRET") for name, spec in specs.items()}
    gateway_secrets = {secret for name, secret in secrets_seen.items() if name.startswith("gateway")}
    assert len(gateway_secrets) == 1 and len(next(iter(gateway_secrets))) >= 32
    assert all(secret is None for name, secret in secrets_seen.items() if not name.startswith("gateway"))
    assert stat.S_IMODE((tmp_path / "caller-key.secret").stat().st_mode) == 0o600
    assert cluster.caller_key_secret({}) in gateway_secrets  # stable: made once
    operator = {spec.name: spec for spec in cluster.app_specs({"CALLER_KEY_SECRET": "the-operators-own-secret"})}
    assert operator["gateway1"].env["CALLER_KEY_SECRET"] == "the-operators-own-secret"
    assert "CALLER_KEY_SECRET" not in operator["kamailio"].env and "CALLER_KEY_SECRET" not in operator["rasa1"].env


def test_a_gateway_holds_no_role_that_owns_the_bank_or_the_tracker():
    gateway_roles = {url.role for url in DATABASE_URLS["gateway"].values()}
    assert DATABASE_OWNERS["bank"] not in gateway_roles and DATABASE_OWNERS["tracker"] not in gateway_roles
    assert HEALTH_PROBE_ROLE not in DATABASE_OWNERS.values()
    assert connect_only_roles() == {"tracker": [HEALTH_PROBE_ROLE], "bank": [HEALTH_PROBE_ROLE]}
    assert DB_SUPERUSER not in {url.role for urls in DATABASE_URLS.values() for url in urls.values()}


def test_role_passwords_are_private_distinct_and_stable(tmp_path):
    cluster, _ = cluster_specs(tmp_path)
    postgres = cluster.postgres
    assert stat.S_IMODE(postgres.role_passwords_file.stat().st_mode) == 0o600
    passwords = {role: postgres.password_of(role) for role in ("ivr_rasa", "ivr_bank", "ivr_records", "ivr_gateway")}
    assert len(set(passwords.values())) == 4 and SUPERUSER_PASSWORD not in passwords.values()
    assert Postgres(postgres.datadir, postgres.port).password_of("ivr_bank") == passwords["ivr_bank"]
    with pytest.raises(ValueError):
        postgres.password_of("x'; DROP ROLE ivr; --")


# --- the roles in a real server ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def provisioned():
    """A private server where an older cluster (everything as the superuser) left a bank table, then provisioned
    twice, as two `make cluster` starts would."""
    missing = engines_missing()
    if missing:
        pytest.fail(missing)
    workdir = Path(tempfile.mkdtemp(prefix="ivr-roles-"))
    workdir.chmod(0o755)  # as root, PostgreSQL runs as the postgres user
    postgres = Postgres(workdir / "postgres", free_port())
    postgres.initialise()
    running = Processes(specs={"postgres": postgres.spec(dict(os.environ))}, workdir=workdir)
    try:
        running.start("postgres")
        running.wait_ready("postgres", timeout_s=60)
        postgres.create_databases("bank", "tracker")
        with connect(postgres, "bank", DB_SUPERUSER) as conn:
            conn.execute("CREATE TABLE legacy_accounts (id serial PRIMARY KEY, balance numeric NOT NULL)")
            conn.execute("INSERT INTO legacy_accounts (balance) VALUES (100)")
            conn.execute("CREATE SEQUENCE legacy_numbers")  # a sequence of no table's, like Rasa's events_seq
        for _ in range(2):
            postgres.provision(DATABASE_OWNERS, connect_only_roles())
        yield postgres
    finally:
        running.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


def connect(postgres: Postgres, database: str, role: str) -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=postgres.port, dbname=database, user=role,
                           password=postgres.password_of(role), connect_timeout=5, autocommit=True)


def refused(postgres: Postgres, database: str, role: str, statement: str) -> bool:
    with connect(postgres, database, role) as conn:
        try:
            conn.execute(statement)
        except errors.InsufficientPrivilege:
            return True
    return False


def cannot_connect(postgres: Postgres, database: str, role: str) -> bool:
    try:
        connect(postgres, database, role).close()
    except psycopg.OperationalError as error:
        return "permission denied" in str(error)
    return False


@pytest.mark.integration
def test_the_gateway_role_may_only_select_1_on_the_bank_and_the_tracker(provisioned):
    for database in ("bank", "tracker"):
        with connect(provisioned, database, HEALTH_PROBE_ROLE) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert refused(provisioned, database, HEALTH_PROBE_ROLE, "CREATE TABLE public.mine (x int)")
        assert refused(provisioned, database, HEALTH_PROBE_ROLE, "CREATE TEMP TABLE mine (x int)")
    assert refused(provisioned, "bank", HEALTH_PROBE_ROLE, "SELECT * FROM public.legacy_accounts LIMIT 1")
    assert refused(provisioned, "bank", HEALTH_PROBE_ROLE, "UPDATE public.legacy_accounts SET balance = 0")
    assert refused(provisioned, "bank", HEALTH_PROBE_ROLE, "INSERT INTO public.legacy_accounts (balance) VALUES (1)")
    for database in ("records", "postgres", "template1"):
        assert cannot_connect(provisioned, database, HEALTH_PROBE_ROLE), database


@pytest.mark.integration
def test_the_gateways_health_probes_pass_as_the_gateway_role(provisioned):
    """bot/health.py's own engines (SQLAlchemy on psycopg 3, from the Rasa venv's `postgresql://` URLs): connecting
    and `SELECT 1` need nothing the role lacks, not even a usable schema."""
    for database, setting in (("bank", "BANK_DB_URL"), ("tracker", "TRACKER_DB_URL")):
        url = provisioned.url(database, role=DATABASE_URLS["gateway"][setting].role)
        engine = health._connect_only_engine(url, 3.0, setting, "")
        try:
            health._select_one(engine)
            health._select_one(engine)  # a pooled connection, pre-pinged
        finally:
            engine.dispose()


@pytest.mark.integration
def test_the_bank_owner_keeps_an_older_clusters_tables_and_makes_new_ones(provisioned):
    owner = DATABASE_OWNERS["bank"]
    with connect(provisioned, "bank", owner) as conn:
        conn.execute("INSERT INTO legacy_accounts (balance) VALUES (5)")  # its sequence came along
        assert conn.execute("SELECT sum(balance) FROM legacy_accounts").fetchone() == (105,)
        assert conn.execute("SELECT nextval('legacy_numbers')").fetchone() == (1,)
        conn.execute("CREATE TABLE IF NOT EXISTS accounts_new (id serial PRIMARY KEY, owner text)")
        conn.execute("INSERT INTO accounts_new (owner) VALUES ('张三')")
        assert conn.execute("SELECT owner FROM accounts_new").fetchone() == ("张三",)
    assert cannot_connect(provisioned, "tracker", owner) and cannot_connect(provisioned, "records", owner)


@pytest.mark.integration
def test_the_tracker_owner_makes_and_writes_its_tables(provisioned):
    owner = DATABASE_OWNERS["tracker"]
    with connect(provisioned, "tracker", owner) as conn:
        # like Rasa's events table: a sequence of its own and an index
        conn.execute("CREATE SEQUENCE IF NOT EXISTS turns_seq")
        conn.execute("CREATE TABLE IF NOT EXISTS turns (id integer PRIMARY KEY DEFAULT nextval('turns_seq'), "
                     "sender_id varchar(255) NOT NULL, data text)")
        conn.execute("CREATE INDEX IF NOT EXISTS ix_turns_sender_id ON turns (sender_id)")
        conn.execute("INSERT INTO turns (sender_id, data) VALUES ('call-1', '{}')")
        assert conn.execute("SELECT count(*) FROM turns").fetchone() == (1,)
    assert refused(provisioned, "tracker", HEALTH_PROBE_ROLE, "SELECT * FROM public.turns")
    assert cannot_connect(provisioned, "bank", owner)


@pytest.mark.integration
def test_rasa_and_the_bank_make_their_own_tables_as_their_roles(provisioned):
    """The real code, in the Rasa venv: the bank's tables and seed (actions/bank/store.py) as the bank's owner,
    Rasa's events table (dialogue/tracker_store.py) as the tracker's."""
    bank_url, tracker_url = (provisioned.url(database, role=DATABASE_OWNERS[database])
                             for database in ("bank", "tracker"))
    script = ("import sys\n"
              "from actions.bank import BankService\n"
              "from dialogue.tracker_store import create_postgresql_table\n"
              "from settings import BankSettings\n"
              "bank = BankService(sys.argv[1], BankSettings())\n"
              "assert bank.ping()\n"
              "bank.close()\n"
              "create_postgresql_table(sys.argv[2])\n")
    done = subprocess.run([str(RASA_PYTHON), "-c", script, bank_url, tracker_url], cwd=REPO_ROOT, timeout=180,
                          env=dict(os.environ, BANK_PIN_HASH_ITERATIONS="1000", RASA_TELEMETRY_ENABLED="false"),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    owners = {}
    for database in ("bank", "tracker"):
        with connect(provisioned, database, DB_SUPERUSER) as conn:
            owners[database] = dict(conn.execute("SELECT tablename, tableowner FROM pg_tables "
                                                 "WHERE schemaname = 'public'").fetchall())
    assert owners["tracker"]["events"] == DATABASE_OWNERS["tracker"]
    assert len(owners["bank"]) > 1 and set(owners["bank"].values()) == {DATABASE_OWNERS["bank"]}
    table = next(name for name in owners["bank"] if name != "legacy_accounts")
    assert refused(provisioned, "bank", HEALTH_PROBE_ROLE, f"SELECT * FROM public.{table} LIMIT 1")


@pytest.mark.integration
def test_the_records_role_makes_writes_and_reads_the_call_records(provisioned):
    role = DATABASE_OWNERS["records"]
    engine = records_engine(provisioned.url("records", "postgresql+psycopg", role=role))
    try:
        create_tables(engine)
        create_tables(engine)  # every gateway at every start
        document = {"call_id": f"sip-{uuid.uuid4().hex}", "caller_number": "13800138000", "started_at": 1.0,
                    "ended_at": 2.0, "outcome": "completed"}
        with engine.begin() as conn:
            conn.execute(sqlalchemy.insert(TABLES[KIND_CALLS]), [row_for(KIND_CALLS, uuid.uuid4().hex, document)])
        assert [d["call_id"] for d in read_documents(engine, KIND_CALLS)] == [document["call_id"]]
    finally:
        engine.dispose()


@pytest.mark.integration
def test_no_application_role_has_powers_beyond_its_databases(provisioned):
    roles = sorted({*DATABASE_OWNERS.values(), HEALTH_PROBE_ROLE})
    with connect(provisioned, "postgres", DB_SUPERUSER) as conn:
        rows = conn.execute("SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
                            "rolcanlogin FROM pg_roles WHERE rolname = ANY(%s) ORDER BY rolname", [roles]).fetchall()
    assert rows == [(role, False, False, False, False, False, True) for role in roles]
