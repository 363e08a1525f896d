"""The SIP door end to end: sipp with real G.711 media and RFC 4733 DTMF against SipCallBridge + RTP,
with a media-only echo bot. Checks audio reaches the bot, comes back non-silent, DTMF arrives, and that
every port and task is released after the calls; and the door's books: one CDR line per call, the time to
agent, hold without a media-timeout hang-up, `call=<id>` on every log line, and no keypad key in any log."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import wave
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from rtp_pcap import tone_pcm16, write_pcmu_pcap
from settings import Settings
from bot.cdr import CdrWriter
from telephony.rtp.ports import PortAllocator
from telephony.sip.transport import free_port
from telephony.sip.uas import CallAnswered
from telephony.sip_calls import MediaEchoCall, SipCallBridge
from tests.telephony.sip_peers import (
    BARESIP, BARESIP_MODULES, SIPP, run_peer, run_sipp, wait_until, write_baresip_config,
)

PCAP = Path("/usr/share/sip-tester/g711a.pcap")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(SIPP is None or not PCAP.exists(), reason="sipp and its pcaps (Debian sip-tester) are needed"),
]


def private_rtp_range() -> tuple[int, int]:
    """An RTP range of this test process's own, away from a gateway a teammate may be running."""
    rtp_min = 31000 + (os.getpid() % 80) * 100
    return rtp_min, rtp_min + 99


class RecordingEchoCall(MediaEchoCall):
    """The echo bot, remembering how loud the caller's audio was and what it echoed."""

    instances: list["RecordingEchoCall"] = []

    def __init__(self, info):
        super().__init__(info)
        self.frames_in = 0
        self.loudest_rms = 0.0
        self.instances.append(self)

    def feed_audio(self, pcm16: bytes) -> None:
        samples = np.frombuffer(pcm16, dtype=np.int16).astype(np.float64)
        if samples.size:
            self.loudest_rms = max(self.loudest_rms, float(np.sqrt(np.mean(samples**2))))
        self.frames_in += 1
        super().feed_audio(pcm16)


def read_cdrs(directory: Path) -> list[dict]:
    paths = sorted(directory.glob("cdr-*.jsonl"))
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def bridge(tmp_path):
    base = Settings()
    rtp_min, rtp_max = private_rtp_range()
    settings = dataclasses.replace(base, sip=dataclasses.replace(base.sip, rtp_port_min=rtp_min, rtp_port_max=rtp_max))
    RecordingEchoCall.instances = []
    sip_bridge = SipCallBridge(settings, RecordingEchoCall, PortAllocator(rtp_min, rtp_max),
                               cdr_writer=CdrWriter(tmp_path / "calls"))
    await sip_bridge.start("127.0.0.1", free_port())
    stats: list = []
    sip_bridge.on_call_closed = lambda call, rtp_stats: stats.append(rtp_stats)
    try:
        yield sip_bridge, stats
    finally:
        await sip_bridge.close()


async def test_pcma_audio_and_rfc4733_dtmf_are_echoed(bridge, tmp_path):
    sip_bridge, stats = bridge
    await run_sipp("pcma_pcap_dtmf.xml", sip_bridge.address, tmp_path)
    await wait_until(lambda: not sip_bridge.legs)
    [echo] = RecordingEchoCall.instances
    assert echo.started and echo.stopped
    assert echo.frames_in > 50 and echo.loudest_rms > 500, "the caller's speech did not reach the bot"
    assert echo.dtmf == ["1"]
    [rtp] = stats
    assert rtp.packets_in > 50 and rtp.packets_out > 50, "no RTP came back"
    assert sip_bridge.allocator.in_use == frozenset()
    [cdr] = read_cdrs(tmp_path / "calls")
    assert (cdr["door"], cdr["codec"], cdr["cause"], cdr["outcome"]) == ("sip", "PCMA", "remote_bye", "completed")
    assert cdr["caller"] == "138****0001" and cdr["call_id"] == echo.info.call_id and cdr["peer_call_id"]
    assert (cdr["packets_in"], cdr["packets_out"], cdr["packets_lost"]) == (rtp.packets_in, rtp.packets_out,
                                                                            rtp.packets_lost)
    assert cdr["jitter_ms"] == rtp.jitter_ms and cdr["started_at"] <= cdr["answered_at"] <= cdr["ended_at"]


async def test_twenty_concurrent_calls_with_audio_leave_nothing_behind(bridge, tmp_path):
    sip_bridge, stats = bridge
    tasks_before = len(asyncio.all_tasks())
    await run_sipp("pcma_pcap_dtmf.xml", sip_bridge.address, tmp_path, "-l", "20", "-r", "20", calls=20)
    await wait_until(lambda: not sip_bridge.legs, timeout=5.0)
    assert len(RecordingEchoCall.instances) == 20
    assert all(echo.stopped and echo.loudest_rms > 500 for echo in RecordingEchoCall.instances)
    assert len(stats) == 20 and all(s.packets_out > 50 for s in stats)
    assert len(read_cdrs(tmp_path / "calls")) == 20
    assert sip_bridge.legs == {} and sip_bridge.server.active_calls == []
    assert sip_bridge.allocator.in_use == frozenset()
    assert len(asyncio.all_tasks()) <= tasks_before


@pytest.mark.skipif(BARESIP is None or not BARESIP_MODULES.is_dir(), reason="baresip (Debian baresip-core) is needed")
async def test_baresip_places_a_call_and_hears_its_audio_back(bridge, tmp_path):
    sip_bridge, stats = bridge
    tone = tmp_path / "tone.wav"
    sample_rate, seconds = 8000, 2.5
    samples = (8000 * np.sin(2 * np.pi * 440 * np.arange(int(sample_rate * seconds)) / sample_rate)).astype("<i2")
    with wave.open(str(tone), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(samples.tobytes())
    write_baresip_config(tmp_path, tone, caller_number="13800000002")
    host, port = sip_bridge.address
    _, text = await run_peer([BARESIP, "-f", str(tmp_path), "-e", f"/dial sip:ivr@{host}:{port}", "-t", "8"],
                             tmp_path, timeout=15)
    assert "Call established" in text, text[-2000:]
    await wait_until(lambda: not sip_bridge.legs)
    [heard] = list(tmp_path.glob("dump-*-dec.wav"))
    with wave.open(str(heard)) as dump:
        received = np.frombuffer(dump.readframes(dump.getnframes()), dtype="<i2").astype(np.float64)
    assert received.size > sample_rate, "baresip received less than a second of audio"
    assert np.sqrt(np.mean(received**2)) > 1000, "the audio that came back is silence"
    assert [s.packets_out > 50 for s in stats] == [True]
    assert sip_bridge.allocator.in_use == frozenset()


class HandoffBot(MediaEchoCall):
    """A bot that asks for an agent as soon as the call starts, and hangs up if the transfer fails."""

    queue = "general"
    results: list[tuple[bool, str]] = []

    async def start(self) -> None:
        await super().start()
        event = {"event": "handoff", "queue": self.queue, "priority": 1, "reason": "human_agent",
                 "context": {"intent": "human_agent", "verified": True, "customer_ref": "c-1", "green_channel": False,
                             "call_id": self.info.call_id}}
        asyncio.get_running_loop().call_later(0.2, lambda: asyncio.ensure_future(self.on_handoff(event)))

    def transfer_result(self, ok: bool, detail: str = "") -> None:
        self.results.append((ok, detail))
        if not ok:
            asyncio.ensure_future(self.on_hangup())


@pytest.mark.parametrize("queue,scenario,expected_ok", [
    ("general", "refer_accepted.xml", True),  # REFER, NOTIFY 200, we BYE
    ("premium_rate", "bye_from_ivr.xml", False),  # not in the routing table: no REFER, the bot hangs up
])
async def test_bot_handoff_becomes_a_refer_only_inside_the_routing_table(bridge, tmp_path, queue, scenario, expected_ok):
    sip_bridge, _ = bridge
    sip_bridge.call_factory = HandoffBot
    HandoffBot.queue, HandoffBot.results = queue, []
    await run_sipp(scenario, sip_bridge.address, tmp_path)
    await wait_until(lambda: not sip_bridge.legs)
    assert [ok for ok, _ in HandoffBot.results] == [expected_ok]
    assert sip_bridge.allocator.in_use == frozenset()


async def test_gateway_hook_serves_calls_with_the_apps_voice_runtime(tmp_path):
    from aiohttp import web

    from bot.web.voice_loop import VoiceLoop
    from telephony.sip_calls import add_sip_service

    class Runtime:  # the gateway's VoiceRuntime, reduced to what the SIP door uses
        created: list = []

        def create_call(self, info):
            call = RecordingEchoCall(info)
            self.created.append(call)
            return call

    base = Settings()
    port = free_port()
    rtp_min, rtp_max = private_rtp_range()
    settings = dataclasses.replace(base, sip=dataclasses.replace(base.sip, host="127.0.0.1", port=port,
                                                                   rtp_port_min=rtp_min, rtp_port_max=rtp_max),
                                   gateway=dataclasses.replace(base.gateway, call_records_dir=str(tmp_path / "calls")))
    app = web.Application()
    runtime = Runtime()
    add_sip_service(app, VoiceLoop(settings, runtime), settings=settings)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await run_sipp("basic_call.xml", ("127.0.0.1", port), tmp_path)
        await wait_until(lambda: runtime.created and runtime.created[0].stopped)
        assert runtime.created[0].info.caller_number == "13800000001"
        await wait_until(lambda: bool(read_cdrs(tmp_path / "calls")))
        assert [cdr["door"] for cdr in read_cdrs(tmp_path / "calls")] == ["sip"]  # the gateway writes CDRs
    finally:
        await runner.cleanup()


async def test_pcmu_call_is_answered_in_pcmu_and_echoed(bridge, tmp_path):
    sip_bridge, stats = bridge
    answered_codecs: list[str] = []
    forward = sip_bridge.server.on_event

    def record_codecs(event) -> None:
        if isinstance(event, CallAnswered) and event.call.media is not None:
            answered_codecs.append(event.call.media.codec)
        forward(event)

    sip_bridge.server.on_event = record_codecs
    write_pcmu_pcap(tmp_path / "pcmu_tone.pcap", tone_pcm16(2.0))
    await run_sipp("pcmu_pcap.xml", sip_bridge.address, tmp_path)
    await wait_until(lambda: not sip_bridge.legs)
    [echo] = RecordingEchoCall.instances
    assert answered_codecs == ["PCMU"]
    assert echo.frames_in > 50 and echo.loudest_rms > 3000  # the 8000-amplitude tone, decoded from mu-law
    assert [s.packets_out > 50 for s in stats] == [True]


class GreenChannelBot(HandoffBot):
    """Asks for an agent like the dialogue does for an elderly caller: green channel, elderly queue."""

    queue = "elderly_priority"

    async def start(self) -> None:
        self.started = True
        event = {"event": "handoff", "queue": self.queue, "priority": 9, "reason": "green_channel",
                 "context": {"intent": "green_channel", "verified": False, "customer_ref": None,
                             "green_channel": True, "call_id": self.info.call_id}}
        asyncio.get_running_loop().call_later(0.2, lambda: asyncio.ensure_future(self.on_handoff(event)))


async def test_green_channel_transfer_is_timed_from_handoff_to_the_agent_answering_and_recorded(bridge, tmp_path):
    sip_bridge, _ = bridge
    sip_bridge.call_factory = GreenChannelBot
    GreenChannelBot.results = []
    timed = dict(queue="elderly_priority", green_channel="true")
    before = (metric("ivr_time_to_agent_seconds_count", **timed), metric("ivr_time_to_agent_seconds_sum", **timed),
              metric("ivr_telephony_calls_total", door="sip", outcome="transferred"))
    await run_sipp("refer_accepted.xml", sip_bridge.address, tmp_path)
    await wait_until(lambda: not sip_bridge.legs)
    assert [ok for ok, _ in GreenChannelBot.results] == [True]
    [cdr] = read_cdrs(tmp_path / "calls")
    assert cdr["transfer_queue"] == "elderly_priority" and cdr["transfer_uri"] == "sip:elderly@127.0.0.1:5070"
    assert (cdr["transfer_result"], cdr["green_channel"], cdr["outcome"]) == ("ok", True, "transferred")
    # time to agent: from our answer, through the handoff (0.2 s after the ACK), to sipp's NOTIFY 200, which follows
    # its 202 and a NOTIFY 100; the 202 from the handoff
    assert 0.0 <= cdr["refer_accepted_s"] < 0.2 <= cdr["time_to_agent_s"] < 1.5
    assert metric("ivr_time_to_agent_seconds_count", **timed) == before[0] + 1
    assert metric("ivr_time_to_agent_seconds_sum", **timed) - before[1] == pytest.approx(cdr["time_to_agent_s"],
                                                                                          abs=0.002)
    assert metric("ivr_telephony_calls_total", door="sip", outcome="transferred") == before[2] + 1


async def test_refused_transfer_is_recorded_without_a_time_to_agent(bridge, tmp_path):
    sip_bridge, _ = bridge
    sip_bridge.call_factory = HandoffBot
    HandoffBot.queue, HandoffBot.results = "premium_rate", []
    refused_before = metric("ivr_telephony_transfers_total", queue="unrouted", result="failed")
    await run_sipp("bye_from_ivr.xml", sip_bridge.address, tmp_path)
    await wait_until(lambda: not sip_bridge.legs)
    [cdr] = read_cdrs(tmp_path / "calls")
    assert (cdr["transfer_queue"], cdr["transfer_uri"], cdr["transfer_result"]) == ("premium_rate", None, "failed")
    assert cdr["time_to_agent_s"] is None and cdr["outcome"] == "completed" and cdr["cause"] == "bot_hangup"
    assert metric("ivr_telephony_transfers_total", queue="unrouted", result="failed") == refused_before + 1


async def test_a_caller_on_hold_is_not_hung_up_for_silence_but_is_after_unhold(tmp_path):
    """re-INVITE a=inactive must stop the media timeout (1 s here); a=sendrecv without RTP restarts it."""
    base = Settings()
    rtp_min, rtp_max = private_rtp_range()
    settings = dataclasses.replace(base, sip=dataclasses.replace(
        base.sip, rtp_port_min=rtp_min, rtp_port_max=rtp_max, media_timeout_s=1.0))
    sip_bridge = SipCallBridge(settings, MediaEchoCall, PortAllocator(rtp_min, rtp_max),
                               cdr_writer=CdrWriter(tmp_path / "calls"))
    await sip_bridge.start("127.0.0.1", free_port())
    try:
        await run_sipp("hold_inactive.xml", sip_bridge.address, tmp_path)  # fails on a BYE while held
        await wait_until(lambda: not sip_bridge.legs)
    finally:
        await sip_bridge.close()
    [cdr] = read_cdrs(tmp_path / "calls")
    assert (cdr["cause"], cdr["outcome"]) == ("media_timeout", "failed")
    assert cdr["duration_s"] > 2.5  # held through 2.5 media timeouts
    assert sip_bridge.allocator.in_use == frozenset()


async def test_every_log_line_of_a_call_carries_its_call_id(bridge, tmp_path, caplog):
    sip_bridge, _ = bridge
    with caplog.at_level(logging.DEBUG, logger="telephony"):
        await run_sipp("pcma_pcap_dtmf.xml", sip_bridge.address, tmp_path)
        await wait_until(lambda: not sip_bridge.legs)
    [echo] = RecordingEchoCall.instances
    lines = [r for r in caplog.records if r.name.startswith("telephony")]
    assert len(lines) >= 5  # INVITE, answered, RTP latched, dtmf, ended at least
    for record in lines:
        assert record.getMessage().startswith(f"call={echo.info.call_id} "), record.getMessage()
        assert record.call_id == echo.info.call_id


@pytest.mark.parametrize("scenario,keys", [
    ("info_dtmf.xml", ["5", "#"]),  # SIP INFO application/dtmf-relay
    ("pcma_pcap_dtmf.xml", ["1"]),  # RFC 4733 telephone-event in RTP
])
async def test_keypad_keys_never_appear_in_the_logs(bridge, tmp_path, caplog, scenario, keys):
    sip_bridge, _ = bridge
    with caplog.at_level(logging.DEBUG):
        await run_sipp(scenario, sip_bridge.address, tmp_path)
        await wait_until(lambda: not sip_bridge.legs)
    [echo] = RecordingEchoCall.instances
    assert echo.dtmf == keys  # the keys did reach the bot
    telephony = [r.getMessage() for r in caplog.records if r.name.startswith(("telephony", "bot.call_session"))]
    dtmf_lines = [line for line in telephony if "dtmf" in line.lower()]
    assert len(dtmf_lines) == len(keys), telephony
    for line in dtmf_lines:
        assert not re.search(r"[0-9*#]", line.replace(f"call={echo.info.call_id}", "")), line
    assert not any("signal=" in line.lower() for line in telephony)  # nor the INFO body


class CrashingBot(MediaEchoCall):
    """A voice loop that fails to start and then fails to stop."""

    async def start(self) -> None:
        raise RuntimeError("pipeline failed to start")

    async def stop(self, cause: str = "remote_hangup") -> None:
        raise RuntimeError("pipeline failed to stop")


async def test_a_call_whose_voice_loop_crashes_is_hung_up_and_still_recorded(bridge, tmp_path):
    sip_bridge, _ = bridge
    sip_bridge.call_factory = CrashingBot
    failed_before = metric("ivr_telephony_calls_total", door="sip", outcome="failed")
    # The gauge is the process's: other tests' records (begun, never finished through finish_call) stay in it.
    active_before = metric("ivr_telephony_active_calls", door="sip")
    await run_sipp("bye_from_ivr.xml", sip_bridge.address, tmp_path)  # we BYE: the voice loop did not start
    await wait_until(lambda: not sip_bridge.legs)
    [cdr] = read_cdrs(tmp_path / "calls")
    assert (cdr["cause"], cdr["outcome"]) == ("start_failed", "failed")
    assert metric("ivr_telephony_calls_total", door="sip", outcome="failed") == failed_before + 1
    assert metric("ivr_telephony_active_calls", door="sip") == active_before  # this call is not left counted
    assert sip_bridge.allocator.in_use == frozenset()


async def test_an_invite_refused_in_the_sip_core_still_gets_a_cdr(bridge, tmp_path):
    from tests.telephony.sip.sip_test_support import OFFER, Uac

    sip_bridge, _ = bridge
    g729_only = OFFER.replace("RTP/AVP 8 0 101", "RTP/AVP 18").replace(
        "a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n", "")
    loop = asyncio.get_running_loop()
    replies: asyncio.Queue[bytes] = asyncio.Queue()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: type("P", (asyncio.DatagramProtocol,), {"datagram_received": lambda self, d, a: replies.put_nowait(d)})(),
        local_addr=("127.0.0.1", 0))
    try:
        transport.sendto(Uac().invite(g729_only), sip_bridge.address)
        reply = await asyncio.wait_for(replies.get(), timeout=2.0)
    finally:
        transport.close()

    assert reply.startswith(b"SIP/2.0 488")
    await wait_until(lambda: read_cdrs(tmp_path / "calls"))
    [cdr] = read_cdrs(tmp_path / "calls")
    assert (cdr["door"], cdr["cause"], cdr["outcome"], cdr["answered_at"]) == ("sip", "refused_488", "rejected", None)
    assert cdr["caller"] == "138****0001" and cdr["peer_call_id"]
    assert sip_bridge.legs == {}
