"""A running cluster for the tests and `make bench-cluster`: every part a real process, on free ports, by name.

`running_cluster()` starts the stores, creates the databases, starts the application tier in order and stops it
all on the way out, whatever happened. The helpers place SIP calls with audio through Kamailio (sipp) and read
each gateway's counters from its /metrics.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import requests

from bot.cdr import OUTCOME_REJECTED
from scripts.cluster.topology import Cluster, Layout, gateway_name, split_range
from scripts.processes import Processes, free_port
from settings import REPO_ROOT, Settings

MEDIA_CALL = REPO_ROOT / "bench" / "scenarios" / "media_call.xml"  # 7 s of G.711 A-law, then BYE
RTP_LOW = 42000  # away from a `make run` gateway's default range


@dataclass(frozen=True)
class SippResult:
    successful: int
    failed: int

    @property
    def offered(self) -> int:
        return self.successful + self.failed


@dataclass(kw_only=True)
class RunningCluster(Processes):
    cluster: Cluster

    @property
    def layout(self) -> Layout:
        return self.cluster.layout

    @property
    def gateways(self) -> list[str]:
        return [gateway_name(i) for i in range(len(self.layout.gateway_sip))]

    def start_sip_calls(self, calls: int, rate: float, timeout_s: float = 90.0) -> "SippRun":
        """sipp offers `calls` calls at `rate` per second through Kamailio, in the background."""
        return SippRun.start(self.layout.sip_front, calls, rate, Path(tempfile.mkdtemp(dir=self.workdir)),
                             timeout_s)

    def sip_calls(self, calls: int, rate: float, timeout_s: float = 90.0) -> SippResult:
        return self.start_sip_calls(calls, rate, timeout_s).wait()

    def metric(self, gateway_index: int, name: str, labels: str = "", without: str | None = None) -> float:
        """The sum of one counter over the series whose labels contain `labels` (e.g. 'door="sip"') and not
        `without`."""
        port = self.layout.gateway_http[gateway_index]
        text = self.http.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        pattern = rf'^{re.escape(name)}(?:\{{([^}}]*)\}})? (\S+)$'
        return sum(float(value) for found, value in re.findall(pattern, text, re.M)
                   if labels in found and (without is None or without not in found))

    def calls_finished_by(self, gateway_index: int) -> int:
        """SIP calls this gateway answered and saw end (an INVITE it refused with 503 is not one)."""
        return int(self.metric(gateway_index, "ivr_telephony_calls_total", 'door="sip"',
                               without=f'outcome="{OUTCOME_REJECTED}"'))

    def is_up(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def log_size(self, name: str) -> int:
        path = self.log_path(name)
        return path.stat().st_size if path.exists() else 0

    def wait_log(self, name: str, needle: str, *, since: int, timeout_s: float) -> float | None:
        """The monotonic time `needle` first appears in NAME's log after byte `since`, polled; None on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.log_path(name).open("rb") as log:
                log.seek(since)
                if needle.encode() in log.read():
                    return time.monotonic()
            time.sleep(0.05)
        return None

    def wait_healthy(self, timeout_s: float) -> float | None:
        """The monotonic time every running gateway's /healthz first says 200; None on timeout."""
        deadline = time.monotonic() + timeout_s
        urls = [self.specs[name].ready_url for name in self.gateways if self.is_up(name)]
        while time.monotonic() < deadline:
            if all(self._status(url) == 200 for url in urls):
                return time.monotonic()
            time.sleep(0.2)
        return None

    def _status(self, url: str) -> int:
        try:
            return self.http.get(url, timeout=5).status_code
        except requests.RequestException:
            return 0

    def send(self, sender: str, message: str, caller: str, rasa_port: int | None = None) -> list[dict]:
        """One turn over the REST contract, through HAProxy unless a Rasa server's own port is given."""
        port = rasa_port or self.layout.rasa_front
        payload = {"sender": sender, "message": message, "metadata": {"caller_number": caller, "channel": "text"}}
        resp = self.http.post(f"http://127.0.0.1:{port}/webhooks/rest/webhook", json=payload, timeout=30)
        if resp.status_code != 200:
            raise RuntimeError(f"{message[:40]!r}: HTTP {resp.status_code} {resp.text[:300]}")
        return resp.json()


@dataclass
class SippRun:
    process: subprocess.Popen
    stats: Path
    timeout_s: float

    @classmethod
    def start(cls, port: int, calls: int, rate: float, workdir: Path, timeout_s: float) -> "SippRun":
        stats = workdir / "stats.csv"
        argv = [shutil.which("sipp") or "sipp", f"127.0.0.1:{port}", "-sf", str(MEDIA_CALL), "-s", "ivr",
                "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(free_port()), "-mp", str(free_port()),
                # one call every 1/rate seconds (-r calls per -rp milliseconds)
                "-m", str(calls), "-r", "1", "-rp", str(max(1, round(1000 / rate))), "-l", str(calls),
                "-timeout", f"{int(timeout_s)}s", "-nostdin", "-trace_stat", "-stf", str(stats), "-fd", "1"]
        with (workdir / "sipp.log").open("wb") as log:
            process = subprocess.Popen(argv, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        return cls(process, stats, timeout_s)

    def wait(self) -> SippResult:
        try:
            self.process.wait(timeout=self.timeout_s + 10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        return sipp_counts(self.stats)


def sipp_counts(stats_csv: Path) -> SippResult:
    """The last row's SuccessfulCall(C) and FailedCall(C) from sipp's -trace_stat file."""
    lines = [line for line in stats_csv.read_text().splitlines() if line.strip()] if stats_csv.exists() else []
    if len(lines) < 2:
        raise RuntimeError(f"sipp wrote no statistics ({stats_csv.parent / 'sipp.log'})")
    header, last = lines[0].split(";"), lines[-1].split(";")
    return SippResult(int(last[header.index("SuccessfulCall(C)")]), int(last[header.index("FailedCall(C)")]))


def free_layout(gateways: int = 2, servers: int = 2) -> Layout:
    """Every port free now; each gateway 200 RTP ports of its own."""
    return Layout(
        sip_front=free_port(), gateway_sip=tuple(free_port() for _ in range(gateways)),
        gateway_http=tuple(free_port() for _ in range(gateways)),
        gateway_audiosocket=tuple(free_port() for _ in range(gateways)),
        gateway_rtp=split_range(RTP_LOW, RTP_LOW + 400 * gateways - 1, gateways),
        rasa_front=free_port(), rasa=tuple(free_port() for _ in range(servers)),
        actions_front=free_port(), actions=tuple(free_port() for _ in range(servers)),
        postgres=free_port(), redis=free_port())


@contextlib.contextmanager
def running_cluster(env: Mapping[str, str], ready_timeout_s: float = 300.0) -> Iterator[RunningCluster]:
    """The whole cluster on free ports in a temporary directory; everything stopped and removed on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="ivr-cluster-"))
    workdir.chmod(0o755)  # as root, PostgreSQL runs as the postgres user and must reach its data directory
    cluster = Cluster(free_layout(), workdir, Settings.from_env(dict(env)))
    running = RunningCluster(specs={}, workdir=workdir, cluster=cluster)
    try:
        _start_all(running, cluster.store_specs(env), timeout_s=60)
        cluster.create_databases()
        _start_all(running, cluster.app_specs(env), timeout_s=ready_timeout_s)
        # Answering is not serving: HAProxy marks the Rasa servers up after its first health checks (~2 s).
        if running.wait_healthy(timeout_s=60) is None:
            raise RuntimeError("the cluster answers but a gateway's /healthz is not 200: "
                               + "; ".join(running.log_tail(name, 400) for name in running.gateways))
        yield running
    finally:
        running.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


def _start_all(running: RunningCluster, specs, timeout_s: float) -> None:
    """Start them all at once (Rasa servers load in parallel), then wait for each in order."""
    for spec in specs:
        running.specs[spec.name] = spec
        running.start(spec.name)
    for spec in specs:
        running.wait_ready(spec.name, timeout_s=timeout_s)
