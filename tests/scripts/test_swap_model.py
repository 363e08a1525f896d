"""`make swap-model` (scripts/swap_model.py) against a stand-in speaking Rasa's model endpoints: the model's fingerprint
from its archive, PUT /model with the token, the swap counted only when /status reports the new fingerprint, one
server at a time, stopping at the first failure. The swap against a real Rasa server:
tests/integration/test_trainers_loop.py."""

from __future__ import annotations

import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from scripts import swap_model
from settings import Settings


def model_archive(path: Path, model_id: str) -> Path:
    data = json.dumps({"model_id": model_id}).encode()
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("metadata.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


class StandIn(http.server.ThreadingHTTPServer):
    """GET /status and PUT /model; `loads` says which model_id a loaded file gives (None: the load fails)."""

    def __init__(self, model_id: str, loads: dict[str, str | None]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.model_id, self.loads, self.puts = model_id, loads, []
        self.on_put = None  # called with the server while a PUT /model is handled

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    server: StandIn

    def _answer(self, status: int, body: object = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/":  # Rasa's root: HAProxy's health check
            return self._answer(200, "Hello from Rasa")
        if "token=tok" not in self.path:
            return self._answer(401, {"message": "bad token"})
        self._answer(200, {"model_id": self.server.model_id, "model_file": "x"})

    def do_PUT(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.puts.append((self.path, body))
        if self.server.on_put:
            self.server.on_put(self.server)
        loaded = self.server.loads.get(body["model_file"])
        if loaded is None:
            return self._answer(500, {"message": "LoadingError"})
        self.server.model_id = loaded
        self._answer(204)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def servers():
    running: list[StandIn] = []

    def start(model_id: str, loads: dict) -> StandIn:
        server = StandIn(model_id, loads)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        running.append(server)
        return server

    yield start
    for server in running:
        server.shutdown()


def test_each_server_is_swapped_and_checked_by_fingerprint(tmp_path, servers):
    model = model_archive(tmp_path / "ivr.tar.gz", "new-id")
    first, second = servers("old-id", {str(model): "new-id"}), servers("new-id", {})
    swaps = swap_model.swap_all([first.url, second.url], model, "tok", timeout_s=10)
    assert [(s.before, s.after, s.changed) for s in swaps] == [("old-id", "new-id", True), ("new-id", "new-id", False)]
    assert first.puts == [("/model?token=tok", {"model_file": str(model)})] and second.puts == []


def test_a_server_that_does_not_report_the_new_model_stops_the_run(tmp_path, servers):
    model = model_archive(tmp_path / "ivr.tar.gz", "new-id")
    stuck, failing, untouched = (servers("old-id", {str(model): "other-id"}), servers("old-id", {}),
                                 servers("old-id", {str(model): "new-id"}))
    with pytest.raises(swap_model.SwapFailed, match="still reports model other-id"):
        swap_model.swap_all([stuck.url, untouched.url], model, "tok", timeout_s=10)
    with pytest.raises(swap_model.SwapFailed, match="PUT /model answered 500"):
        swap_model.swap_all([failing.url, untouched.url], model, "tok", timeout_s=10)
    assert untouched.puts == []  # never half a cluster on a model that did not load
    with pytest.raises(swap_model.SwapFailed, match="401"):
        swap_model.swap_all([untouched.url], model, "wrong", timeout_s=10)


def test_what_is_not_a_model_is_refused_before_any_server_is_touched(tmp_path):
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(swap_model.SwapFailed, match="not a readable Rasa model"):
        swap_model.model_fingerprint(tmp_path / "junk.tar.gz")
    with pytest.raises(swap_model.SwapFailed, match="no model_id"):
        with tarfile.open(tmp_path / "empty.tar.gz", "w:gz"):
            pass
        swap_model.model_fingerprint(tmp_path / "empty.tar.gz")
    with pytest.raises(swap_model.SwapFailed, match="no trained model"):
        swap_model.newest_model(tmp_path / "none")


def test_the_servers_are_the_single_hosts_or_each_of_the_clusters():
    settings = Settings.from_env({"RASA_URL": "http://127.0.0.1:5005/", "RASA_PORT": "5005",
                                  "CLUSTER_RASA_SERVERS": "3"})
    assert swap_model.server_urls(settings, cluster=False) == ["http://127.0.0.1:5005"]
    assert swap_model.server_urls(settings, cluster=True) == [f"http://127.0.0.1:{p}" for p in (5006, 5007, 5008)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_single_host_swap_waits_for_no_call_in_progress(monkeypatch):
    counts = iter([2, 1, 0])
    monkeypatch.setattr(swap_model, "active_calls", lambda url: next(counts))
    clock = Clock()
    assert swap_model.wait_until_idle("http://gw", timeout_s=60, clock=clock, sleep=clock.sleep) == 0
    assert clock.now == 2.0
    monkeypatch.setattr(swap_model, "active_calls", lambda url: 3)
    with pytest.raises(swap_model.SwapFailed, match="3 call.*still in progress"):
        swap_model.wait_until_idle("http://gw", timeout_s=5, clock=clock, sleep=clock.sleep)


def test_active_calls_are_read_from_the_gateways_metrics(servers):
    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"# HELP ivr_voice_active_calls x\nivr_voice_active_calls 2.0\nivr_other 5.0\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    gateway = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    try:
        assert swap_model.active_calls(f"http://127.0.0.1:{gateway.server_address[1]}") == 2
    finally:
        gateway.shutdown()
    assert swap_model.active_calls("http://127.0.0.1:9") is None  # no gateway: nobody to protect


def test_make_swap_model_waits_for_the_gateway_then_swaps(tmp_path, servers, monkeypatch, capsys):
    base = Settings()
    settings = Settings.from_env({"RASA_TOKEN": "tok", "RASA_MODEL_DIR": str(tmp_path), "GATEWAY_PORT": "9"})
    monkeypatch.setattr(swap_model, "get_settings", lambda: settings)
    model = model_archive(tmp_path / "ivr.tar.gz", "new-id")
    rasa = servers("old-id", {str(model): "new-id"})
    waited: list[str] = []
    monkeypatch.setattr(swap_model, "wait_until_idle", lambda url, timeout_s: waited.append(url) or 0)
    assert swap_model.main(["--url", rasa.url]) == 0
    assert waited == ["http://127.0.0.1:9"] and rasa.model_id == "new-id"
    assert "old-id -> new-id" in capsys.readouterr().out
    assert swap_model.main(["--url", rasa.url, "--now"]) == 0 and len(waited) == 1  # --now: no wait
    assert base.trainer.swap_idle_wait_s > 0


def test_the_idle_wait_passes_only_when_no_gateway_listens(monkeypatch):
    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    failing = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=failing.serve_forever, daemon=True).start()
    import socket

    silent = socket.socket()  # accepts connections (the backlog) and never answers: a gateway too busy to answer
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    monkeypatch.setattr(swap_model, "STATUS_TIMEOUT_S", 0.5)
    try:
        with pytest.raises(swap_model.SwapFailed, match="answered 503"):
            swap_model.active_calls(f"http://127.0.0.1:{failing.server_address[1]}")
        with pytest.raises(swap_model.SwapFailed, match="cannot tell"):
            swap_model.active_calls(f"http://127.0.0.1:{silent.getsockname()[1]}")
        clock = Clock()
        with pytest.raises(swap_model.SwapFailed, match="cannot tell"):
            swap_model.wait_until_idle(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=60, clock=clock,
                                       sleep=clock.sleep)
    finally:
        failing.shutdown()
        silent.close()


@pytest.mark.parametrize("host,url", [
    ("0.0.0.0", "http://127.0.0.1:8080"), ("::", "http://[::1]:8080"), ("::1", "http://[::1]:8080"),
    ("[fe80::1]", "http://[fe80::1]:8080"), ("127.0.0.1", "http://127.0.0.1:8080"),
    ("gw.local", "http://gw.local:8080"),
])
def test_the_gateway_is_asked_at_an_address_a_client_can_reach(host, url):
    assert swap_model.gateway_url(host, 8080) == url


def test_a_main_that_cannot_ask_the_gateway_swaps_nothing(tmp_path, servers, monkeypatch, capsys):
    settings = Settings.from_env({"RASA_TOKEN": "tok", "RASA_MODEL_DIR": str(tmp_path), "GATEWAY_PORT": "9"})
    monkeypatch.setattr(swap_model, "get_settings", lambda: settings)
    model = model_archive(tmp_path / "ivr.tar.gz", "new-id")
    rasa = servers("old-id", {str(model): "new-id"})

    def cannot_tell(url):
        raise swap_model.SwapFailed("http://gw/metrics answered 500: cannot tell whether calls are in progress")

    monkeypatch.setattr(swap_model, "active_calls", cannot_tell)
    assert swap_model.main(["--url", rasa.url]) == 1
    assert rasa.model_id == "old-id" and rasa.puts == [] and "cannot tell" in capsys.readouterr().err


def test_a_published_rasa_token_is_refused_for_a_remote_rasa_and_warned_about_on_loopback(capsys):
    from settings import RasaSettings

    published = RasaSettings().token
    with pytest.raises(swap_model.SwapFailed, match="published"):
        swap_model.check_token(published, ["http://10.0.0.5:5005"])
    swap_model.check_token(published, ["http://127.0.0.1:5005"])
    assert "WARNING" in capsys.readouterr().err
    swap_model.check_token("k" * 40, ["http://10.0.0.5:5005"])


def test_two_swaps_never_run_at_once(tmp_path):
    with swap_model.one_swap_at_a_time(tmp_path):
        with pytest.raises(swap_model.SwapFailed, match="another"):
            with swap_model.one_swap_at_a_time(tmp_path):
                pass
    with swap_model.one_swap_at_a_time(tmp_path):
        pass



def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_cluster_server_is_drained_in_haproxy_while_it_loads_and_back_up_before_the_next(tmp_path, servers):
    """Against a real HAProxy started with `make cluster`'s configuration (scripts/cluster/haproxy.py)."""
    import os
    import shutil
    import subprocess
    import time

    from scripts.cluster.haproxy import haproxy_bin, haproxy_spec, stats_socket

    if not shutil.which(haproxy_bin()) and not os.path.exists(haproxy_bin()):
        pytest.skip("haproxy is not installed")
    model = model_archive(tmp_path / "ivr.tar.gz", "new-id")
    rasa = [servers("old-id", {str(model): "new-id"}) for _ in range(2)]
    workdir = tmp_path / "haproxy"
    spec = haproxy_spec(workdir, _free_port(), [r.server_address[1] for r in rasa], _free_port(), [_free_port()], {})
    runtime = swap_model.HAProxyRuntime(stats_socket(workdir.resolve()))
    seen: list[tuple[str, str]] = []

    def during_put(server) -> None:  # what HAProxy says about every Rasa server while this one loads
        seen.extend((name, runtime.server_stat(name)["status"]) for name in ("rasa1", "rasa2"))

    for server in rasa:
        server.on_put = during_put
    haproxy = subprocess.Popen(spec.argv, env=dict(spec.env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if all(runtime.server_stat(n)["status"] == "UP" for n in ("rasa1", "rasa2")):
                    break
            except swap_model.SwapFailed:
                pass
            time.sleep(0.1)
        assert oct(stats_socket(workdir.resolve()).stat().st_mode & 0o777) == "0o600"
        swaps = swap_model.swap_drained(runtime, [(rasa[0].url, "rasa1"), (rasa[1].url, "rasa2")], model, "tok",
                                        timeout_s=10, drain_timeout_s=15)
        after = [runtime.server_stat(n)["status"] for n in ("rasa1", "rasa2")]
    finally:
        haproxy.terminate()
        haproxy.wait(timeout=10)
    assert [s.changed for s in swaps] == [True, True] and [r.model_id for r in rasa] == ["new-id", "new-id"]
    # while rasa1 loaded it was drained and rasa2 served; then the other way round, never both out
    assert seen == [("rasa1", "DRAIN"), ("rasa2", "UP"), ("rasa1", "UP"), ("rasa2", "DRAIN")]
    assert after == ["UP", "UP"]


def test_a_drain_that_does_not_end_puts_the_server_back_and_swaps_nothing(tmp_path, servers):
    class Runtime:
        def __init__(self) -> None:
            self.commands: list[str] = []

        def set_state(self, server: str, state: str) -> None:
            self.commands.append(f"{server} {state}")

        def server_stat(self, server: str) -> dict:
            return {"scur": "1", "status": "DRAIN"}

    model = model_archive(tmp_path / "ivr.tar.gz", "new-id")
    rasa = servers("old-id", {str(model): "new-id"})
    runtime, clock = Runtime(), Clock()
    with pytest.raises(swap_model.SwapFailed, match="still has turns in progress"):
        swap_model.swap_drained(runtime, [(rasa.url, "rasa1")], model, "tok", timeout_s=10, drain_timeout_s=5,
                                clock=clock, sleep=clock.sleep)
    assert runtime.commands == ["rasa1 drain", "rasa1 ready"] and rasa.puts == []
