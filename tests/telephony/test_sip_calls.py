"""The SIP door end to end: sipp with real G.711 media and RFC 4733 DTMF against SipCallBridge + RTP,
with a media-only echo bot. Checks audio reaches the bot, comes back non-silent, DTMF arrives, and that
every port and task is released after the calls."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import wave
from pathlib import Path

import numpy as np
import pytest

from rtp_pcap import tone_pcm16, write_pcmu_pcap
from settings import Settings
from telephony.rtp.ports import PortAllocator
from telephony.sip.transport import free_port
from telephony.sip.uas import CallAnswered
from telephony.sip_calls import MediaEchoCall, SipCallBridge

SCENARIOS = Path(__file__).parent / "sip" / "scenarios"
SIPP = shutil.which("sipp")
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


@pytest.fixture
async def bridge():
    base = Settings()
    rtp_min, rtp_max = private_rtp_range()
    settings = dataclasses.replace(base, sip=dataclasses.replace(base.sip, rtp_port_min=rtp_min, rtp_port_max=rtp_max))
    RecordingEchoCall.instances = []
    sip_bridge = SipCallBridge(settings, RecordingEchoCall, PortAllocator(rtp_min, rtp_max))
    await sip_bridge.start("127.0.0.1", free_port())
    stats: list = []
    sip_bridge.on_call_closed = lambda call, rtp_stats: stats.append(rtp_stats)
    try:
        yield sip_bridge, stats
    finally:
        await sip_bridge.close()


async def run_sipp(scenario: str, target, tmp_path: Path, *extra: str, timeout: float = 40.0) -> None:
    command = [
        SIPP, f"{target[0]}:{target[1]}", "-sf", str(SCENARIOS / scenario), "-s", "ivr",
        "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(free_port()), "-mp", str(free_port()),
        "-timeout", f"{int(timeout) - 5}s", "-timeout_error", "-nostdin",
        "-trace_err", "-error_file", str(tmp_path / "sipp_errors.log"), *extra,
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    log = tmp_path / "sipp_errors.log"
    errors = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    assert process.returncode == 0, f"sipp {scenario} exited {process.returncode}\n{errors}\n{output.decode(errors='replace')[-1500:]}"


async def wait_until(condition, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition() and loop.time() < deadline:
        await asyncio.sleep(0.02)


async def test_pcma_audio_and_rfc4733_dtmf_are_echoed(bridge, tmp_path):
    sip_bridge, stats = bridge
    await run_sipp("pcma_pcap_dtmf.xml", sip_bridge.address, tmp_path, "-m", "1")
    await wait_until(lambda: not sip_bridge.legs)
    [echo] = RecordingEchoCall.instances
    assert echo.started and echo.stopped
    assert echo.frames_in > 50 and echo.loudest_rms > 500, "the caller's speech did not reach the bot"
    assert echo.dtmf == ["1"]
    [rtp] = stats
    assert rtp.packets_in > 50 and rtp.packets_out > 50, "no RTP came back"
    assert sip_bridge.allocator.in_use == frozenset()


async def test_twenty_concurrent_calls_with_audio_leave_nothing_behind(bridge, tmp_path):
    sip_bridge, stats = bridge
    tasks_before = len(asyncio.all_tasks())
    await run_sipp("pcma_pcap_dtmf.xml", sip_bridge.address, tmp_path, "-m", "20", "-l", "20", "-r", "20")
    await wait_until(lambda: not sip_bridge.legs, timeout=5.0)
    assert len(RecordingEchoCall.instances) == 20
    assert all(echo.stopped and echo.loudest_rms > 500 for echo in RecordingEchoCall.instances)
    assert len(stats) == 20 and all(s.packets_out > 50 for s in stats)
    assert sip_bridge.legs == {} and sip_bridge.server.active_calls == []
    assert sip_bridge.allocator.in_use == frozenset()
    assert len(asyncio.all_tasks()) <= tasks_before


BARESIP = shutil.which("baresip")
BARESIP_MODULES = Path("/usr/lib/baresip/modules")


def write_baresip_config(folder: Path, tone: Path) -> None:
    """A headless baresip: plays `tone` as its microphone, dumps what it hears with the sndfile filter."""
    sip_port, rtp_port = free_port(), free_port() & ~1
    folder.joinpath("config").write_text("\n".join([
        "poll_method epoll",
        f"module_path {BARESIP_MODULES}",
        f"sip_listen 127.0.0.1:{sip_port}",
        f"audio_source aufile,{tone}",
        f"rtp_ports {rtp_port}-{rtp_port + 1}",
        f"snd_path {folder}",
        *[f"module {name}.so" for name in ("g711", "aufile", "sndfile", "account", "menu")],
        "",
    ]))
    folder.joinpath("accounts").write_text("<sip:13800000002@127.0.0.1>;regint=0\n")


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
    write_baresip_config(tmp_path, tone)
    host, port = sip_bridge.address
    process = await asyncio.create_subprocess_exec(
        BARESIP, "-f", str(tmp_path), "-e", f"/dial sip:ivr@{host}:{port}", "-t", "8",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 15)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    text = output.decode(errors="replace")
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
    await run_sipp(scenario, sip_bridge.address, tmp_path, "-m", "1")
    await wait_until(lambda: not sip_bridge.legs)
    assert [ok for ok, _ in HandoffBot.results] == [expected_ok]
    assert sip_bridge.allocator.in_use == frozenset()


async def test_gateway_hook_serves_calls_with_the_apps_voice_runtime(tmp_path):
    from aiohttp import web

    from bot.web.voice import VOICE_RUNTIME_KEY
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
                                                                   rtp_port_min=rtp_min, rtp_port_max=rtp_max))
    app = web.Application()
    runtime = Runtime()

    async def runtime_ctx(app):
        app[VOICE_RUNTIME_KEY] = runtime
        yield

    app.cleanup_ctx.append(runtime_ctx)
    add_sip_service(app, settings=settings)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await run_sipp("basic_call.xml", ("127.0.0.1", port), tmp_path, "-m", "1")
        await wait_until(lambda: runtime.created and runtime.created[0].stopped)
        assert runtime.created[0].info.caller_number == "13800000001"
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
    await run_sipp("pcmu_pcap.xml", sip_bridge.address, tmp_path, "-m", "1")
    await wait_until(lambda: not sip_bridge.legs)
    [echo] = RecordingEchoCall.instances
    assert answered_codecs == ["PCMU"]
    assert echo.frames_in > 50 and echo.loudest_rms > 3000  # the 8000-amplitude tone, decoded from mu-law
    assert [s.packets_out > 50 for s in stats] == [True]
