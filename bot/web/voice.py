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
Each socket is one `CallSession` (bot/call_session.py) at the door `web`: its id is `web-<uuid4>` (unique,
unguessable, addressable by nothing but this socket), it counts against the gateway's one admission limit (a full
voice loop: the busy prompt is played, then `{"type": "busy"}` and the socket closes), and it ends in a CDR line.
The voice loop itself is the gateway's (bot/web/voice_loop.py), handed to `add_voice_routes`.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import Counter

from bot.call_ids import DOOR_WEB
from bot.call_session import CallSession
from bot.cdr import CdrWriter
from bot.web.access import ACCESS_KEY, Refused, console_access
from bot.web.voice_loop import VoiceLoop
from call_contract import KEYPAD_KEYS as VALID_KEYS
from settings import Settings

STATIC_DIR = Path(__file__).resolve().parent / "voice_static"
VOICE_LOOP: web.AppKey[VoiceLoop] = web.AppKey("voice_page_loop", VoiceLoop)
CDR_WRITER: web.AppKey[CdrWriter] = web.AppKey("voice_page_cdr_writer", CdrWriter)
OPEN_SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("voice_page_sockets", set)
BROWSER_SAMPLE_RATE = 16000
MAX_AUDIO_MESSAGE_BYTES = 64 * 1024
DEFAULT_CALLER = "13800000001"
CALLER_RE = re.compile(r"^\+?[0-9]{3,20}$")

VOICE_PAGE_CALLS = Counter("ivr_voice_page_calls_total", "Browser and CLI voice calls", ["outcome"])


def add_voice_routes(app: web.Application, settings: Settings, voice: VoiceLoop) -> None:
    """Adds /voice, /voice/ws and /voice/static; calls go to `voice` (the gateway's loop, loaded elsewhere)."""
    console_access(app, settings.gateway)
    app[VOICE_LOOP] = voice
    app[CDR_WRITER] = CdrWriter.from_settings(settings)
    app[OPEN_SOCKETS] = set()
    app.on_shutdown.append(_close_open_sockets)
    app.router.add_get("/voice", voice_page)
    app.router.add_get("/voice/ws", voice_socket)
    app.router.add_static("/voice/static", STATIC_DIR, name="voice_static")


async def voice_page(request: web.Request) -> web.StreamResponse:
    return await request.app[ACCESS_KEY].page(
        request, lambda: web.FileResponse(STATIC_DIR / "voice.html", headers={"Cache-Control": "no-store"}))


async def voice_socket(request: web.Request) -> web.StreamResponse:
    try:
        request.app[ACCESS_KEY].check_socket(request)
    except Refused as refused:
        VOICE_PAGE_CALLS.labels(outcome=f"refused_{refused.status}").inc()
        return web.json_response({"error": str(refused)}, status=refused.status)
    voice = request.app[VOICE_LOOP]
    if voice.runtime is None:
        return web.json_response({"error": f"voice loop unavailable: {voice.error}"}, status=503)
    caller = request.query.get("caller", DEFAULT_CALLER)
    if not CALLER_RE.match(caller):
        return web.json_response({"error": "caller must be 3-20 digits"}, status=400)

    ws = web.WebSocketResponse(max_msg_size=MAX_AUDIO_MESSAGE_BYTES, heartbeat=20)
    await ws.prepare(request)
    request.app[OPEN_SOCKETS].add(ws)
    bridge = _SocketBridge(ws)
    session = CallSession(voice.create_call, DOOR_WEB, caller=caller, codec="L16/16000",
                          sample_rate=BROWSER_SAMPLE_RATE, cdr_writer=request.app[CDR_WRITER],
                          admission=voice.admission, transfer=bridge.on_handoff)
    try:
        await bridge.run(session, voice.runtime.asr_available)
    finally:
        await session.stop(bridge.end_cause)
        VOICE_PAGE_CALLS.labels(outcome=session.record.outcome or "unknown").inc()
        request.app[OPEN_SOCKETS].discard(ws)
        if not ws.closed:
            await ws.close()
    return ws


async def _close_open_sockets(app: web.Application) -> None:
    """Gateway shutdown (on_shutdown, before the voice loop's cleanup): each socket's call ends as a hang-up."""
    for ws in list(app[OPEN_SOCKETS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"gateway shutting down")


class _SocketBridge:
    """Connects one WebSocket to one CallSession: audio and keys in, audio and events out."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws
        self._session: CallSession | None = None
        self._outbox: asyncio.Queue[bytes | str | None] = asyncio.Queue(maxsize=500)
        self._handed_off = asyncio.Event()
        self.end_cause = "remote_hangup"

    async def run(self, session: CallSession, asr_available: bool) -> None:
        self._session = session
        sender = asyncio.create_task(self._send_loop())
        try:
            started = await session.start(on_audio=self._post, on_event=self._on_event,
                                          on_clear=lambda: self._post(json.dumps({"type": "clear"})))
            if not started:
                await self._refused(session)
                return
            self._post(json.dumps({"type": "ready", "call_id": session.id, "asr_available": asr_available}))
            await self._receive_loop(session)
        finally:
            await session.stop(self.end_cause)  # emits the "ended" event, which still goes out below
            await self._drain(sender)

    async def _refused(self, session: CallSession) -> None:
        if session.busy is None:
            self.end_cause = "start_failed"
            self._post(json.dumps({"type": "error", "error": "the call could not be started"}))
            return
        self.end_cause = "busy"
        await session.play_busy(self._post)
        self._post(json.dumps({"type": "busy"}))

    async def _drain(self, sender: asyncio.Task) -> None:
        while self._outbox.full():
            self._outbox.get_nowait()
        self._outbox.put_nowait(None)
        try:
            await asyncio.wait_for(sender, timeout=2.0)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            sender.cancel()

    async def _receive_loop(self, session: CallSession) -> None:
        waits = [asyncio.ensure_future(self._receive_messages(session)),
                 asyncio.ensure_future(self._handed_off.wait()), asyncio.ensure_future(session.bot_hung_up.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
        if session.bot_hung_up.is_set() and not self._handed_off.is_set():
            self.end_cause = "bot_hangup"

    async def _receive_messages(self, session: CallSession) -> None:
        async for msg in self._ws:
            if msg.type == WSMsgType.BINARY:
                session.feed_audio(msg.data[: len(msg.data) - len(msg.data) % 2])
            elif msg.type == WSMsgType.TEXT:
                if not self._on_command(session, msg.data):
                    return
            elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                return

    def _on_command(self, session: CallSession, text: str) -> bool:
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
            session.feed_dtmf(command["key"])
        else:
            self._post(json.dumps({"type": "error", "error": "unknown command"}))
        return True

    def _on_event(self, event: dict[str, Any]) -> None:
        self._post(json.dumps(event, ensure_ascii=False))

    async def on_handoff(self, session: CallSession, event: dict[str, Any]) -> None:
        """The session's transfer hook. A browser has no agent desk behind it: the page shows where the call would
        go (the "handoff" event), then the call ends. Not counted as a transfer: no agent was ever reached."""
        self.end_cause = "handoff"
        if session.voice is not None:
            asyncio.get_running_loop().call_soon(session.voice.transfer_result, True, "voice page: no agent desk")
        self._handed_off.set()

    def _post(self, message: bytes | str) -> None:
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:  # a browser that stopped reading: drop rather than grow without bound
            if self._session is not None:
                self._session.log.warning("voice page client not reading, dropping output")

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
