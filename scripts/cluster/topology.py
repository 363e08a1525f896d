"""Where each part of the cluster listens, and the command line of each gateway.

Fronts keep the single-host ports (Kamailio on SIP_PORT, HAProxy on RASA_PORT and ACTIONS_PORT), so a client of
`make run` talks to `make cluster` unchanged; the instances behind a front take the ports just above it.
The gateways are the `make run` gateway (scripts/stack.py `build_specs`) with their own ports and the cluster's
shared stores; nothing in them knows it is one of several, apart from the address it advertises and the proxy it
trusts for caller identity.
Each part reaches PostgreSQL only where it must, as a role of its own (`DATABASE_URLS`); the superuser is for
administration only.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, NamedTuple

from scripts.cluster.haproxy import haproxy_spec
from scripts.cluster.kamailio import kamailio_spec
from scripts.cluster.rasa_tier import rasa_tier_specs
from scripts.cluster.stores import Postgres, Redis, write_private
from scripts.stack import LOOPBACK, ChildSpec, agent_desk_specs, build_specs, child_env
from settings import Settings

GATEWAY_SIP_OFFSET = 20  # gateway SIP ports from SIP_PORT + 20, two apart (5080, 5082, ...): room for TLS later


@dataclass(frozen=True)
class Layout:
    sip_front: int
    gateway_sip: tuple[int, ...]
    gateway_http: tuple[int, ...]
    gateway_audiosocket: tuple[int, ...]
    gateway_rtp: tuple[tuple[int, int], ...]  # each gateway its own slice of the RTP range: one host, one range
    rasa_front: int
    rasa: tuple[int, ...]
    actions_front: int
    actions: tuple[int, ...]
    postgres: int
    redis: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "Layout":
        cluster, sip, gateway = settings.cluster, settings.sip, settings.gateway
        n = cluster.gateways
        return cls(
            sip_front=sip.port,
            gateway_sip=tuple(sip.port + GATEWAY_SIP_OFFSET + 2 * i for i in range(n)),
            gateway_http=tuple(gateway.port + 1 + i for i in range(n)),
            gateway_audiosocket=tuple(gateway.audiosocket_port + 1 + i for i in range(n)),
            gateway_rtp=split_range(sip.rtp_port_min, sip.rtp_port_max, n),
            rasa_front=settings.rasa.port,
            rasa=tuple(settings.rasa.port + 1 + i for i in range(cluster.rasa_servers)),
            actions_front=settings.actions.port,
            actions=tuple(settings.actions.port + 1 + i for i in range(cluster.action_servers)),
            postgres=cluster.postgres_port,
            redis=settings.rasa.redis_port,
        )


def split_range(low: int, high: int, parts: int) -> tuple[tuple[int, int], ...]:
    """[low, high] in `parts` equal slices; RTP wants even ports, so every slice starts even."""
    size = (high - low + 1) // parts
    starts = [low + i * size + (low + i * size) % 2 for i in range(parts)]
    return tuple((start, low + (i + 1) * size - 1) for i, start in enumerate(starts))


def gateway_name(index: int) -> str:
    return f"gateway{index + 1}"


def gateway_specs(layout: Layout, shared_env: Mapping[str, str], workdir: Path) -> list[ChildSpec]:
    """One gateway per SIP port: its own HTTP, AudioSocket and RTP ports and local files (the call-record spool);
    Rasa, actions and stores shared."""
    specs = []
    for i, sip_port in enumerate(layout.gateway_sip):
        rtp_min, rtp_max = layout.gateway_rtp[i]
        env = {**shared_env,
               "GATEWAY_PORT": str(layout.gateway_http[i]), "SIP_HOST": LOOPBACK, "SIP_PORT": str(sip_port),
               # Behind Kamailio: advertise the address callers' media must reach, and believe only the proxy's
               # P-Asserted-Identity (a caller's own is stripped at the front, deploy/kamailio/kamailio.cfg).
               "SIP_ADVERTISED_HOST": LOOPBACK, "SIP_TRUSTED_PROXIES": f"{LOOPBACK}/32",
               "RTP_PORT_MIN": str(rtp_min), "RTP_PORT_MAX": str(rtp_max),
               "AUDIOSOCKET_PORT": str(layout.gateway_audiosocket[i]),
               "CALL_RECORDS_DIR": str(workdir / gateway_name(i) / "calls")}
        settings = Settings.from_env(env)
        gateway = next(spec for spec in build_specs(settings, child_env(settings, env)) if spec.name == "gateway")
        specs.append(dataclasses.replace(gateway, name=gateway_name(i)))
    return specs


class DatabaseUrl(NamedTuple):
    database: str
    role: str
    driver: str = "postgresql"  # the Rasa venv's psycopg2; the gateway reads it as psycopg 3 (bot/databases.py)


# Who owns each database: creates and writes its tables (scripts/cluster/stores.py `Postgres.provision`).
DATABASE_OWNERS = {"tracker": "ivr_rasa", "bank": "ivr_bank", "records": "ivr_records"}
HEALTH_PROBE_ROLE = "ivr_gateway"  # may connect to the tracker and the bank, nothing else there: /healthz's SELECT 1

# Which part gets which database URL, as which role: the one place that says so. A role that does not own the
# database it is given may only connect to it. The superuser `ivr` (stores.py) is in no process's environment: the
# gateways face the internet, so one taken over by a SIP or RTP parser bug can write its call records, and reach the
# tracker and the bank no further than `SELECT 1`.
DATABASE_URLS: dict[str, dict[str, DatabaseUrl]] = {
    "gateway": {"CALL_RECORDS_DB_URL": DatabaseUrl("records", "ivr_records", "postgresql+psycopg"),
                "TRACKER_DB_URL": DatabaseUrl("tracker", HEALTH_PROBE_ROLE),  # bot/health.py only
                "BANK_DB_URL": DatabaseUrl("bank", HEALTH_PROBE_ROLE)},  # bot/health.py only
    "rasa": {"TRACKER_DB_URL": DatabaseUrl("tracker", "ivr_rasa")},
    "actions": {"BANK_DB_URL": DatabaseUrl("bank", "ivr_bank")},
}
DATABASE_URL_VARIABLES = {name for urls in DATABASE_URLS.values() for name in urls}


def connect_only_roles() -> dict[str, list[str]]:
    """database -> the roles DATABASE_URLS gives it without owning it (they get CONNECT and nothing else)."""
    granted: dict[str, list[str]] = {}
    for urls in DATABASE_URLS.values():
        for url in urls.values():
            if url.role != DATABASE_OWNERS[url.database] and url.role not in granted.setdefault(url.database, []):
                granted[url.database].append(url.role)
    return granted


@dataclass(frozen=True)
class Cluster:
    """Every process of the cluster, in two steps: the stores (PostgreSQL, Redis), then, once they answer and the
    databases exist, the application tier in start order (action servers, Rasa servers, HAProxy, gateways,
    Kamailio: each front after what it fronts)."""

    layout: Layout
    workdir: Path
    settings: Settings

    @classmethod
    def from_settings(cls, settings: Settings, workdir: Path | None = None) -> "Cluster":
        return cls(Layout.from_settings(settings), Path(workdir or settings.cluster.workdir), settings)

    @property
    def postgres(self) -> Postgres:
        return Postgres(self.workdir / "postgres", self.layout.postgres)

    @property
    def redis(self) -> Redis:
        return Redis(self.workdir / "redis", self.layout.redis)

    def caller_key_secret(self, base_env: Mapping[str, str]) -> str:
        """The gateways' shared CALLER_KEY_SECRET (bot/caller_keys.py): the operator's, else one made once and kept
        in the cluster's directory, so a repeat call that lands on another gateway still matches."""
        if base_env.get("CALLER_KEY_SECRET"):
            return base_env["CALLER_KEY_SECRET"]
        path = self.workdir / "caller-key.secret"
        if not path.exists():
            self.workdir.mkdir(parents=True, exist_ok=True)
            write_private(path, secrets.token_urlsafe(32) + "\n")
        return path.read_text().strip()

    def store_specs(self, base_env: Mapping[str, str]) -> list[ChildSpec]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.postgres.initialise()
        return [self.postgres.spec(base_env), self.redis.spec(base_env)]

    def create_databases(self) -> None:
        """The databases and their roles (the server must be up), as DATABASE_OWNERS and DATABASE_URLS say."""
        self.postgres.provision(DATABASE_OWNERS, connect_only_roles())

    def shared_env(self, base_env: Mapping[str, str]) -> dict[str, str]:
        """What every application process shares: the fronts, Redis and the token. No database URL: each part
        gets its own (`database_env`), and none from the caller's environment leaks through."""
        layout = self.layout
        inherited = {name: value for name, value in base_env.items()
                     if name not in DATABASE_URL_VARIABLES and name != "CALLER_KEY_SECRET"}  # the gateways' only
        return {**inherited,
                "SIP_PORT": str(layout.sip_front), "RASA_PORT": str(layout.rasa_front),
                "ACTIONS_PORT": str(layout.actions_front), "RASA_TOKEN": self.settings.rasa.token,
                "RASA_MODEL_DIR": self.settings.rasa.model_dir,
                "REDIS_HOST": LOOPBACK, "REDIS_PORT": str(layout.redis)}

    def database_env(self, part: str) -> dict[str, str]:
        """The database URLs of one part ("gateway", "rasa", "actions"), each with its role and password."""
        return {name: self.postgres.url(url.database, url.driver, role=url.role)
                for name, url in DATABASE_URLS[part].items()}

    def app_specs(self, base_env: Mapping[str, str], *, agent_desk: bool = False) -> list[ChildSpec]:
        """The application tier in start order. `agent_desk`: also the stand-in agent desk at SIP_ROUTING's loopback
        target, as in `make run` (`make cluster`; the tests' clusters leave that port alone). It prints no
        screen-pop address: the pop lives on the gateway that handed the call off, and the desk cannot tell which."""
        env = self.shared_env(base_env)  # HAProxy and Kamailio: no database at all
        layout = self.layout
        desk = agent_desk_specs(self.settings, env, show_screen_pop=False) if agent_desk else []
        return [
            *rasa_tier_specs(layout, env, rasa_env=self.database_env("rasa"),
                             actions_env=self.database_env("actions")),
            haproxy_spec(self.workdir / "haproxy", layout.rasa_front, layout.rasa, layout.actions_front,
                         layout.actions, env),
            *gateway_specs(layout, {**env, **self.database_env("gateway"),
                                    "CALLER_KEY_SECRET": self.caller_key_secret(base_env)}, self.workdir),
            kamailio_spec(self.workdir / "kamailio", layout.sip_front,
                          [(LOOPBACK, port) for port in layout.gateway_sip], env,
                          probe_interval_s=self.settings.cluster.probe_interval_s),
            *desk,
        ]
