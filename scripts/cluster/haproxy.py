"""HAProxy in front of the Rasa tier: one front for the Rasa servers, one for the action servers.

The policy (health checks, retries only of connections never made, timeouts) is deploy/haproxy/haproxy.cfg, read
as it is. This module writes what that file cannot say for N instances, the server list of each backend
(`servers.cfg` in HAProxy's work directory), and sets the file's variables from settings, so its timeouts follow
the turn budget. HAProxy runs in the foreground (-db); besides the files we hand it, it makes one thing: its
runtime API socket (`haproxy.sock` in the same work directory, mode 600, admin level), through which
`make swap-model --cluster` (scripts/swap_model.py) drains a Rasa server before loading a new model into it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping, Sequence

from scripts.cluster.rasa_tier import actions_name, rasa_name
from scripts.stack import LOOPBACK, ChildSpec
from settings import REPO_ROOT, Settings

HAPROXY_CFG = REPO_ROOT / "deploy" / "haproxy" / "haproxy.cfg"
# The proxy waits this much longer than the client behind it, so the client's own timeout decides, not a cut.
PROXY_MARGIN_S = 1.0
# HAProxy's runtime API (`set server rasa/rasa1 state drain`), in its work directory: only this user may use it.
STATS_SOCKET_NAME = "haproxy.sock"
RASA_BACKEND = "rasa"


def stats_socket(workdir: Path) -> Path:
    return workdir / STATS_SOCKET_NAME


def runtime_config(socket: Path) -> str:
    """The generated global section: the runtime API on a unix socket that only this user can open."""
    return ("# Written by scripts/cluster/haproxy.py at each start: the runtime API for `make swap-model --cluster`.\n"
            f"global\n    stats socket {socket} mode 600 level admin\n")


def haproxy_bin() -> str:
    """Debian installs it in /usr/sbin, which is not on a normal user's PATH."""
    return shutil.which("haproxy") or "/usr/sbin/haproxy"


def server_lists(rasa_ports: Sequence[int], actions_ports: Sequence[int]) -> str:
    """The generated include: each backend, with its policy from a named defaults section of haproxy.cfg, and one
    `server` line per instance, named as the process is (rasa1, actions1, ...), so HAProxy's log lines match."""
    lines = ["# Written by scripts/cluster/haproxy.py at each start; the policy is in deploy/haproxy/haproxy.cfg.",
             f"backend {RASA_BACKEND} from rasa_servers"]
    lines += [f"    server {rasa_name(i)} {LOOPBACK}:{port}" for i, port in enumerate(rasa_ports)]
    lines += ["", "backend actions from action_servers"]
    lines += [f"    server {actions_name(i)} {LOOPBACK}:{port}" for i, port in enumerate(actions_ports)]
    return "\n".join(lines) + "\n"


def haproxy_variables(settings: Settings, rasa_front: int, actions_front: int) -> dict[str, str]:
    """The variables haproxy.cfg reads: the fronts, and timeouts just above what the client behind each waits
    (the gateway for a Rasa reply, Rasa for an action)."""
    return {
        "HAPROXY_RASA_BIND": f"{LOOPBACK}:{rasa_front}",
        "HAPROXY_ACTIONS_BIND": f"{LOOPBACK}:{actions_front}",
        "HAPROXY_RASA_TIMEOUT": _ms(settings.rasa_reply_timeout_s + PROXY_MARGIN_S),
        "HAPROXY_ACTIONS_TIMEOUT": _ms(settings.actions.timeout_s + PROXY_MARGIN_S),
        "HAPROXY_CHECK_INTER": "1s",
    }


def haproxy_spec(workdir: Path, rasa_front: int, rasa_ports: Sequence[int], actions_front: int,
                 actions_ports: Sequence[int], env: Mapping[str, str]) -> ChildSpec:
    """HAProxy on `rasa_front` and `actions_front` (loopback), in front of the given instance ports.
    Writes workdir/servers.cfg; ready once the Rasa front accepts connections."""
    if not rasa_ports or not actions_ports:
        raise ValueError("HAProxy needs at least one Rasa server and one action server behind it")
    workdir.mkdir(parents=True, exist_ok=True)
    servers = workdir / "servers.cfg"
    servers.write_text(server_lists(rasa_ports, actions_ports))
    runtime = workdir / "runtime.cfg"
    runtime.write_text(runtime_config(stats_socket(workdir.resolve())))
    settings = Settings.from_env(dict(env))
    argv = (haproxy_bin(), "-db", "-f", str(HAPROXY_CFG), "-f", str(servers), "-f", str(runtime))
    return ChildSpec("haproxy", argv, f"tcp://{LOOPBACK}:{rasa_front}",
                     {**env, **haproxy_variables(settings, rasa_front, actions_front)})


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"
