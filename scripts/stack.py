"""The process supervisor behind `make run`: action server, Rasa server and gateway, in the foreground.

Each child runs in its own process group with its output prefixed by its name. The supervisor waits until
each answers over HTTP, prints where to find things, restarts a crashed child with backoff, and on
Ctrl-C/SIGTERM stops every child: SIGTERM to its process group, then SIGKILL after a grace period.
Ports and database URLs come from settings; the children get them as environment variables.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, TextIO

import aiohttp
from yarl import URL
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: make `settings` importable

from settings import REPO_ROOT, Settings, get_settings  # noqa: E402

RASA_BIN = REPO_ROOT / ".venv-rasa" / "bin" / "rasa"
VOICE_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ChildSpec:
    """One supervised process: how to start it and which URL answers once it is up."""

    name: str
    argv: tuple[str, ...]
    ready_url: str
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path = REPO_ROOT


@dataclass(frozen=True)
class Backoff:
    """Restart delays: doubling from `first_s` to `max_s`; a child that stayed up `stable_s` starts over."""

    first_s: float = 1.0
    max_s: float = 30.0
    stable_s: float = 60.0

    def next_delay(self, previous_s: float, uptime_s: float) -> float:
        if previous_s <= 0 or uptime_s >= self.stable_s:
            return self.first_s
        return min(previous_s * 2, self.max_s)


def child_env(settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """Environment for every child, so all three agree on ports, URLs, token and databases."""
    env = dict(base)
    env.update({
        "RASA_PORT": str(settings.rasa.port),
        "RASA_URL": f"http://{LOOPBACK}:{settings.rasa.port}",
        "RASA_TOKEN": settings.rasa.token,
        "ACTIONS_PORT": str(settings.actions.port),
        "ACTION_SERVER_URL": f"http://{LOOPBACK}:{settings.actions.port}/webhook",
        "TRACKER_DB_URL": settings.rasa.tracker_db_url,
        "BANK_DB_URL": settings.bank.db_url,
        "GATEWAY_HOST": settings.gateway.host,
        "GATEWAY_PORT": str(settings.gateway.port),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), base.get("PYTHONPATH", "")) if p),
        "PYTHONUNBUFFERED": "1",
        "RASA_TELEMETRY_ENABLED": "false",  # banks run offline: no phoning home to Rasa's telemetry
        "SANIC_HOST": LOOPBACK,  # rasa_sdk's only way to bind the action server; it defaults to 0.0.0.0
    })
    return env


def agent_desk_address(settings: Settings) -> tuple[str, int] | None:
    """Where the stand-in agent desk listens: SIP_ROUTING's loopback target (None: the queues are a real PBX's)."""
    from telephony.agent_desk import desk_address

    return desk_address(settings)


def build_specs(settings: Settings, env: Mapping[str, str], *, show_screen_pop: bool = False) -> list[ChildSpec]:
    """The processes of the stack, in start order: action server, Rasa, gateway, and the stand-in agent desk
    (telephony/agent_desk.py) when SIP_ROUTING sends transfers to this machine, so a transfer completes here.
    `show_screen_pop`: the desk prints each screen-pop's address (our output is a person's terminal)."""
    rasa, actions, gateway = settings.rasa, settings.actions, settings.gateway
    return [
        ChildSpec("actions", (str(RASA_BIN), "run", "actions", "--actions", "actions", "-p", str(actions.port)),
                  f"http://{LOOPBACK}:{actions.port}/health", env),
        ChildSpec("rasa", (str(RASA_BIN), "run", "--enable-api", "--auth-token", rasa.token,
                           "-i", LOOPBACK, "-p", str(rasa.port), "-m", rasa.model_dir,
                           "--endpoints", "endpoints.yml", "--credentials", "credentials.yml"),
                  f"http://{LOOPBACK}:{rasa.port}/", env),
        ChildSpec("gateway", (str(VOICE_PYTHON), "-m", "telephony.gateway"),
                  f"http://{LOOPBACK}:{gateway.port}/healthz", env),
        *agent_desk_specs(settings, env, show_screen_pop=show_screen_pop),
    ]


def agent_desk_specs(settings: Settings, env: Mapping[str, str], *, show_screen_pop: bool) -> list[ChildSpec]:
    """The stand-in agent desk, when SIP_ROUTING sends transfers to this machine; else nothing."""
    desk = agent_desk_address(settings)
    if desk is None:
        return []
    command = (str(VOICE_PYTHON), "-m", "telephony.agent_desk", "--host", desk[0], "--port", str(desk[1]),
               *(("--show-screen-pop",) if show_screen_pop else ()))
    return [ChildSpec("agent-desk", command, f"tcp://{desk[0]}:{desk[1]}", env)]  # SIP over TCP shares the port


def ensure_sqlite_dirs(*db_urls: str) -> None:
    """SQLite creates the file but not its folder (var/ on a fresh clone)."""
    for db_url in db_urls:
        url = make_url(db_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def busy_ports(settings: Settings) -> list[str]:
    """The stack's ports another process already holds (say, a second `make run`), as 'NAME_ENV=port' hints."""
    wanted = [("RASA_PORT", settings.rasa.port, socket.SOCK_STREAM),
              ("ACTIONS_PORT", settings.actions.port, socket.SOCK_STREAM),
              ("GATEWAY_PORT", settings.gateway.port, socket.SOCK_STREAM),
              ("SIP_PORT", settings.sip.port, socket.SOCK_DGRAM)]
    busy = []
    for env_name, port, kind in wanted:
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                busy.append(f"{env_name}={port}")
    return busy


def find_model(model_dir: str) -> Path | None:
    models = sorted(Path(model_dir).glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return models[-1] if models else None


class Child:
    """One running (or restarting) child process and the task that pipes its output."""

    def __init__(self, spec: ChildSpec, out: TextIO) -> None:
        self.spec = spec
        self.out = out
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.restarts = 0
        self._pipe_task: asyncio.Task | None = None

    async def spawn(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.spec.argv, cwd=str(self.spec.cwd), env=dict(self.spec.env),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: we can signal it and all its children at once
            limit=1 << 20)
        self.started_at = time.monotonic()
        self._pipe_task = asyncio.create_task(self._pipe_output(self.process.stdout))

    async def wait(self) -> int:
        assert self.process is not None
        code = await self.process.wait()
        if self._pipe_task is not None:
            await asyncio.wait([self._pipe_task], timeout=2)
        return code

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def signal_group(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass  # the whole group is already gone

    async def stop(self, grace_s: float) -> None:
        """SIGTERM to the group, SIGKILL after `grace_s` if anything in it is still alive."""
        if self.process is None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout=grace_s)
        except asyncio.TimeoutError:
            log(self.out, f"{self.spec.name} did not stop within {grace_s:g} s: SIGKILL")
        # Grandchildren may outlive the leader; the group kill reaches them either way.
        self.signal_group(signal.SIGKILL)
        await self.process.wait()
        if self._pipe_task is not None:
            await asyncio.wait([self._pipe_task], timeout=2)

    async def _pipe_output(self, stream: asyncio.StreamReader | None) -> None:
        prefix = f"{self.spec.name:<8}| "
        while stream is not None:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the buffer: take what is there
                line = await stream.read(1 << 16)
            if not line:
                return
            self.out.write(prefix + line.decode("utf-8", "replace").rstrip("\n") + "\n")
            self.out.flush()


async def is_answering(session: aiohttp.ClientSession, ready_url: str) -> bool:
    """http(s)://: any HTTP answer counts (/healthz says 503 until the others are up, and that is still an answer).
    tcp://host:port: the port accepts a connection (PostgreSQL, Redis, Kamailio's SIP over TCP)."""
    url = URL(ready_url)
    try:
        if url.scheme == "tcp":
            _, writer = await asyncio.wait_for(asyncio.open_connection(url.host, url.port), timeout=2)
            writer.close()
            return True
        async with session.get(ready_url, timeout=aiohttp.ClientTimeout(total=2)):
            return True
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return False


def log(out: TextIO, message: str) -> None:
    out.write(f"stack   | {message}\n")
    out.flush()


class Supervisor:
    """Starts the children, keeps them running, and stops them all when `stop_event` is set."""

    def __init__(self, specs: list[ChildSpec], *, out: TextIO = sys.stdout, backoff: Backoff = Backoff(),
                 ready_timeout_s: float = 180.0, stop_grace_s: float = 10.0) -> None:
        self.children = [Child(spec, out) for spec in specs]
        self.out = out
        self.backoff = backoff
        self.ready_timeout_s = ready_timeout_s
        self.stop_grace_s = stop_grace_s
        self.stop_event = asyncio.Event()

    async def run(self, on_ready=None) -> int:
        """Runs until stop_event; returns 0 after a clean stop."""
        keepers = [asyncio.create_task(self._keep_running(child)) for child in self.children]
        ready = asyncio.create_task(self._announce_when_ready(on_ready))
        await self.stop_event.wait()
        ready.cancel()
        log(self.out, "stopping all processes")
        await asyncio.gather(*(child.stop(self.stop_grace_s) for child in self.children))
        await asyncio.gather(*keepers, return_exceptions=True)
        log(self.out, "all processes stopped")
        return 0

    async def _keep_running(self, child: Child) -> None:
        delay = 0.0
        while not self.stop_event.is_set():
            try:
                await child.spawn()
            except OSError as exc:
                log(self.out, f"cannot start {child.spec.name} ({child.spec.argv[0]}): {exc}")
                uptime = 0.0
            else:
                if self.stop_event.is_set():  # stop() ran while this child was starting
                    await child.stop(self.stop_grace_s)
                    return
                log(self.out, f"started {child.spec.name} (pid {child.process.pid})")
                code = await child.wait()
                if self.stop_event.is_set():
                    return
                uptime = time.monotonic() - child.started_at
                log(self.out, f"{child.spec.name} exited with code {code} after {uptime:.1f} s")
                child.signal_group(signal.SIGKILL)  # leave no orphaned grandchildren behind
            delay = self.backoff.next_delay(delay, uptime)
            child.restarts += 1
            log(self.out, f"restarting {child.spec.name} in {delay:g} s (restart #{child.restarts})")
            try:
                await asyncio.wait_for(self.stop_event.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    async def _announce_when_ready(self, on_ready) -> None:
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(self._wait_ready(session, c) for c in self.children))
        if all(results) and on_ready is not None:
            on_ready()

    async def _wait_ready(self, session: aiohttp.ClientSession, child: Child) -> bool:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if await is_answering(session, child.spec.ready_url):
                log(self.out, f"{child.spec.name} is answering at {child.spec.ready_url}")
                return True
            await asyncio.sleep(0.5)
        log(self.out, f"{child.spec.name} is not answering at {child.spec.ready_url} after "
                      f"{self.ready_timeout_s:g} s: see its log lines above")
        return False


def banner(settings: Settings) -> str:
    web = f"http://{settings.gateway.host}:{settings.gateway.port}"
    return "\n".join([
        "",
        "The IVR stack is up:",
        f"  text console   {web}/console",
        f"  KPI dashboard  {web}/dashboard",
        f"  health         {web}/healthz",
        f"  metrics        {web}/metrics",
        f"  SIP            sip:ivr@{settings.sip.host}:{settings.sip.port} (UDP and TCP)",
        *([f"  agent desk     sip:general@{desk[0]}:{desk[1]} (stand-in agent: answers transfers; on a "
           f"terminal it prints each screen-pop, {web}/agent/<X-IVR-Context-Ref>)"] if (desk := agent_desk_address(settings)) else []),
        f"  Rasa           http://{LOOPBACK}:{settings.rasa.port}",
        f"  action server  http://{LOOPBACK}:{settings.actions.port}",
        "  CLI chat       make chat",
        "Ctrl-C stops everything.",
        "",
    ])


async def run_stack(settings: Settings) -> int:
    if find_model(settings.rasa.model_dir) is None:
        print(f"No trained Rasa model in {settings.rasa.model_dir}: run `make train` (or `make run`, which trains).",
              file=sys.stderr)
        return 2
    busy = busy_ports(settings)
    if busy:
        print(f"Ports already in use: {', '.join(busy)}. Stop the other stack, or pick free ports with those "
              "environment variables.", file=sys.stderr)
        return 2
    ensure_sqlite_dirs(settings.rasa.tracker_db_url, settings.bank.db_url)
    specs = build_specs(settings, child_env(settings, os.environ), show_screen_pop=sys.stdout.isatty())
    supervisor = Supervisor(specs, ready_timeout_s=settings.gateway.stack_ready_timeout_s,
                            stop_grace_s=settings.gateway.stack_stop_grace_s)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.stop_event.set)
    return await supervisor.run(on_ready=lambda: print(banner(settings), flush=True))


def main() -> int:
    return asyncio.run(run_stack(get_settings()))


if __name__ == "__main__":
    sys.exit(main())
