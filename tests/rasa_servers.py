"""A real Rasa server and action server for the dialogue and security tests, on free ports with temporary databases.

Rasa reaches the action server through a small HTTP relay in this test process, which can be told to answer
slowly or to drop connections: that is how "the action server is slow / down" is produced without touching
the servers themselves. Every process runs in its own process group and is killed on teardown.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from settings import REPO_ROOT, get_settings

RASA_BIN = REPO_ROOT / ".venv-rasa" / "bin" / "rasa"
TOKEN = "dialogue-test-token"
READY_TIMEOUT_S = 240.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def trained_model() -> Path | None:
    """DIALOGUE_TEST_MODEL if set, else the newest model in settings.rasa.model_dir."""
    explicit = os.environ.get("DIALOGUE_TEST_MODEL")
    if explicit:
        return Path(explicit)
    models = sorted(Path(get_settings().rasa.model_dir).glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return models[-1] if models else None


class Relay(http.server.ThreadingHTTPServer):
    """Forwards action calls to the real action server; `mode` is "pass", "slow" or "down"."""

    daemon_threads = True

    def __init__(self, target: str) -> None:
        super().__init__(("127.0.0.1", free_port()), RelayHandler)
        self.target, self.mode, self.delay_s = target, "pass", 5.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/webhook"


class RelayHandler(http.server.BaseHTTPRequestHandler):
    server: Relay

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.server.mode == "down":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.server.mode == "slow":
            time.sleep(self.server.delay_s)
        request = urllib.request.Request(self.server.target, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                payload, status = answer.read(), answer.status
        except urllib.error.HTTPError as error:
            payload, status = error.read(), error.code
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@dataclass
class DialogueServers:
    rasa_url: str
    relay: Relay
    workdir: Path

    def send(self, sender: str, message, metadata: dict | None = None, timeout: float = 30.0) -> tuple[int, list]:
        body = json.dumps({"sender": sender, "message": message, "metadata": metadata or {}}).encode()
        request = urllib.request.Request(f"{self.rasa_url}/webhooks/rest/webhook", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, []

    def tracker(self, sender: str) -> dict:
        url = f"{self.rasa_url}/conversations/{sender}/tracker?token={TOKEN}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.loads(answer.read())


def texts(reply: list) -> str:
    """The spoken texts of a reply, joined (custom events, which say nothing, add no gap)."""
    return " ".join(m["text"] for m in reply if m.get("text"))


def custom(reply: list, event: str) -> dict | None:
    """The reply's first custom event of kind `event`."""
    return next((m["custom"] for m in reply if (m.get("custom") or {}).get("event") == event), None)


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


def wait_for(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:3]} exited; log tail:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1.0)
    raise RuntimeError(f"{url} not ready after {READY_TIMEOUT_S:g} s; log tail:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="session")
def dialogue_servers(tmp_path_factory: pytest.TempPathFactory):
    model = trained_model()
    if model is None or not model.exists():
        pytest.skip("no trained Rasa model: run `make train` (or set DIALOGUE_TEST_MODEL)")
    workdir = tmp_path_factory.mktemp("dialogue-servers")
    actions_port, rasa_port = free_port(), free_port()
    env = dict(os.environ, BANK_DB_URL=f"sqlite:///{workdir / 'bank.db'}", BANK_PIN_HASH_ITERATIONS="1000",
               TRACKER_DB_URL=f"sqlite:///{workdir / 'tracker.db'}", ACTION_TIMEOUT_S="3.0", RASA_TELEMETRY_ENABLED="false")
    processes: list[subprocess.Popen] = []
    relay = Relay(f"http://127.0.0.1:{actions_port}/webhook")
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    try:
        actions_log = workdir / "actions.log"
        processes.append(start([str(RASA_BIN), "run", "actions", "--actions", "actions", "-p", str(actions_port)], env, actions_log))
        rasa_log = workdir / "rasa.log"
        env_rasa = dict(env, ACTION_SERVER_URL=relay.url)
        processes.append(start([str(RASA_BIN), "run", "--enable-api", "--auth-token", TOKEN, "-i", "127.0.0.1", "-p", str(rasa_port),
                                "-m", str(model), "--endpoints", "endpoints.yml", "--credentials", "credentials.yml"],
                               env_rasa, rasa_log))
        wait_for(f"http://127.0.0.1:{actions_port}/health", processes[0], actions_log)
        wait_for(f"http://127.0.0.1:{rasa_port}/webhooks/rest/", processes[1], rasa_log)
        yield DialogueServers(f"http://127.0.0.1:{rasa_port}", relay, workdir)
    finally:
        relay.shutdown()
        for process in processes:
            kill_group(process)
