"""The SIP front: Kamailio (deploy/kamailio/kamailio.cfg, run by scripts/cluster/kamailio.py) before real gateways.

Each test starts its own Kamailio on a free port over two gateways, each a real SIP UAS of ours in echo mode
(`python -m telephony.sip_calls --echo`, its own RTP range; SIP_MAX_CALLS=0 makes one answer every INVITE 503), and
calls through the front with sipp (scenarios in tests/cluster/scenarios). The gateways' logs say which calls each
took ("INVITE from ... (Call-ID x)") and how they ended; Kamailio's log says what it decided ("FRONT ..." lines).
Where the test needs what a gateway received on the wire (headers, where a BYE came from), a scripted stub gateway
(tests/cluster/stub_gateway.py) stands in. Every process is stopped in the fixture's `finally`.

Probing runs every second with a threshold of 2 here (production: 10 s and 3), so a dead gateway is found in ~4 s.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Mapping, Sequence

import pytest

from scripts.cluster.kamailio import CONFIG, FR_INV_TIMER_MS, KamailioFront, kamailio_binary, kamailio_spec
from scripts.processes import Processes, free_port, is_answering
from scripts.stack import VOICE_PYTHON, ChildSpec
from tests.cluster.stub_gateway import StubGateway
from tests.telephony.sip_peers import SIPP, run_peer

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).parent / "scenarios"
LOOPBACK = "127.0.0.1"
FR_TIMER_S = 2.0  # the config's default: an INVITE nobody answers moves to the next gateway after this
FR_TRYING_S = 2.0  # the config's default: an INVITE answered 100 Trying and then nothing, the same
PROBE_INTERVAL_S = 1
PROBE_THRESHOLD = 2
RETRY_AFTER_S = 7  # not the default (10), so the test sees the parameter reach the reply
SIPP_TIMEOUT_S = 20

ANSWERED = re.compile(r"call=(\S+) INVITE from \S+ \(Call-ID ([^)]+)\)")
REFUSED = re.compile(r"INVITE from \S+ refused with (\d+) \(Call-ID ([^)]+)\)")
ENDED = re.compile(r"call=(\S+) ended \((\w+)\)")


def gateway_spec(name: str, port: int, index: int, env: Mapping[str, str]) -> ChildSpec:
    """One of our gateways in echo mode on `port`, with RTP ports of its own (20000 + 1000 * index, 1000 of them)."""
    rtp_min = 20000 + 1000 * index
    child_env = dict(os.environ, RTP_PORT_MIN=str(rtp_min), RTP_PORT_MAX=str(rtp_min + 999), **env)
    argv = (str(VOICE_PYTHON), "-m", "telephony.sip_calls", "--echo", "--host", LOOPBACK, "--port", str(port),
            "--log-level", "INFO")
    return ChildSpec(name, argv, f"tcp://{LOOPBACK}:{port}", child_env)


@dataclass(kw_only=True)
class Front(Processes):
    """Kamailio ("kamailio") and the gateways by name; stub gateways run in this test's event loop."""

    port: int
    gateway_ports: dict[str, int]
    stubs: Sequence[StubGateway] = ()
    sipp_runs: int = 0

    @property
    def address(self) -> tuple[str, int]:
        return LOOPBACK, self.port

    def uri(self, gateway: str) -> str:
        return f"sip:{LOOPBACK}:{self.gateway_ports[gateway]}"

    def log(self, name: str = "kamailio") -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def answered(self, gateway: str) -> list[str]:
        """Call-IDs of the INVITEs this gateway took."""
        return [match.group(2) for match in ANSWERED.finditer(self.log(gateway))]

    def refused(self, gateway: str) -> list[tuple[int, str]]:
        return [(int(match.group(1)), match.group(2)) for match in REFUSED.finditer(self.log(gateway))]

    def endings(self, gateway: str) -> dict[str, str]:
        """Call-ID -> how the gateway saw the call end."""
        text = self.log(gateway)
        sip_ids = {match.group(1): match.group(2) for match in ANSWERED.finditer(text)}
        return {sip_ids[match.group(1)]: match.group(2) for match in ENDED.finditer(text) if match.group(1) in sip_ids}

    def front_lines(self, needle: str) -> list[str]:
        """Kamailio's log lines holding `needle`, not followed by a digit (port 4123 is not port 41234)."""
        pattern = re.compile(re.escape(needle) + r"(?!\d)")
        return [line for line in self.log().splitlines() if pattern.search(line)]

    async def ready(self, name: str, timeout_s: float = 20.0) -> None:
        """Like Processes.wait_ready, without blocking the event loop the stub gateways answer from."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited with {self.procs[name].returncode}:\n{self.log_tail(name)}")
            if is_answering(self.http, self.specs[name].ready_url):
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{name} not answering after {timeout_s:g} s:\n{self.log_tail(name)}")

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> float:
        """Polls `condition`; seconds it took. Fails the test after `timeout_s`."""
        start = time.monotonic()
        while not condition():
            if time.monotonic() - start > timeout_s:
                pytest.fail(f"{what}: not within {timeout_s:g} s\nkamailio log tail:\n{self.log_tail('kamailio')}")
            await asyncio.sleep(0.02)
        return time.monotonic() - start

    async def sipp(self, scenario: str, workdir: Path, *extra: str, calls: int = 1) -> float:
        """`calls` calls of `scenario`, one at a time, through the front; fails the test unless all succeed.
        Returns the seconds sipp ran."""
        self.sipp_runs += 1
        error_log = workdir / f"sipp-{self.sipp_runs}-errors.log"
        argv = [SIPP or "sipp", f"{LOOPBACK}:{self.port}", "-sf", str(SCENARIOS / scenario), "-s", "ivr",
                "-i", LOOPBACK, "-mi", LOOPBACK, "-p", str(free_port()), "-mp", str(free_port()),
                "-m", str(calls), "-l", "1", "-r", "50", "-timeout", f"{SIPP_TIMEOUT_S - 5}s", "-timeout_error",
                "-nostdin", "-trace_err", "-error_file", str(error_log), *extra]
        start = time.monotonic()
        code, output = await run_peer(argv, workdir, SIPP_TIMEOUT_S)
        elapsed = time.monotonic() - start
        errors = error_log.read_text(errors="replace") if error_log.exists() else ""
        assert code == 0, (f"sipp {scenario} exited {code}\n{errors[-3000:]}\n{output[-1500:]}\n"
                           f"kamailio log tail:\n{self.log_tail('kamailio')}")
        return elapsed


StartFront = Callable[..., Awaitable[Front]]


@pytest.fixture
async def start_front(tmp_path: Path):
    """start_front(gateways={"a": {env}, ...}, stubs=[...], probe_interval_s=..., probe_threshold=...,
    fr_inv_timer_ms=...) -> Front."""
    if SIPP is None:
        pytest.fail("no sipp: install the Debian package `sip-tester` (make apt)")
    try:
        kamailio_binary()
    except FileNotFoundError as error:
        pytest.fail(str(error))  # `make test` installs it (scripts/install_apt.sh): missing is a broken setup
    # Not under tmp_path (0700 to root): as root Kamailio runs as the `kamailio` user, who must reach its files.
    workdir = Path(tempfile.mkdtemp(prefix="ivr-front-"))
    workdir.chmod(0o755)
    started: list[Front] = []
    stubs: list[StubGateway] = []

    async def start(gateways: Mapping[str, Mapping[str, str]] | None = None, stub_gateways: Sequence[StubGateway] = (),
                    probe_interval_s: int = PROBE_INTERVAL_S, probe_threshold: int = PROBE_THRESHOLD,
                    fr_inv_timer_ms: int = FR_INV_TIMER_MS) -> Front:
        gateways = gateways or {}
        for stub in stub_gateways:
            stubs.append(await stub.start())
        ports = {name: free_port() for name in gateways}
        specs = {name: gateway_spec(name, ports[name], index, env)
                 for index, (name, env) in enumerate(gateways.items())}
        targets = [(LOOPBACK, port) for port in ports.values()] + [stub.address for stub in stub_gateways]
        front_port = free_port()
        specs["kamailio"] = kamailio_spec(workdir / "kamailio", front_port, targets, dict(os.environ), probe_interval_s,
                                          probe_threshold=probe_threshold, fr_inv_timer_ms=fr_inv_timer_ms,
                                          retry_after_s=RETRY_AFTER_S)
        front = Front(specs=specs, workdir=workdir, port=front_port, gateway_ports=ports, stubs=stub_gateways)
        started.append(front)
        for name in specs:  # the gateways first, the front last (stop_all stops it first)
            front.start(name)
        for name in specs:
            await front.ready(name)
        return front

    try:
        yield start
    finally:
        for front in started:
            front.stop_all()
        for stub in stubs:
            stub.close()
        shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ dispatching


async def test_calls_spread_over_both_gateways(start_front: StartFront, tmp_path: Path):
    front = await start_front({"a": {}, "b": {}})
    await front.sipp("call_outbound_proxy.xml", tmp_path, calls=10)
    await front.sipp("call_outbound_proxy.xml", tmp_path, "-t", "t1", calls=2)  # callers on TCP, gateways on UDP

    a, b = front.answered("a"), front.answered("b")
    assert len(a) + len(b) == 12 and not set(a) & set(b), (a, b)
    assert len(a) == len(b) == 6, f"round-robin: a took {len(a)}, b took {len(b)}"
    # Each call's ACK and BYE reached the gateway that took it (through the front, on the caller's Route).
    await front.wait_for(lambda: front.endings("a") == dict.fromkeys(a, "remote_bye")
                         and front.endings("b") == dict.fromkeys(b, "remote_bye"), 3, "every call ended by its BYE")


async def test_killed_gateway_is_found_by_probing_and_skipped(start_front: StartFront, tmp_path: Path):
    front = await start_front({"a": {}, "b": {}})
    await front.sipp("call_outbound_proxy.xml", tmp_path, calls=2)
    assert len(front.answered("a")) == len(front.answered("b")) == 1

    front.kill("a")  # SIGKILL: a host lost, nothing said to anyone
    down_s = await front.wait_for(lambda: bool(front.front_lines(f"FRONT dst-down: gateway {front.uri('a')}")), 10,
                                  "the front marks the killed gateway down")
    print(f"\nkilled gateway marked down by probing after {down_s:.2f} s")
    assert down_s < 5.0
    assert not front.front_lines("no answer to INVITE"), "no call was placed: probing alone must find it"

    await front.sipp("call_outbound_proxy.xml", tmp_path, calls=4)
    assert len(front.answered("b")) == 5, "every new call lands on the survivor"
    assert len(front.front_lines(f"FRONT call to {front.uri('a')}")) == 1, "nothing more was sent to the dead one"

    front.start("a")  # back: one good probe returns it to the pool
    await front.ready("a")
    up_s = await front.wait_for(lambda: bool(front.front_lines(f"FRONT dst-up: gateway {front.uri('a')}")), 5,
                                "the front takes the restarted gateway back")
    print(f"restarted gateway back in the pool after {up_s:.2f} s")
    await front.sipp("call_outbound_proxy.xml", tmp_path, calls=2)
    assert len(front.answered("a")) == 2


async def test_invite_nobody_answers_is_retried_on_the_next_gateway(start_front: StartFront, tmp_path: Path):
    # Probing every 60 s: it cannot find the dead gateway during this test, only the calls can.
    front = await start_front({"a": {}, "b": {}}, probe_interval_s=60)
    await front.sipp("call_outbound_proxy.xml", tmp_path, calls=2)
    front.kill("a")

    # Round-robin sends one of the next two calls to the dead gateway: it waits FR_TIMER_S, then goes to b.
    durations = [await front.sipp("call_outbound_proxy.xml", tmp_path) for _ in range(3)]
    assert len(front.answered("b")) == 4, "every call after the kill was answered by the survivor"
    assert len(front.front_lines(f"FRONT gateway {front.uri('a')}: no answer to INVITE, marked down")) == 1
    assert front.front_lines(f"FRONT call retried on {front.uri('b')}")
    slow, fast = max(durations), min(durations)
    failover_s = slow - fast
    print(f"\ncall durations {[round(d, 2) for d in durations]} s: failover cost {failover_s:.2f} s")
    assert FR_TIMER_S - 0.2 <= failover_s < FR_TIMER_S + 1.5
    # Marked down by the call that found it dead: only that one call paid the timeout.
    assert sorted(durations)[1] < FR_TIMER_S, durations


async def test_gateway_answering_503_is_failed_over(start_front: StartFront, tmp_path: Path):
    front = await start_front({"full": {"SIP_MAX_CALLS": "0"}, "b": {}})
    await front.sipp("call_outbound_proxy.xml", tmp_path, calls=4)

    answered, refused = front.answered("b"), front.refused("full")
    assert len(answered) == 4 and front.answered("full") == []
    assert [status for status, _ in refused] == [503, 503], "round-robin offered it every other call"
    assert {call_id for _, call_id in refused} <= set(answered), "each refused call was taken by the other gateway"
    assert len(front.front_lines("503 to INVITE, trying the next")) == 2
    assert not front.front_lines("no answer to INVITE")


async def test_no_failover_once_a_gateway_has_rung(start_front: StartFront):
    # It rang at that gateway, then failed: the caller heard ringing from it, so the call is its own.
    ringing, ok = StubGateway("ringing", final=503, ring=True), StubGateway("ok")
    front = await start_front(stub_gateways=[ringing, ok])
    host, port = front.address
    finals = []
    for n in range(2):  # round-robin: one call starts at each gateway
        invite = request("INVITE", f"sip:ivr@{host}:{port}", front.address, call_id=f"rings-{n}")
        finals.append((await sip_request(front.address, invite)).split(" ", 2)[1])
    # The ringing gateway's 503 reaches the caller as 500: a proxy passes on no 503 (RFC 3261 §16.7, tm's
    # remap_503_500); only the front's own 503 says the whole service is unavailable.
    assert sorted(finals) == ["200", "500"], finals
    assert len(ringing.requests("INVITE")) == 1 and len({r.call_id for r in ok.requests("INVITE")}) == 1
    assert not front.front_lines("trying the next")


async def test_gateway_silent_after_100_trying_is_failed_over(start_front: StartFront):
    # Its SIP layer said 100 Trying, its call handling never answered. tm's fr_inv_timer runs from that 100: with
    # the ringing limit there (30 s) the caller waited 30 s for the next gateway; now FR_TRYING_S.
    stuck, ok = StubGateway("stuck", final=None), StubGateway("ok")
    front = await start_front(stub_gateways=[stuck, ok])
    answers = await calls_through(front, "trying", 2)  # round-robin: one call starts at each gateway

    (stuck_call,) = {r.call_id for r in stuck.requests("INVITE")}
    status, waited = answers[stuck_call]
    print(f"\ncall at the gateway stuck after 100 Trying: {status} from the other gateway after {waited:.2f} s")
    assert status == 200 and FR_TRYING_S - 0.2 <= waited < FR_TRYING_S + 1.5, answers[stuck_call]
    assert {r.call_id for r in ok.requests("INVITE")} == set(answers) and all(
        status == 200 for status, _ in answers.values()), answers
    stuck_uri = f"sip:{LOOPBACK}:{stuck.port}"
    assert front.front_lines(f"FRONT gateway {stuck_uri}: 100 Trying but no answer to INVITE, trying the next")
    await front.wait_for(lambda: [r.call_id for r in stuck.requests("CANCEL")] == [stuck_call], 3,
                         "the stuck gateway's branch is cancelled")
    assert not front.front_lines(f"FRONT dst-down: gateway {stuck_uri}"), "its probes still answer: it stays in"


async def test_gateway_silent_after_ringing_keeps_the_call(start_front: StartFront):
    # After a 18x the call is that gateway's (no failover), and the 18x gives it FR_INV_TIMER_MS (4 s here, 30 s in
    # production) instead of FR_TRYING_S for its answer; then the caller gets 408.
    ringing, ok = StubGateway("ringing", final=None, ring=True), StubGateway("ok")
    front = await start_front(stub_gateways=[ringing, ok], fr_inv_timer_ms=4000)
    answers = await calls_through(front, "ringing", 2)

    (ringing_call,) = {r.call_id for r in ringing.requests("INVITE")}
    status, waited = answers[ringing_call]
    print(f"\ncall at the gateway silent after 180: {status} after {waited:.2f} s")
    assert status == 408 and 4.0 - 0.2 <= waited < 4.0 + 1.5, answers[ringing_call]
    assert [status for call_id, (status, _) in answers.items() if call_id != ringing_call] == [200]
    assert ringing_call not in {r.call_id for r in ok.requests("INVITE")}
    assert not front.front_lines("trying the next")


async def test_no_gateway_left_is_503_with_retry_after(start_front: StartFront, tmp_path: Path):
    front = await start_front({"a": {"SIP_MAX_CALLS": "0"}, "b": {"SIP_MAX_CALLS": "0"}})
    await front.sipp("call_refused.xml", tmp_path)  # fails unless 503 with a Retry-After reaches the caller

    (status_a, call_a), = front.refused("a")
    (status_b, call_b), = front.refused("b")
    assert status_a == status_b == 503 and call_a == call_b, "both gateways were tried for the one call"
    assert front.front_lines("FRONT no gateway left: 503")


async def test_empty_pool_is_503_and_the_front_says_so_to_options(start_front: StartFront, tmp_path: Path):
    front = await start_front({"a": {}, "b": {}})
    assert (await sip_request(front.address, options(front.address))).startswith("SIP/2.0 200")
    front.kill("a")
    front.kill("b")
    await front.wait_for(lambda: all(front.front_lines(f"FRONT dst-down: gateway {front.uri(name)}") for name in "ab"),
                         10, "both marked down")

    await front.sipp("call_refused.xml", tmp_path)
    assert front.front_lines("FRONT no gateway: 503")
    reply = await sip_request(front.address, options(front.address))
    assert reply.startswith("SIP/2.0 503") and f"Retry-After: {RETRY_AFTER_S}" in reply, reply


# ------------------------------------------------------------------------------------------------ dialogs


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_bye_follows_the_record_route_to_the_gateway_that_answered(start_front: StartFront, tmp_path: Path,
                                                                           transport: str):
    stubs = [StubGateway("gw1"), StubGateway("gw2")]
    front = await start_front(stub_gateways=stubs)
    # The caller learns the route set from the 200 (the scenario fails if it names no front) and sends ACK and BYE
    # with it, to the gateway's Contact.
    await front.sipp("call_via_front.xml", tmp_path, "-t", transport, calls=2)

    for stub, other in (stubs, stubs[::-1]):
        invites = {request.call_id for request in stub.requests("INVITE")}
        assert len(invites) == 1, f"{stub.name} took {invites}"
        invite = stub.requests("INVITE")[0]
        assert any(f"{LOOPBACK}:{front.port}" in route for route in invite.all("record-route")), invite.text
        await front.wait_for(lambda: [r.call_id for r in stub.requests("BYE")] == list(invites), 3,
                             f"the BYE reaches {stub.name}")
        for method in ("ACK", "BYE"):
            requests = [r for r in stub.requests(method) if r.call_id in invites]
            assert requests, f"no {method} at {stub.name}"
            assert all(r.source == front.address for r in requests), f"{method} did not come through the front"
            assert not [r for r in other.requests(method) if r.call_id in invites], f"{method} reached {other.name}"


async def test_bye_to_our_gateway_follows_the_record_route(start_front: StartFront, tmp_path: Path):
    front = await start_front({"a": {}, "b": {}})
    await front.sipp("call_via_front.xml", tmp_path, calls=2)
    for gateway in ("a", "b"):
        answered = front.answered(gateway)
        assert len(answered) == 1
        await front.wait_for(lambda: front.endings(gateway) == dict.fromkeys(answered, "remote_bye"), 3,
                             f"the BYE reaches gateway {gateway}")


# ------------------------------------------------------------------------------------------------ the edge


async def test_forged_asserted_identity_never_reaches_a_gateway(start_front: StartFront, tmp_path: Path):
    # One gateway answers 503, so one of the two calls goes out twice (failover): every branch must be clean.
    busy, ok = StubGateway("busy", final=503), StubGateway("ok")
    front = await start_front(stub_gateways=[busy, ok])
    await front.sipp("call_forged_identity.xml", tmp_path, calls=2)

    assert len({r.call_id for r in busy.requests("INVITE")}) == 1
    assert len({r.call_id for r in ok.requests("INVITE")}) == 2
    for invite in busy.requests("INVITE") + ok.requests("INVITE"):
        assert invite.get("x-caller-note") == "kept", "the test sees the caller's headers"
        assert "13800000001" in (invite.get("from") or "")
        assert invite.get("p-asserted-identity") is None and invite.get("p-preferred-identity") is None, invite.text
        assert "95588" not in invite.text, invite.text


async def test_front_answers_for_itself_and_relays_only_to_its_gateways(start_front: StartFront):
    stub = StubGateway("gw")
    front = await start_front(stub_gateways=[stub])
    host, port = front.address

    reply = await sip_request(front.address, options(front.address, call_id="options-to-front"))
    assert reply.startswith("SIP/2.0 200"), reply
    assert not [r for r in stub.received if r.call_id == "options-to-front"], "OPTIONS to the front stays there"

    elsewhere = request("INVITE", "sip:someone@198.51.100.7", front.address, call_id="relay-attempt")
    assert (await sip_request(front.address, elsewhere)).startswith("SIP/2.0 403")

    # A forged in-dialog request (To tag, our Route) aimed past the gateways.
    forged = request("BYE", "sip:victim@198.51.100.7:5060", front.address, call_id="forged-bye", to_tag="x1",
                     extra=[f"Route: <sip:{host}:{port};lr>"])
    assert (await sip_request(front.address, forged)).startswith("SIP/2.0 403")

    register = request("REGISTER", f"sip:{host}:{port}", front.address, call_id="register")
    assert (await sip_request(front.address, register)).startswith("SIP/2.0 405")

    looped = request("INVITE", f"sip:ivr@{host}:{port}", front.address, call_id="looped", max_forwards=0)
    assert (await sip_request(front.address, looped)).startswith("SIP/2.0 483")
    assert not [r for r in stub.received if r.method != "OPTIONS"], "nothing of this reached the gateway"


async def test_tcp_message_without_content_length_is_not_relayed(start_front: StartFront):
    # Over a stream Content-Length is mandatory (RFC 3261 §18.3): where a message without one ends is a guess, and a
    # guess the front and a gateway could make differently (request smuggling). The front closes the connection.
    stub = StubGateway("gw")
    front = await start_front(stub_gateways=[stub])
    host, port = front.address

    def invite(call_id: str) -> str:
        text = request("INVITE", f"sip:ivr@{host}:{port}", front.address, call_id=call_id)
        return text.replace("Via: SIP/2.0/UDP", "Via: SIP/2.0/TCP")

    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(invite("no-length").replace("Content-Length: 0\r\n", "").encode())
        await writer.drain()
        try:
            received = await asyncio.wait_for(reader.read(), 5)  # until the front closes the connection
        except TimeoutError:
            pytest.fail(f"the front kept the connection open; INVITEs at the gateway: "
                        f"{[r.call_id for r in stub.requests('INVITE')]}")
        assert not received, received
    finally:
        writer.close()
    # The same INVITE with its Content-Length, on a new connection, is relayed and answered.
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(invite("with-length").encode())
        await writer.drain()
        replies = b""
        async with asyncio.timeout(5):
            while b"SIP/2.0 200" not in replies:
                replies += await reader.read(4096)
    finally:
        writer.close()
    assert [r.call_id for r in stub.requests("INVITE")] == ["with-length"]


def test_config_is_valid_with_every_option(tmp_path: Path):
    """`kamailio -c` on the command line kamailio_spec builds, with the optional flood limit on as well."""
    try:
        kamailio_binary()
    except FileNotFoundError as error:
        pytest.fail(str(error))
    front = KamailioFront(tmp_path)
    front.prepare([(LOOPBACK, 5080), (LOOPBACK, 5082)])
    for defines in ((), ("WITH_PIKE",)):
        argv = front.argv(free_port(), defines=defines)
        result = subprocess.run([*argv, "-c"], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0 and "config file ok" in result.stdout + result.stderr, result.stderr[-2000:]
    assert str(CONFIG) in argv


# ------------------------------------------------------------------------------------------------ raw SIP


def request(method: str, uri: str, front: tuple[str, int], *, call_id: str, to_tag: str | None = None,
            max_forwards: int = 70, extra: Sequence[str] = ()) -> str:
    """A request from a caller at 127.0.0.1 (the reply comes back to the sending socket: rport)."""
    to = f"<{uri}>" + (f";tag={to_tag}" if to_tag else "")
    return "\r\n".join([
        f"{method} {uri} SIP/2.0", f"Via: SIP/2.0/UDP {LOOPBACK}:9;branch=z9hG4bK-{call_id};rport",
        f"From: <sip:13800000001@{LOOPBACK}>;tag=caller", f"To: {to}", f"Call-ID: {call_id}",
        f"CSeq: 1 {method}", f"Contact: <sip:13800000001@{LOOPBACK}:9>", f"Max-Forwards: {max_forwards}", *extra,
        "Content-Length: 0", "", ""])


def options(front: tuple[str, int], call_id: str = "options") -> str:
    return request("OPTIONS", f"sip:{front[0]}:{front[1]}", front, call_id=call_id)


async def calls_through(front: Front, name: str, calls: int, timeout_s: float = 10.0) -> dict[str, tuple[int, float]]:
    """`calls` INVITEs through the front, one at a time: Call-ID -> (final status, seconds until it came)."""
    host, port = front.address
    answers = {}
    for n in range(calls):
        call_id = f"{name}-{n}"
        start = time.monotonic()
        reply = await sip_request(front.address, request("INVITE", f"sip:ivr@{host}:{port}", front.address,
                                                         call_id=call_id), timeout_s)
        answers[call_id] = (int(reply.split(" ", 2)[1]), time.monotonic() - start)
    return answers


async def sip_request(target: tuple[str, int], text: str, timeout_s: float = 3.0) -> str:
    """Sends one request over UDP; its first final response (provisional ones are skipped)."""
    loop = asyncio.get_running_loop()
    replies: asyncio.Queue[str] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr) -> None:
            replies.put_nowait(data.decode(errors="replace"))

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=target)
    try:
        transport.sendto(text.encode())
        async with asyncio.timeout(timeout_s):
            while True:
                reply = await replies.get()
                if not reply.startswith("SIP/2.0 1"):
                    return reply
    finally:
        transport.close()
