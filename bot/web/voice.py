"""The voice page: talk to the bot from a browser microphone, over a WebSocket, through the real voice loop.

    GET /voice              the page (offline: no CDN; its script and AudioWorklet come from /voice/static)
    GET /voice/ws?caller=   one call per WebSocket:
        browser → gateway   binary: 16-bit LE mono PCM at 16 kHz, any size up to 64 KiB
                            text:   {"type": "dtmf", "key": "5"} | {"type": "hangup"}
        gateway → browser   binary: bot audio, 16-bit LE mono PCM at 16 kHz, 20 ms chunks paced in real time
                            text:   {"type": "ready", "call_id", "asr_available"}, {"type": "clear"} (barge-in:
                                    drop queued audio), and the call's events: partial, caller, bot, metrics,
                                    barge_in, handoff, hangup, ended (see bot/processors/call_observer.py)
`make call WAV=...` (bot/call_cli.py) uses the same socket.

Access as for the text console (bot/web/access.py): a handshake with a foreign `Origin` is refused (403); with
CONSOLE_TOKEN set, the socket needs the session cookie the page issued or `Authorization: Bearer <token>` (401).
Each socket's call id is `web-<uuid4>`: unique, unguessable, and addressable by nothing but this socket.

The process-wide VoiceRuntime lives in `app[VOICE_RUNTIME_KEY]` (loaded at start-up, off the event loop), so
telephony can share it: `runtime = app.get(VOICE_RUNTIME_KEY)` (None if it could not load: see the log).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from loguru import logger
from prometheus_client import Counter

from bot.call import CallHandle, CallInfo, VoiceRuntime
from bot.web.access import ACCESS_KEY, Refused, console_access
from settings import Settings, get_settings

STATIC_DIR = Path(__file__).resolve().parent / "voice_static"
VOICE_RUNTIME_KEY: web.AppKey[VoiceRuntime] = web.AppKey("voice_runtime", VoiceRuntime)
VOICE_ERROR_KEY: web.AppKey[str] = web.AppKey("voice_runtime_error", str)
BROWSER_SAMPLE_RATE = 16000
MAX_AUDIO_MESSAGE_BYTES = 64 * 1024
MAX_BROWSER_CALLS = 8
DEFAULT_CALLER = "13800000001"
CALLER_RE = re.compile(r"^\+?[0-9]{3,20}$")
VALID_KEYS = frozenset("0123456789*#")

VOICE_PAGE_CALLS = Counter("ivr_voice_page_calls_total", "Browser and CLI voice calls", ["outcome"])


def add_voice_routes(app: web.Application, settings: Settings | None = None,
                     runtime: VoiceRuntime | None = None) -> None:
    """Adds /voice, /voice/ws and /voice/static; loads the VoiceRuntime at start-up unless one is given."""
    if settings is None:
        from bot.web.app import SETTINGS_KEY  # the gateway's own settings, when it made this app

        settings = app.get(SETTINGS_KEY) or get_settings()
    console_access(app, settings.gateway)
    app.router.add_get("/voice", voice_page)
    app.router.add_get("/voice/ws", voice_socket)
    app.router.add_static("/voice/static", STATIC_DIR, name="voice_static")
    app.cleanup_ctx.append(_runtime_ctx(settings, runtime))


def _runtime_ctx(settings: Settings, given: VoiceRuntime | None):
    async def ctx(app: web.Application):
        # Python's default pool (cores + 4 threads) queues the per-chunk decoding of a few calls behind each
        # other; the benchmark showed final transcripts seconds late at 8 calls on 2 cores (docs/VOICE.md).
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=settings.voice.worker_threads, thread_name_prefix="voice"))
        try:
            runtime = given or await asyncio.to_thread(VoiceRuntime.load, settings)
        except Exception as exc:  # e.g. no TTS at all: the gateway still serves the text console and telephony
            logger.error(f"voice loop unavailable: {exc}")
            app[VOICE_ERROR_KEY] = str(exc)
            yield
            return
        app[VOICE_RUNTIME_KEY] = runtime
        yield
        await runtime.close()

    return ctx


async def voice_page(request: web.Request) -> web.StreamResponse:
    return await request.app[ACCESS_KEY].page(
        request, lambda: web.FileResponse(STATIC_DIR / "voice.html", headers={"Cache-Control": "no-store"}))


async def voice_socket(request: web.Request) -> web.StreamResponse:
    try:
        request.app[ACCESS_KEY].check_socket(request)
    except Refused as refused:
        VOICE_PAGE_CALLS.labels(outcome=f"refused_{refused.status}").inc()
        return web.json_response({"error": str(refused)}, status=refused.status)
    runtime = request.app.get(VOICE_RUNTIME_KEY)
    if runtime is None:
        error = request.app.get(VOICE_ERROR_KEY, "still loading")
        return web.json_response({"error": f"voice loop unavailable: {error}"}, status=503)
    caller = request.query.get("caller", DEFAULT_CALLER)
    if not CALLER_RE.match(caller):
        return web.json_response({"error": "caller must be 3-20 digits"}, status=400)
    if sum(1 for call_id in runtime.calls if call_id.startswith("web-")) >= MAX_BROWSER_CALLS:
        return web.json_response({"error": "too many browser calls; try again later"}, status=503)

    ws = web.WebSocketResponse(max_msg_size=MAX_AUDIO_MESSAGE_BYTES, heartbeat=20)
    await ws.prepare(request)
    call = runtime.create_call(CallInfo(f"web-{uuid.uuid4().hex}", caller, sample_rate=BROWSER_SAMPLE_RATE))
    bridge = _SocketBridge(ws, call)
    try:
        await bridge.run(runtime.asr_available)
    finally:
        await call.stop(bridge.end_cause)
        VOICE_PAGE_CALLS.labels(outcome=call.record.outcome or "unknown").inc()
        if not ws.closed:
            await ws.close()
    return ws


class _SocketBridge:
    """Connects one WebSocket to one CallHandle: audio and keys in, audio and events out."""

    def __init__(self, ws: web.WebSocketResponse, call: CallHandle) -> None:
        self._ws = ws
        self._call = call
        self._outbox: asyncio.Queue[bytes | str | None] = asyncio.Queue(maxsize=500)
        self._ended = asyncio.Event()
        self.end_cause = "remote_hangup"

    async def run(self, asr_available: bool) -> None:
        self._call.on_audio = lambda pcm16: self._post(pcm16)
        self._call.on_clear = lambda: self._post(json.dumps({"type": "clear"}))
        self._call.on_event = self._on_event
        self._call.on_handoff = self._on_handoff
        self._call.on_hangup = self._on_hangup
        sender = asyncio.create_task(self._send_loop())
        try:
            await self._call.start()
            self._post(json.dumps({"type": "ready", "call_id": self._call.info.call_id,
                                   "asr_available": asr_available}))
            await self._receive_loop()
        finally:
            await self._call.stop(self.end_cause)  # emits the "ended" event, which still goes out below
            await self._drain(sender)

    async def _drain(self, sender: asyncio.Task) -> None:
        while self._outbox.full():
            self._outbox.get_nowait()
        self._outbox.put_nowait(None)
        try:
            await asyncio.wait_for(sender, timeout=2.0)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            sender.cancel()

    async def _receive_loop(self) -> None:
        receiver = asyncio.ensure_future(self._receive_messages())
        ended = asyncio.ensure_future(self._ended.wait())
        await asyncio.wait({receiver, ended}, return_when=asyncio.FIRST_COMPLETED)
        for task in (receiver, ended):
            task.cancel()
        await asyncio.gather(receiver, ended, return_exceptions=True)

    async def _receive_messages(self) -> None:
        async for msg in self._ws:
            if msg.type == WSMsgType.BINARY:
                self._call.feed_audio(msg.data[: len(msg.data) - len(msg.data) % 2])
            elif msg.type == WSMsgType.TEXT:
                if not self._on_command(msg.data):
                    return
            elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                return

    def _on_command(self, text: str) -> bool:
        """Handles one JSON command; False when the caller hung up."""
        try:
            command: Any = json.loads(text)
        except ValueError:
            self._post(json.dumps({"type": "error", "error": "messages must be JSON"}))
            return True
        kind = command.get("type") if isinstance(command, dict) else None
        if kind == "hangup":
            return False
        if kind == "dtmf" and isinstance(command.get("key"), str) and command["key"] in VALID_KEYS:
            self._call.feed_dtmf(command["key"])
        else:
            self._post(json.dumps({"type": "error", "error": "unknown command"}))
        return True

    def _on_event(self, event: dict[str, Any]) -> None:
        self._post(json.dumps(event, ensure_ascii=False))

    async def _on_handoff(self, event: dict[str, Any]) -> None:
        # A browser has no agent desk behind it: show where the call would go, then end it.
        self.end_cause = "handoff"
        self._call.transfer_result(True, "voice page: no agent desk")
        self._ended.set()

    async def _on_hangup(self) -> None:
        self.end_cause = "bot_hangup"
        self._ended.set()

    def _post(self, message: bytes | str) -> None:
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:  # a browser that stopped reading: drop rather than grow without bound
            logger.warning(f"voice page {self._call.info.call_id}: client not reading, dropping output")

    async def _send_loop(self) -> None:
        while True:
            message = await self._outbox.get()
            if message is None or self._ws.closed:
                return
            try:
                if isinstance(message, bytes):
                    await self._ws.send_bytes(message)
                else:
                    await self._ws.send_str(message)
            except (ConnectionError, RuntimeError):
                return
