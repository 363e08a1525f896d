"""The SIP door with the real voice loop (bot/call.py, espeak-ng Mandarin TTS, keypad-only) and a scripted
Rasa on the REST contract: the greeting comes back over RTP, and keypad 0 becomes a REFER to the queue."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import wave
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from settings import Settings
from bot.cdr import CdrWriter
from telephony.rtp.ports import PortAllocator
from telephony.sip.transport import free_port
from telephony.sip.uas import TransferResult
from telephony.sip_calls import SipCallBridge
from tests.telephony.sip_peers import (
    BARESIP, BARESIP_MODULES, SIPP, run_peer, run_sipp, wait_until, write_baresip_config,
)

ESPEAK = shutil.which("espeak-ng")
GREETING = "您好，欢迎致电银行智能客服。"
HANDOFF = {"event": "handoff", "queue": "general", "priority": 1, "reason": "human_agent",
           "context": {"intent": "human_agent", "verified": False, "customer_ref": None, "green_channel": False,
                       "call_id": "x"}}

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(ESPEAK is None, reason="espeak-ng (Debian) is needed for the voice loop's TTS"),
]


class ScriptedRasa:
    """A stand-in Rasa server (tests only) speaking the REST call contract from a fixed script."""

    def __init__(self, replies: dict[str, list[dict[str, Any]]]):
        self.replies = replies
        self.messages: list[str] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhooks/rest/webhook", self._webhook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _webhook(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.messages.append(payload["message"])
        reply = self.replies.get(payload["message"], [{"text": "好的。"}])
        return web.json_response([{"recipient_id": payload["sender"], **item} for item in reply])


@pytest.fixture
async def voice_bridge(tmp_path):
    from bot.call import VoiceRuntime
    from bot.call_records import CallRecordWriter
    from bot.rasa_client import RasaClient
    from bot.services.espeak.tts import EspeakTTSService

    rasa = ScriptedRasa({
        "/call_start": [{"text": GREETING}],
        "/human_agent": [{"text": "正在为您转接人工服务。"}, {"custom": HANDOFF}],
    })
    await rasa.start()
    base = Settings()
    rtp_min = 36000 + (os.getpid() % 40) * 100
    settings = dataclasses.replace(
        base,
        rasa=dataclasses.replace(base.rasa, url=rasa.url, timeout_s=5.0),
        gateway=dataclasses.replace(base.gateway, call_records_dir=str(tmp_path / "calls")),
        sip=dataclasses.replace(base.sip, rtp_port_min=rtp_min, rtp_port_max=rtp_min + 99),
    )
    runtime = VoiceRuntime(
        settings=settings,
        rasa=RasaClient(rasa.url, "t", timeout_s=5.0),
        tts_factory=lambda rate: EspeakTTSService(sample_rate=rate),
        stt_factory=None,  # keypad-only: the test is about the telephony path, not ASR
        record_writer=CallRecordWriter(tmp_path / "calls"),
    )
    bridge = SipCallBridge(settings, runtime.create_call, PortAllocator(rtp_min, rtp_min + 99),
                           cdr_writer=CdrWriter(tmp_path / "calls"))
    results: list[TransferResult] = []
    forward = bridge.server.on_event

    def record_transfer_results(event) -> None:
        if isinstance(event, TransferResult):
            results.append(event)
        forward(event)

    bridge.server.on_event = record_transfer_results
    await bridge.start("127.0.0.1", free_port())
    try:
        yield bridge, rasa, results
    finally:
        await bridge.close()
        await runtime.close()
        await rasa.stop()


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is needed")
async def test_keypad_zero_transfers_the_call_with_refer(voice_bridge, tmp_path):
    bridge, rasa, results = voice_bridge
    await run_sipp("keypad0_transfer.xml", bridge.address, tmp_path, timeout=45)  # sipp itself gives up at 40 s
    await wait_until(lambda: not bridge.legs, timeout=5.0)
    assert rasa.messages[:2] == ["/call_start", "/human_agent"]
    assert [(r.ok, r.detail) for r in results] == [(True, "200 OK")]
    assert bridge.allocator.in_use == frozenset()
    [cdr] = [json.loads(line) for line in next((tmp_path / "calls").glob("cdr-*.jsonl")).read_text().splitlines()]
    assert (cdr["transfer_queue"], cdr["transfer_result"], cdr["outcome"]) == ("general", "ok", "transferred")
    assert cdr["time_to_agent_s"] >= cdr["refer_accepted_s"] >= 0  # handoff → NOTIFY 200, handoff → 202
    assert cdr["packets_out"] > 0  # the greeting went out before the REFER


@pytest.mark.skipif(BARESIP is None or not BARESIP_MODULES.is_dir(), reason="baresip (Debian baresip-core) is needed")
async def test_baresip_hears_the_mandarin_greeting(voice_bridge, tmp_path):
    bridge, rasa, _ = voice_bridge
    silence = tmp_path / "silence.wav"
    with wave.open(str(silence), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 8000 * 5)  # the caller listens for 5 s, then hangs up
    write_baresip_config(tmp_path, silence, caller_number="13800000001")
    host, port = bridge.address
    _, output = await run_peer([BARESIP, "-f", str(tmp_path), "-e", f"/dial sip:ivr@{host}:{port}", "-t", "10"],
                               tmp_path, timeout=20)
    assert "Call established" in output, output[-2000:]
    await wait_until(lambda: not bridge.legs, timeout=5.0)
    assert rasa.messages[:1] == ["/call_start"]
    [heard] = list(tmp_path.glob("dump-*-dec.wav"))
    with wave.open(str(heard)) as dump:
        audio = np.frombuffer(dump.readframes(dump.getnframes()), dtype="<i2").astype(np.float64)
    frames = audio[: audio.size // 160 * 160].reshape(-1, 160)
    loud_frames = int((np.sqrt(np.mean(frames**2, axis=1)) > 300).sum())
    assert loud_frames >= 25, f"only {loud_frames} voiced 20 ms frames came back: no greeting heard"
