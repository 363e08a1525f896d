"""`make cluster`: the whole IVR as a cluster on this machine's loopback, each part its own process.

PostgreSQL and Redis start first; once they answer, the databases are created and the application tier starts
(action servers, Rasa servers, HAProxy, gateways, Kamailio). When every part answers, one status line per part is
printed. Ctrl-C stops the application tier, then the stores. docs/SCALING.md explains the parts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as `python -m scripts.cluster` or a script

from scripts.cluster.stores import postgres_bin_dir  # noqa: E402
from scripts.cluster.topology import Cluster, gateway_name  # noqa: E402
from scripts.stack import (  # noqa: E402
    LOOPBACK, Supervisor, agent_desk_address, busy_ports, find_model, log)
from settings import Settings, get_settings  # noqa: E402


def missing_engines() -> list[str]:
    missing = [name for name in ("kamailio", "haproxy", "redis-server") if not _on_path(name)]
    try:
        postgres_bin_dir()
    except FileNotFoundError:
        missing.append("postgresql")
    return missing


def _on_path(name: str) -> bool:
    return any((Path(d) / name).exists() for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin"])


async def status_lines(cluster: Cluster) -> list[str]:
    """One line per part: where it is and whether it answers (a gateway's /healthz covers what it depends on)."""
    layout = cluster.layout
    lines = [f"  kamailio       sip:{LOOPBACK}:{layout.sip_front} (UDP and TCP)  in front of "
             + ", ".join(f"{gateway_name(i)} :{port}" for i, port in enumerate(layout.gateway_sip))]
    async with aiohttp.ClientSession() as http:
        for i, port in enumerate(layout.gateway_http):
            url = f"http://{LOOPBACK}:{port}/healthz"
            lines.append(f"  {gateway_name(i):<14} {url}  {await _health(http, url)}")
    lines += [f"  haproxy        rasa http://{LOOPBACK}:{layout.rasa_front} -> "
              + ", ".join(f":{p}" for p in layout.rasa)
              + f";  actions http://{LOOPBACK}:{layout.actions_front} -> " + ", ".join(f":{p}" for p in layout.actions),
              f"  postgresql     {LOOPBACK}:{layout.postgres}  databases tracker, bank, records "
              f"(a role per part: passwords in {cluster.postgres.role_passwords_file}; "
              f"the superuser's, for administration, in {cluster.postgres.password_file})",
              f"  redis          {LOOPBACK}:{layout.redis}  Rasa's lock store"]
    if desk := agent_desk_address(cluster.settings):
        lines.append(f"  agent desk     sip:general@{desk[0]}:{desk[1]}  stand-in agent: answers the gateways' "
                     f"transfers (screen-pops at /agent/<ref> on the gateway that handed over)")
    return lines


async def _health(http: aiohttp.ClientSession, url: str) -> str:
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
        return f"NOT ANSWERING ({error.__class__.__name__})"
    return "healthy" if resp.status == 200 else f"UNHEALTHY ({', '.join(body.get('failing') or []) or resp.status})"


async def run_cluster(settings: Settings) -> int:
    problem = preflight(settings)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    cluster = Cluster.from_settings(settings)
    base_env = dict(os.environ)
    grace, ready_s = settings.gateway.stack_stop_grace_s, settings.gateway.stack_ready_timeout_s
    stores = Supervisor(cluster.store_specs(base_env), ready_timeout_s=ready_s, stop_grace_s=grace)
    stores_ready = asyncio.Event()
    stores_task = asyncio.create_task(stores.run(on_ready=stores_ready.set))
    app: Supervisor | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await _until_either(stores_ready, stop, timeout_s=ready_s)
        if stores_ready.is_set() and not stop.is_set():
            cluster.create_databases()
            app = Supervisor(cluster.app_specs(base_env, agent_desk=True), ready_timeout_s=ready_s,
                             stop_grace_s=grace)
            app_task = asyncio.create_task(app.run(on_ready=lambda: asyncio.ensure_future(_announce(cluster))))
            await stop.wait()
            app.stop_event.set()
            await app_task
        elif not stop.is_set():
            log(sys.stdout, "PostgreSQL or Redis did not come up: see their lines above")
    finally:
        stores.stop_event.set()
        await stores_task
    return 0


async def _announce(cluster: Cluster, settle_s: float = 30.0) -> None:
    """Every part answers; give HAProxy's health checks and the gateways' /healthz a moment to agree first."""
    deadline = asyncio.get_running_loop().time() + settle_s
    lines = await status_lines(cluster)
    while any(NOT_YET in line for line in lines for NOT_YET in ("UNHEALTHY", "NOT ANSWERING")) \
            and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(1)
        lines = await status_lines(cluster)
    print("\n".join(["", "The IVR cluster is up:", *lines, "Ctrl-C stops everything.", ""]), flush=True)


async def _until_either(first: asyncio.Event, second: asyncio.Event, timeout_s: float) -> None:
    waits = [asyncio.create_task(first.wait()), asyncio.create_task(second.wait())]
    await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    for task in waits:
        task.cancel()


def preflight(settings: Settings) -> str | None:
    if find_model(settings.rasa.model_dir) is None:
        return f"No trained Rasa model in {settings.rasa.model_dir}: run `make train` (`make cluster` trains)."
    missing = missing_engines()
    if missing:
        return f"Missing engines: {', '.join(missing)}. `make cluster` installs them (scripts/install_apt.sh, as root)."
    busy = busy_ports(settings)
    if busy:
        return f"Ports already in use: {', '.join(busy)}. Stop `make run` or the other cluster first."
    return None


def main() -> int:
    return asyncio.run(run_cluster(get_settings()))


if __name__ == "__main__":
    sys.exit(main())
