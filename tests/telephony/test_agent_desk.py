"""The stand-in agent desk (telephony/agent_desk.py) end to end: baresip calls the gateway's SIP door, the bot hands
off, baresip follows the REFER to the real desk process, which rings, answers and speaks; the gateway's time to agent
ends at the NOTIFY 200 (the desk answering), not at the REFER's 202. And the desk is loopback only."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from rtp_pcap import tone_pcm16
from bot.cdr import CdrWriter
from bot.screen_pop import ScreenPopStore, ref_tag
from settings import REPO_ROOT, Settings
from telephony.agent_desk import AgentDesk, NotLoopback, desk_address, screen_pop_reference
from telephony.rtp.ports import PortAllocator
from telephony.sip.transport import free_port
from telephony.sip.uui import encode_reference
from telephony.sip_calls import MediaEchoCall, SipCallBridge
from tests.telephony.sip.sip_test_support import Uac
from tests.telephony.sip_peers import BARESIP, BARESIP_MODULES, run_peer, wait_until, write_baresip_config

ANSWER_AFTER_S = 1.5


def private_rtp_range(offset: int) -> tuple[int, int]:
    """RTP ports of this test process's own (away from a running gateway and from the other SIP tests')."""
    rtp_min = 40000 + (os.getpid() % 40) * 200 + offset
    return rtp_min, rtp_min + 99


class SilentHandoffBot(MediaEchoCall):
    """Says nothing (so whatever baresip hears is the desk) and asks for an agent 0.3 s into the call."""

    results: list[tuple[bool, str]] = []

    def feed_audio(self, pcm16: bytes) -> None:
        pass

    async def start(self) -> None:
        await super().start()
        event = {"event": "handoff", "queue": "general", "priority": 1, "reason": "human_agent",
                 "context": {"intent": "human_agent", "verified": True, "customer_ref": None,
                             "green_channel": False, "call_id": self.info.call_id}}
        asyncio.get_running_loop().call_later(0.3, lambda: asyncio.ensure_future(self.on_handoff(event)))

    def transfer_result(self, ok: bool, detail: str = "") -> None:
        self.results.append((ok, detail))


async def start_desk_process(port: int, rtp: tuple[int, int], tmp_path: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "RTP_PORT_MIN": str(rtp[0]), "RTP_PORT_MAX": str(rtp[1]),
           "SIP_ROUTING": f"general=sip:general@127.0.0.1:{port}"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "telephony.agent_desk", "--answer-after", str(ANSWER_AFTER_S), "--hold", "20",
        cwd=str(REPO_ROOT), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True)
    seen = b""
    while f"agent desk on 127.0.0.1:{port}".encode() not in seen:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line, f"the agent desk did not start: {seen.decode(errors='replace')}"
        seen += line
    return process


@pytest.mark.integration
@pytest.mark.skipif(BARESIP is None or not BARESIP_MODULES.is_dir(), reason="baresip (Debian baresip-core) is needed")
async def test_a_transfer_reaches_the_stand_in_agent_and_time_to_agent_ends_at_its_answer(tmp_path):
    desk_port = free_port()
    desk = await start_desk_process(desk_port, private_rtp_range(100), tmp_path)
    base = Settings()
    gateway_rtp = private_rtp_range(0)
    settings = dataclasses.replace(base, sip=dataclasses.replace(
        base.sip, routing=f"general=sip:general@127.0.0.1:{desk_port}",
        rtp_port_min=gateway_rtp[0], rtp_port_max=gateway_rtp[1]))
    pops = ScreenPopStore(600.0)
    SilentHandoffBot.results = []
    bridge = SipCallBridge(settings, SilentHandoffBot, PortAllocator(*gateway_rtp),
                           cdr_writer=CdrWriter(tmp_path / "calls"), screen_pops=pops)
    refers: list = []
    forward = bridge.server._emit

    def spy(outputs):  # the REFER as it leaves the gateway
        refers.extend(o for o in outputs if getattr(o, "data", b"").startswith(b"REFER "))
        forward(outputs)

    bridge.server._emit = spy
    await bridge.start("127.0.0.1", free_port())
    try:
        microphone = tmp_path / "caller.wav"
        with wave.open(str(microphone), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(tone_pcm16(9.0))  # aufile hangs up at its end: longer than the test's calls
        write_baresip_config(tmp_path, microphone, caller_number="13800000001")
        config = tmp_path / "config"
        # two calls (the gateway's, then the desk's) need two RTP port pairs
        config.write_text(re.sub(r"rtp_ports (\d+)-\d+", lambda m: f"rtp_ports {m[1]}-{int(m[1]) + 3}",
                                 config.read_text()))
        host, port = bridge.address
        _, text = await run_peer([BARESIP, "-f", str(tmp_path), "-e", f"/dial sip:ivr@{host}:{port}", "-t", "7"],
                                 tmp_path, timeout=20)
        await wait_until(lambda: not bridge.legs, timeout=5.0)
    finally:
        await bridge.close()
        desk.send_signal(signal.SIGTERM)
        desk_output, _ = await asyncio.wait_for(desk.communicate(), 10)
    desk_log = desk_output.decode(errors="replace")
    assert f"Call established: sip:general@127.0.0.1:{desk_port}" in text, text[-3000:]
    assert "answered the call for general" in desk_log, desk_log[-2000:]
    assert SilentHandoffBot.results == [(True, "200 OK")]
    [cdr] = [json.loads(line) for path in (tmp_path / "calls").glob("cdr-*.jsonl")
             for line in path.read_text().splitlines()]
    assert (cdr["transfer_queue"], cdr["transfer_result"], cdr["outcome"], cdr["cause"]) == (
        "general", "ok", "transferred", "transferred")
    # the queue took the REFER at once (202); the agent answered after ringing ANSWER_AFTER_S (NOTIFY 200)
    assert cdr["refer_accepted_s"] < 0.5
    assert ANSWER_AFTER_S - 0.05 <= cdr["time_to_agent_s"] < ANSWER_AFTER_S + 3.0
    # the REFER carried the screen-pop's reference, and the pop is there for the agent
    [refer] = refers
    ref = re.search(rb"(?im)^x-ivr-context-ref: *([A-Za-z0-9_-]+)\r$", refer.data)
    assert ref and pops.get(ref.group(1).decode())["caller"] == "138****0001"
    # the desk spoke: the bot is silent, so anything loud baresip heard came from the desk
    loudest = 0.0
    for dump in tmp_path.glob("dump-*-dec.wav"):
        with wave.open(str(dump)) as heard:
            samples = np.frombuffer(heard.readframes(heard.getnframes()), dtype="<i2").astype(np.float64)
        if samples.size:
            loudest = max(loudest, float(np.abs(samples).max()))
    assert loudest > 2000, "the caller heard nothing from the agent desk"


def test_the_desk_stands_in_at_the_routing_tables_loopback_target_only():
    assert desk_address(Settings()) == ("127.0.0.1", 5070)
    base = Settings()
    pbx = dataclasses.replace(base, sip=dataclasses.replace(base.sip, routing="general=sip:general@10.1.2.3:5060"))
    assert desk_address(pbx) is None


async def test_the_desk_will_not_listen_beyond_loopback():
    desk = AgentDesk(Settings(), announcement=b"")
    for host in ("0.0.0.0", "::", "10.1.2.3", "desk.example.com"):
        with pytest.raises(NotLoopback):
            await desk.start(host, 0)


async def test_the_desk_ignores_peers_off_loopback_whatever_the_gateways_allow_list_says():
    base = Settings()
    open_settings = dataclasses.replace(base, sip=dataclasses.replace(base.sip, allow_cidrs="0.0.0.0/0,::/0",
                                                                      digest_user="u", digest_password="p" * 20))
    desk = await AgentDesk(open_settings, announcement=b"").start("127.0.0.1", 0)
    try:
        core = desk.server.core
        assert core.feed(Uac().invite(), ("192.0.2.7", 5060), 0.0) == []  # silently: no 100, no 401
        assert core.feed(Uac().invite(), ("127.0.0.1", 40000), 0.0) != []
    finally:
        await desk.close()


async def test_the_desk_logs_a_screen_pops_tag_never_its_reference_and_shows_the_page_on_a_console_only(
        caplog, capsys):
    """Whoever holds a reference can open the agent's page: the log gets its tag (a SHA-256 prefix), and only a
    desk told to (`--show-screen-pop`, a person's terminal) prints the address, on its console, not in the log."""
    ref = secrets.token_urlsafe(24)
    console = io.StringIO()
    shown = await AgentDesk(Settings(), announcement=b"", answer_after_s=60, show_screen_pop=True,
                            console=console, gateway_url="http://127.0.0.1:8080").start("127.0.0.1", 0)
    quiet = await AgentDesk(Settings(), announcement=b"", answer_after_s=60).start("127.0.0.1", 0)
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    logged = []
    try:
        with caplog.at_level(logging.INFO, logger="telephony.agent_desk"):
            for desk, header in ((shown, f"X-IVR-Context-Ref: {ref}"),
                                 (quiet, f"User-to-User: {encode_reference(ref)}")):
                caplog.clear()
                phone.sendto(Uac().invite(headers=header), desk.address)
                await wait_until(lambda: "ringing" in caplog.text, timeout=5.0)
                logged.append(caplog.text)
    finally:
        phone.close()
        await shown.close()
        await quiet.close()
    assert len(logged) == 2 and all(f"ringing; screen-pop {ref_tag(ref)}" in text for text in logged), logged
    assert not any(ref in text for text in logged)
    assert console.getvalue().splitlines() == [
        f"agent desk: screen-pop {ref_tag(ref)} for the call to ivr: http://127.0.0.1:8080/agent/{ref}"]
    assert ref not in capsys.readouterr().out  # the quiet desk printed nothing


def test_the_desk_finds_the_reference_in_user_to_user_or_x_ivr_context_ref_and_only_a_well_formed_one():
    ref = secrets.token_urlsafe(24)
    assert screen_pop_reference({"user-to-user": encode_reference(ref)}) == ref
    assert screen_pop_reference({"x-ivr-context-ref": ref}) == ref
    assert screen_pop_reference({"user-to-user": "04414243;purpose=other", "x-ivr-context-ref": ref}) == ref
    assert screen_pop_reference({"x-ivr-context-ref": "\x1b]0;owned\x07" + ref}) is None  # a terminal escape
    assert screen_pop_reference({"user-to-user": "04" + "1b5b324a" * 5}) is None
    assert screen_pop_reference({}) is None
    assert screen_pop_reference({"x-ivr-context-ref": ref + "\n"}) is None  # `$` would let a trailing newline in
    assert screen_pop_reference({"user-to-user": "04" + "41" * 20 + "0A"}) is None
    pops = ScreenPopStore(60)
    stored = pops.create({"intent": "check_balance"})
    assert pops.get(stored) is not None and pops.get(stored + "\n") is None
    assert screen_pop_reference({"x-ivr-context-ref": stored + "\n"}) is None


async def test_the_cli_refuses_a_host_off_loopback(tmp_path):
    code, output = await run_peer([sys.executable, "-m", "telephony.agent_desk", "--host", "0.0.0.0", "--port", "0"],
                                  REPO_ROOT, timeout=30)
    assert code == 2 and "loopback only" in output
