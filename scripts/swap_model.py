#!/usr/bin/env python3
"""Swap the running Rasa server(s) to the newest trained model without a restart (`make swap-model`).

    python scripts/swap_model.py                 # the single host's Rasa (settings.rasa.url)
    python scripts/swap_model.py --cluster       # each of `make cluster`'s Rasa servers (CLUSTER_RASA_SERVERS), in turn
    python scripts/swap_model.py --model /tmp/x/ivr.tar.gz --url http://127.0.0.1:5006

For each server: `GET /status` (skipped when it already runs the model), `PUT /model` with the model's path (Rasa's
own model endpoint, with RASA_TOKEN), then `GET /status` again: the swap counts only when the server reports the new
model's fingerprint (`model_id`, read from the archive's metadata.json). Servers are swapped one at a time and the
first failure stops the run, so a cluster is never left on a model that did not load, and at most one server is
busy loading at any moment.

What callers notice (Rasa 3.6, rasa/server.py `load_model`): the new model is loaded, then it replaces the server's
agent; the conversation lock store is carried over and conversations live in the tracker store, so conversations go
on where they were. A request already being handled finishes with the old model; the next one uses the new.
Loading runs on the server's event loop, so while it loads (seconds to tens of seconds) that server answers
nothing, not even a request already in progress that is waiting on the action server (measured: one turn waited the
whole 105 s load on a loaded 2-core machine). The gateway says 「请稍候」 after RASA_TIMEOUT_S and gives up with its
apology after its reply timeout (7 s), so on a single host the swap waits until the gateway (its /metrics) has no
call in progress (`--idle-timeout`, NLU_SWAP_IDLE_WAIT_S; `--now` skips the wait). In a cluster each server is
drained first through HAProxy's runtime API (the stats socket `make cluster` opens, scripts/cluster/haproxy.py):
`set server rasa/<name> state drain` (no new turn goes to it), wait until its current sessions are 0, PUT /model,
wait for the new model id, `state ready`, and wait until HAProxy reports it UP again before the next server, so at
most one server is out at any moment and no turn is sent to a loading server (docs/TRAINERS.md). `--now` swaps a
cluster without draining.
The wait passes only when the gateway answers with no call in progress, or when nothing listens at its address
(connection refused: no gateway runs); any other failure to ask (an error status, a timeout, an unreadable answer)
refuses the swap unless `--now`. A RASA_TOKEN that is unset, short or the repository's published default refuses the
swap for a Rasa that is not on loopback, and is warned about on loopback. Two swaps never run at once (a lock file
beside the models).
Exit status: 0 when every server runs the new model, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import io
import ipaddress
import json
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from settings import Settings, get_settings  # noqa: E402

# The gateway's gauge of calls in progress; imported lazily there, so that `model_fingerprint` loads in the Rasa
# venv too (scripts/nlu_delta.py, run by `make nlu-report`).

STATUS_TIMEOUT_S = 10.0


class SwapFailed(RuntimeError):
    """A server did not end up on the new model; the message says which and why."""


@dataclass(frozen=True)
class Swap:
    url: str
    before: str | None  # model_id before
    after: str  # model_id after
    seconds: float
    changed: bool


def newest_model(model_dir: Path) -> Path:
    models = sorted(model_dir.glob("*.tar.gz"), key=lambda path: path.stat().st_mtime)
    if not models:
        raise SwapFailed(f"no trained model in {model_dir}: run `make train` first")
    return models[-1].resolve()


def model_fingerprint(model: Path) -> str:
    """The model_id Rasa reports in /status for this archive (its metadata.json)."""
    try:
        with tarfile.open(model) as archive:
            for member in archive:
                if member.name in ("metadata.json", "./metadata.json"):
                    handle = archive.extractfile(member)
                    model_id = json.load(handle).get("model_id") if handle else None
                    if isinstance(model_id, str) and model_id:
                        return model_id
    except (OSError, tarfile.TarError, ValueError) as error:
        raise SwapFailed(f"{model} is not a readable Rasa model: {error}") from None
    raise SwapFailed(f"{model} has no model_id in its metadata.json: not a Rasa 3 model")


def cluster_servers(settings: Settings) -> list[tuple[str, str]]:
    """(URL, HAProxy server name) of each of `make cluster`'s Rasa servers."""
    from scripts.cluster.rasa_tier import rasa_name

    return [(url, rasa_name(i)) for i, url in enumerate(server_urls(settings, cluster=True))]


def server_urls(settings: Settings, *, cluster: bool) -> list[str]:
    """The single host's Rasa, or each Rasa server behind the cluster's front (not the front: HAProxy would pick)."""
    if not cluster:
        return [settings.rasa.url.rstrip("/")]
    from scripts.cluster.topology import Layout
    from scripts.stack import LOOPBACK

    return [f"http://{LOOPBACK}:{port}" for port in Layout.from_settings(settings).rasa]


def _request(method: str, url: str, token: str, *, body: dict | None = None, timeout_s: float) -> tuple[int, bytes]:
    full = f"{url}?{urllib.parse.urlencode({'token': token})}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(full, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (OSError, ValueError) as error:
        raise SwapFailed(f"{url}: no answer ({error})") from None


def running_model(server: str, token: str) -> str | None:
    status, payload = _request("GET", f"{server}/status", token, timeout_s=STATUS_TIMEOUT_S)
    if status == 409:  # no model loaded
        return None
    if status != 200:
        raise SwapFailed(f"{server}/status answered {status}: {payload[:200]!r}")
    try:
        return json.loads(payload).get("model_id")
    except (ValueError, AttributeError):
        raise SwapFailed(f"{server}/status did not answer JSON") from None


def swap_one(server: str, model: Path, expected: str, token: str, *, timeout_s: float) -> Swap:
    before = running_model(server, token)
    if before == expected:
        return Swap(server, before, expected, 0.0, changed=False)
    started = time.monotonic()
    try:
        status, payload = _request("PUT", f"{server}/model", token, body={"model_file": str(model)},
                                   timeout_s=timeout_s)
    except SwapFailed as error:
        raise SwapFailed(f"{error}; the server may still finish loading the model: check its /status before "
                         "swapping again") from None
    if status not in (200, 204):
        raise SwapFailed(f"{server}: PUT /model answered {status}: {payload[:300]!r}")
    after = running_model(server, token)
    if after != expected:
        raise SwapFailed(f"{server}: still reports model {after} after the swap, not {expected}")
    return Swap(server, before, after, round(time.monotonic() - started, 2), changed=True)


def gateway_url(host: str, port: int) -> str:
    """The gateway's own address as a client reaches it: a wildcard bind is asked on loopback, IPv6 bracketed."""
    host = host.strip().strip("[]") or "127.0.0.1"
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a name
    return f"http://{host}:{port}"


def _refused(error: BaseException) -> bool:
    reason = getattr(error, "reason", error)
    return isinstance(reason, ConnectionRefusedError) or isinstance(error, ConnectionRefusedError)


def active_calls(gateway_url: str) -> int | None:
    """Calls in progress on the gateway (its /metrics); None only when nothing listens there (connection refused:
    no gateway runs). Raises SwapFailed when it cannot tell: an answer that is not the metrics, a timeout."""
    from bot.metrics import ACTIVE_CALLS_METRIC

    try:
        with urllib.request.urlopen(f"{gateway_url}/metrics", timeout=STATUS_TIMEOUT_S) as answer:
            text = answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        raise SwapFailed(f"{gateway_url}/metrics answered {error.code}: cannot tell whether calls are in "
                         "progress") from None
    except (OSError, ValueError) as error:
        if _refused(error):
            return None
        raise SwapFailed(f"{gateway_url}/metrics did not answer ({error}): cannot tell whether calls are in "
                         "progress") from None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == ACTIVE_CALLS_METRIC:
            try:
                return int(float(value))
            except ValueError:
                raise SwapFailed(f"{gateway_url}/metrics: unreadable {ACTIVE_CALLS_METRIC} {value!r}") from None
    return 0  # the gauge appears with the first call


def wait_until_idle(gateway_url: str, *, timeout_s: float, poll_s: float = 1.0,
                    clock=time.monotonic, sleep=time.sleep) -> int | None:
    """Waits until the gateway has no call in progress; returns the last count (None: no gateway answering).
    Raises SwapFailed when calls are still in progress after `timeout_s`."""
    deadline = clock() + timeout_s
    while True:
        calls = active_calls(gateway_url)
        if not calls:
            return calls
        if clock() >= deadline:
            raise SwapFailed(f"{calls} call(s) still in progress on {gateway_url} after {timeout_s:g} s; nothing "
                             "swapped (try off-peak, or --now to swap anyway: those callers would wait for the load)")
        sleep(poll_s)


def swap_all(servers: list[str], model: Path, token: str, *, timeout_s: float) -> list[Swap]:
    expected = model_fingerprint(model)
    return [swap_one(server, model, expected, token, timeout_s=timeout_s) for server in servers]


class HAProxyRuntime:
    """HAProxy's runtime API on its stats socket: one command per connection, the answer read to its end."""

    def __init__(self, path: Path, backend: str = "rasa", *, timeout_s: float = 5.0) -> None:
        self.path, self.backend, self.timeout_s = path, backend, timeout_s

    def command(self, line: str) -> str:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(self.timeout_s)
                conn.connect(str(self.path))
                conn.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
        except OSError as error:
            raise SwapFailed(f"HAProxy's runtime API at {self.path} did not answer ({error}): is `make cluster` "
                             "running (started since the stats socket was added)?") from None
        return b"".join(chunks).decode("utf-8", "replace")

    def set_state(self, server: str, state: str) -> None:
        answer = self.command(f"set server {self.backend}/{server} state {state}").strip()
        if answer:  # HAProxy answers nothing when it did it
            raise SwapFailed(f"HAProxy refused `state {state}` for {self.backend}/{server}: {answer[:200]}")

    def server_stat(self, server: str) -> dict[str, str]:
        """The server's row of `show stat` (scur: current sessions; status: UP, DOWN, DRAIN, ...)."""
        text = self.command("show stat").lstrip("# ")
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("pxname") == self.backend and row.get("svname") == server:
                return row
        raise SwapFailed(f"HAProxy has no server {self.backend}/{server}")


def _wait_for(check, what: str, *, timeout_s: float, clock, sleep, poll_s: float = 0.2) -> None:
    deadline = clock() + timeout_s
    while not check():
        if clock() >= deadline:
            raise SwapFailed(f"{what} after {timeout_s:g} s")
        sleep(poll_s)


def swap_drained(runtime: HAProxyRuntime, servers: list[tuple[str, str]], model: Path, token: str, *,
                 timeout_s: float, drain_timeout_s: float, clock=time.monotonic, sleep=time.sleep) -> list[Swap]:
    """Each server in turn: drain it, wait for its sessions to end, swap, put it back and wait until it is UP."""
    expected = model_fingerprint(model)
    swaps = []
    for url, name in servers:
        if running_model(url, token) == expected:
            swaps.append(Swap(url, expected, expected, 0.0, changed=False))
            continue
        runtime.set_state(name, "drain")
        try:
            _wait_for(lambda: int(runtime.server_stat(name).get("scur") or 0) == 0,
                      f"{name} still has turns in progress", timeout_s=drain_timeout_s, clock=clock, sleep=sleep)
            swaps.append(swap_one(url, model, expected, token, timeout_s=timeout_s))
        finally:
            runtime.set_state(name, "ready")  # on either model it answers; a hung one stays out by its health check
        _wait_for(lambda: runtime.server_stat(name).get("status") in ("UP", "no check"),
                  f"HAProxy does not report {name} UP again", timeout_s=drain_timeout_s, clock=clock, sleep=sleep)
    return swaps


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="the model archive (default: the newest in RASA_MODEL_DIR)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--cluster", action="store_true", help="every Rasa server of `make cluster`")
    target.add_argument("--url", action="append", help="a Rasa server's URL (repeatable)")
    parser.add_argument("--now", action="store_true",
                        help="single host: swap without waiting for the gateway to have no call in progress")
    parser.add_argument("--idle-timeout", type=float, default=settings.trainer.swap_idle_wait_s,
                        help="single host: how long to wait for no call in progress (seconds)")
    parser.add_argument("--haproxy-socket", type=Path, default=None,
                        help="cluster: HAProxy's runtime API socket (default: CLUSTER_DIR/haproxy/haproxy.sock)")
    args = parser.parse_args(argv)
    try:
        model = Path(args.model).resolve() if args.model else newest_model(Path(settings.rasa.model_dir))
        servers = args.url or server_urls(settings, cluster=args.cluster)
        check_token(settings.rasa.token, servers)
        print(f"model {model.name} ({model_fingerprint(model)})")
        with one_swap_at_a_time(Path(settings.rasa.model_dir)):
            return _swap(args, settings, model, servers)
    except SwapFailed as error:
        print(f"swap failed: {error}", file=sys.stderr)
        return 1


def check_token(token: str, servers: list[str]) -> None:
    """RASA_TOKEN guards PUT /model (any model file on the server's disk): a published or weak one is refused for
    a Rasa reachable from other machines, and warned about on loopback."""
    from bot.web.access import is_loopback_host, token_problem

    problem = token_problem("RASA_TOKEN", token)
    if problem is None:
        return
    remote = [s for s in servers if not is_loopback_host(urllib.parse.urlsplit(s).hostname or "")]
    if remote:
        raise SwapFailed(f"{problem}: refusing to swap {', '.join(remote)} (set a long random RASA_TOKEN, the same "
                         "for Rasa and this script)")
    print(f"WARNING: {problem}: anyone on this machine can swap Rasa's model; set a long random RASA_TOKEN",
          file=sys.stderr)


@contextmanager
def one_swap_at_a_time(model_dir: Path) -> Iterator[None]:
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / ".swap-model.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SwapFailed("another `make swap-model` is running: wait for it") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _swap(args: argparse.Namespace, settings: Settings, model: Path, servers: list[str]) -> int:
    if args.cluster and not args.now:
        from scripts.cluster.haproxy import RASA_BACKEND, stats_socket

        path = args.haproxy_socket or stats_socket(Path(settings.cluster.workdir) / "haproxy")
        drain_s = settings.rasa_reply_timeout_s + 2.0  # a turn in flight ends within the proxy's server timeout
        swaps = swap_drained(HAProxyRuntime(path, RASA_BACKEND), cluster_servers(settings), model,
                             settings.rasa.token, timeout_s=settings.trainer.swap_timeout_s, drain_timeout_s=drain_s)
        _print_swaps(swaps)
        return 0
    if not args.cluster and not args.now:
        # One Rasa answers nothing while it loads: wait for a moment when no caller would notice.
        gateway = gateway_url(settings.gateway.host, settings.gateway.port)
        calls = wait_until_idle(gateway, timeout_s=args.idle_timeout)
        print(f"{gateway}: no call in progress" if calls == 0 else
              f"{gateway}: no gateway running (connection refused)")
    _print_swaps(swap_all(servers, model, settings.rasa.token, timeout_s=settings.trainer.swap_timeout_s))
    return 0


def _print_swaps(swaps: list[Swap]) -> None:
    for swap in swaps:
        if swap.changed:
            print(f"{swap.url}: {swap.before} -> {swap.after} in {swap.seconds:.1f} s")
        else:
            print(f"{swap.url}: already on {swap.after}")


if __name__ == "__main__":
    sys.exit(main())
