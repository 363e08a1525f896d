"""Real processes for integration tests and benchmarks: each ChildSpec (scripts/stack.py) started in its own process group with its
output in a log file, waited for until it answers, and signalled or killed by name. Whoever starts them stops them
all in a `finally`, so a failing test leaves no process behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from scripts.stack import ChildSpec

PR_SET_PDEATHSIG = 1  # linux/prctl.h
READY_TIMEOUT_S = 300.0  # Rasa loads TensorFlow; on 2 busy cores it has taken over 150 s


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL it when the process that started it dies, so a killed pytest or bench
    (no `finally` runs) leaves no Rasa or gateway behind. Linux only; a program that changes its user on start
    (PostgreSQL under setpriv, Kamailio with -u) loses it, and is still stopped by `stop_all` on a normal exit."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def is_answering(http: requests.Session, ready_url: str) -> bool:
    """The synchronous twin of scripts.stack.is_answering: any HTTP answer, or a tcp:// port accepting."""
    url = urlsplit(ready_url)
    try:
        if url.scheme == "tcp":
            socket.create_connection((url.hostname, url.port), timeout=2).close()
        else:
            http.get(ready_url, timeout=2)
        return True
    except (OSError, requests.RequestException):
        return False


@dataclass(kw_only=True)
class Processes:
    """The running processes by name, their specs and their log files (workdir/logs/NAME.log)."""

    specs: dict[str, ChildSpec]
    workdir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    http: requests.Session = field(default_factory=requests.Session)

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def start(self, name: str) -> None:
        spec = self.specs[name]
        self.log_path(name).parent.mkdir(parents=True, exist_ok=True)
        with self.log_path(name).open("ab") as log:
            self.procs[name] = subprocess.Popen(spec.argv, cwd=spec.cwd, env=dict(spec.env), stdout=log,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                start_new_session=True, preexec_fn=die_with_parent)

    def wait_ready(self, name: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                code = self.procs[name].returncode
                raise RuntimeError(f"{name} exited with {code}; log tail:\n{self.log_tail(name)}")
            if is_answering(self.http, self.specs[name].ready_url):
                return
            time.sleep(0.5)
        raise RuntimeError(f"{name} not answering after {timeout_s:g} s; log tail:\n{self.log_tail(name)}")

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM, grace_s: float = 10.0) -> None:
        """Signals the process group; SIGKILL after the grace period."""
        proc = self.procs.get(name)
        if proc is None:
            return
        _signal_group(proc, sig)
        _signal_group(proc, signal.SIGCONT)  # a test may have SIGSTOPped it: let it see the SIGTERM
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=10)

    def kill(self, name: str) -> None:
        """SIGKILL at once: a host lost mid-call, not a clean shutdown."""
        self.stop(name, sig=signal.SIGKILL, grace_s=0)

    def restart(self, name: str) -> None:
        self.stop(name)
        self.start(name)
        self.wait_ready(name)

    def stop_all(self, grace_s: float = 5.0) -> None:
        for name in reversed(list(self.procs)):  # the last started (the front) first
            self.stop(name, grace_s=grace_s)
        self.http.close()

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
