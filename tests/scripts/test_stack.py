"""The `make run` supervisor, with small Python children standing in for Rasa, actions and gateway."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import sys
import textwrap
from pathlib import Path

import pytest

from scripts.stack import (Backoff, ChildSpec, Supervisor, banner, build_specs, busy_ports, child_env,
                           ensure_sqlite_dirs)
from settings import Settings


def python_child(name: str, code: str, ready_url: str = "http://127.0.0.1:9/") -> ChildSpec:
    return ChildSpec(name, (sys.executable, "-c", textwrap.dedent(code)), ready_url, dict(os.environ))


async def wait_for(predicate, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


async def test_crashed_child_is_restarted_with_a_log_line(tmp_path):
    runs = tmp_path / "runs"
    spec = python_child("crashy", f"open({str(runs)!r}, 'a').write('x'); raise SystemExit(3)")
    out = io.StringIO()
    supervisor = Supervisor([spec], out=out, backoff=Backoff(first_s=0.05, max_s=0.2), ready_timeout_s=0.2)
    task = asyncio.create_task(supervisor.run())
    await wait_for(lambda: runs.exists() and len(runs.read_text()) >= 3)
    supervisor.stop_event.set()
    assert await task == 0
    log = out.getvalue()
    assert "crashy exited with code 3" in log
    assert "restarting crashy in 0.05 s (restart #1)" in log
    assert "restarting crashy in 0.1 s (restart #2)" in log


async def test_stop_kills_the_whole_process_group_after_the_grace_period(tmp_path):
    grandchild_pid = tmp_path / "grandchild.pid"
    spec = python_child("stubborn", f"""
        import signal, subprocess, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ignores the polite request
        sleeper = subprocess.Popen(["sleep", "300"])
        open({str(grandchild_pid)!r}, "w").write(str(sleeper.pid))
        print("child up", flush=True)
        time.sleep(300)
    """)
    out = io.StringIO()
    supervisor = Supervisor([spec], out=out, stop_grace_s=0.5, ready_timeout_s=0.2)
    task = asyncio.create_task(supervisor.run())
    await wait_for(lambda: grandchild_pid.exists() and grandchild_pid.read_text())
    await wait_for(lambda: "stubborn| child up" in out.getvalue())  # output is prefixed
    supervisor.stop_event.set()
    await asyncio.wait_for(task, timeout=10)
    assert "stubborn did not stop within 0.5 s: SIGKILL" in out.getvalue()
    child_pid = supervisor.children[0].process.pid
    await wait_for(lambda: not pid_alive(int(grandchild_pid.read_text())), timeout_s=5)
    assert not pid_alive(child_pid)


async def test_ready_children_are_announced(unused_tcp_port):
    spec = python_child("web", f"""
        import http.server
        http.server.HTTPServer(("127.0.0.1", {unused_tcp_port}), http.server.SimpleHTTPRequestHandler).serve_forever()
    """, ready_url=f"http://127.0.0.1:{unused_tcp_port}/")
    out = io.StringIO()
    announced = asyncio.Event()
    supervisor = Supervisor([spec], out=out, stop_grace_s=2)
    task = asyncio.create_task(supervisor.run(on_ready=announced.set))
    await asyncio.wait_for(announced.wait(), timeout=10)
    supervisor.stop_event.set()
    await asyncio.wait_for(task, timeout=10)
    assert f"web is answering at http://127.0.0.1:{unused_tcp_port}/" in out.getvalue()
    assert "restarting" not in out.getvalue()  # a clean stop is not a crash


def test_missing_program_is_logged_and_retried():
    async def scenario() -> str:
        out = io.StringIO()
        spec = ChildSpec("ghost", ("/nonexistent/rasa",), "http://127.0.0.1:9/", {})
        supervisor = Supervisor([spec], out=out, backoff=Backoff(first_s=0.05), ready_timeout_s=0.1)
        task = asyncio.create_task(supervisor.run())
        await wait_for(lambda: "restart #2" in out.getvalue())
        supervisor.stop_event.set()
        await task
        return out.getvalue()

    assert "cannot start ghost (/nonexistent/rasa)" in asyncio.run(scenario())


@pytest.mark.parametrize("previous, uptime, expected", [(0, 0, 1), (1, 2, 2), (16, 2, 30), (30, 5, 30), (8, 61, 1)])
def test_backoff(previous, uptime, expected):
    assert Backoff(first_s=1, max_s=30, stable_s=60).next_delay(previous, uptime) == expected


def test_children_get_ports_and_urls_from_settings(tmp_path):
    settings = Settings.from_env({"RASA_PORT": "6005", "ACTIONS_PORT": "6055", "GATEWAY_PORT": "6080",
                                  "BANK_DB_URL": f"sqlite:///{tmp_path}/b.db", "RASA_TOKEN": "tok"})
    env = child_env(settings, {"PATH": "/bin"})
    assert env["RASA_URL"] == "http://127.0.0.1:6005"
    assert env["ACTION_SERVER_URL"] == "http://127.0.0.1:6055/webhook"
    assert env["BANK_DB_URL"] == f"sqlite:///{tmp_path}/b.db" and env["PATH"] == "/bin"
    assert env["SANIC_HOST"] == "127.0.0.1"  # the action server listens on loopback only
    actions, rasa, gateway, desk = build_specs(settings, env)
    assert actions.argv[-2:] == ("-p", "6055") and actions.ready_url.endswith(":6055/health")
    assert "--enable-api" in rasa.argv and ("--auth-token", "tok") == rasa.argv[3:5]
    assert rasa.argv[rasa.argv.index("-p") + 1] == "6005"
    assert gateway.argv[1:] == ("-m", "telephony.gateway") and gateway.ready_url.endswith(":6080/healthz")
    assert "http://127.0.0.1:6080/console" in banner(settings)
    # the stand-in agent desk at the default transfer target, supervised like the others, ready over SIP's TCP port
    assert desk.argv[1:] == ("-m", "telephony.agent_desk", "--host", "127.0.0.1", "--port", "5070")
    assert desk.ready_url == "tcp://127.0.0.1:5070" and "agent desk" in banner(settings)
    # on a person's terminal, the desk prints each screen-pop's address there (never in a log)
    *_, shown = build_specs(settings, env, show_screen_pop=True)
    assert shown.argv[1:] == ("-m", "telephony.agent_desk", "--host", "127.0.0.1", "--port", "5070",
                              "--show-screen-pop")


def test_no_agent_desk_when_transfers_go_to_a_real_pbx(tmp_path):
    settings = Settings.from_env({"SIP_ROUTING": "general=sip:general@10.9.8.7:5060"})
    assert [spec.name for spec in build_specs(settings, {})] == ["actions", "rasa", "gateway"]


def test_sqlite_parent_folders_are_created(tmp_path):
    ensure_sqlite_dirs(f"sqlite:///{tmp_path}/var/x/tracker.db", "postgresql://u@h/db", "sqlite://")
    assert (tmp_path / "var" / "x").is_dir()


def test_busy_ports_are_named_with_their_variable(unused_tcp_port):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", unused_tcp_port))
        holder.listen()
        settings = Settings.from_env({"GATEWAY_PORT": str(unused_tcp_port), "RASA_PORT": "0",
                                      "ACTIONS_PORT": "0", "SIP_PORT": "0"})
        assert busy_ports(settings) == [f"GATEWAY_PORT={unused_tcp_port}"]
