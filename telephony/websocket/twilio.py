"""`/media`: a WebSocket endpoint speaking the Twilio Media Streams protocol, one voice-loop call per socket.

Peer → us: `connected`, `start` (streamSid, callSid, customParameters such as the caller's number),
`media` (base64 μ-law 8 kHz), `dtmf`, `mark` (a mark we sent has been played), `stop`.
Us → peer: `media` (bot audio), `mark` after each stretch of bot speech, `clear` on barge-in.
The μ-law/base64 (de)serialisation is pipecat's `TwilioFrameSerializer`; the socket itself is aiohttp.

Refusals: a missing or wrong token (query `?token=`, `Authorization: Bearer`, or `X-Media-Token`, compared in
constant time) gets HTTP 401 before the upgrade; a frame above `media_ws_max_message_bytes` closes with 1009;
no message for `media_idle_timeout_s` closes with 1001. A default token (settings.py) is refused from a peer off
loopback. Text that is not valid UTF-8 closes with 1007, as RFC 6455 section 8.1 requires.

Malformed messages never end a call: non-JSON text, binary frames, JSON nested too deep, a `media` without a
base64 payload, a `dtmf` without one keypad key, a second `start`, a `media` before `start` are each counted in
`ivr_media_bad_messages_total{door="media_stream",reason}` and skipped.

The call's id is a fresh `media_stream-<uuid4>`; the peer's callSid (or streamSid) is kept as `peer_call_id`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import WSCloseCode, WSMsgType, web
from pipecat.frames.frames import InputAudioRawFrame, InputDTMFFrame, InterruptionFrame, OutputAudioRawFrame
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.serializers.twilio import TwilioFrameSerializer

from call_contract import DTMF_KEYS  # what the voice loop takes: 0-9 * # A-D
from bot.web.access import bearer_token, token_usable_from, tokens_equal
from settings import GatewaySettings
from bot.admission import Admission
from bot.call_log import CallLoggerAdapter, call_logger
from bot.call_session import CallSession
from bot.cdr import CdrWriter
from bot.door_metrics import DOOR_MEDIA_STREAM
from telephony.websocket.calls import (BAD_MESSAGES, MEDIA_SAMPLE_RATE, REFUSED_CONNECTIONS, CallFactory,
                                       first_result, safe_peer_reference)

log = logging.getLogger(__name__)

# Bot audio waiting to be sent beyond this (in 20 ms chunks) means the peer is not reading: drop, don't grow.
MAX_QUEUED_CHUNKS = 250
# Bot audio stopping for this long ends a stretch of speech, which we follow with a mark.
MARK_AFTER_SILENCE_S = 0.2
_CALLER_PARAMETER_NAMES = ("caller_number", "callerNumber", "caller", "from", "From")
WIRE_CODEC = "PCMU"  # base64 μ-law 8 kHz


def token_is_valid(request: web.Request, expected: str) -> bool:
    """Constant-time check of the token from the query, a Bearer Authorization header or X-Media-Token;
    a default token is good from loopback only."""
    offered = request.query.get("token") or bearer_token(request) or request.headers.get("X-Media-Token", "")
    return tokens_equal(offered, expected) and token_usable_from(request.remote, offered)


@dataclass(frozen=True)
class _PipelineRates:
    """The only part of a pipeline's setup the serializer reads: it runs here without a pipeline."""

    audio_in_sample_rate: int = MEDIA_SAMPLE_RATE
    audio_out_sample_rate: int = MEDIA_SAMPLE_RATE


class TwilioCodec:
    """Pipecat's TwilioFrameSerializer used on its own: messages ↔ 8 kHz PCM, keys and `clear`."""

    def __init__(self, stream_sid: str) -> None:
        params = TwilioFrameSerializer.InputParams(sample_rate=MEDIA_SAMPLE_RATE, auto_hang_up=False)
        self._serializer = TwilioFrameSerializer(stream_sid, params=params)
        self.stream_sid = stream_sid

    async def setup(self) -> None:
        await self._serializer.setup(cast(FrameProcessorSetup, _PipelineRates()))

    async def decode(self, text: str) -> bytes | str | None:
        """PCM16 for a `media` message, the key for a `dtmf` message, None for anything else."""
        frame = await self._serializer.deserialize(text)
        if isinstance(frame, InputAudioRawFrame):
            return frame.audio
        if isinstance(frame, InputDTMFFrame):
            return frame.button.value
        return None

    async def encode_audio(self, pcm16: bytes) -> str | None:
        return cast(str | None, await self._serializer.serialize(
            OutputAudioRawFrame(audio=pcm16, sample_rate=MEDIA_SAMPLE_RATE, num_channels=1)))

    async def encode_clear(self) -> str:
        return cast(str, await self._serializer.serialize(InterruptionFrame()))

    def encode_mark(self, name: str) -> str:
        return json.dumps({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})


class MediaStreamEndpoint:
    """The aiohttp handler for `/media`; each accepted socket becomes one `TwilioMediaStream`.
    `cdr_writer`: where each call's CDR line goes (None: metrics only); `admission`: the voice loop's limit, whose
    slot each call frees at teardown whatever happened to its voice loop."""

    def __init__(self, call_factory: CallFactory, settings: GatewaySettings,
                 cdr_writer: CdrWriter | None = None, admission: Admission | None = None) -> None:
        self._call_factory = call_factory
        self._settings = settings
        self._cdr_writer = cdr_writer
        self._admission = admission
        self.active: dict[TwilioMediaStream, asyncio.Task] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not token_is_valid(request, self._settings.media_ws_token):
            REFUSED_CONNECTIONS.labels(DOOR_MEDIA_STREAM, "token").inc()
            log.warning("media WebSocket from %s refused: bad or missing token", request.remote)
            raise web.HTTPUnauthorized(text="media stream token missing or wrong")
        # timeout: how long a close waits for the peer's close frame; a dead peer must not hold teardown.
        ws = web.WebSocketResponse(max_msg_size=self._settings.media_ws_max_message_bytes, timeout=2.0)
        await ws.prepare(request)
        stream = TwilioMediaStream(ws, self._call_factory, self._settings.media_idle_timeout_s, self._cdr_writer,
                                   self._admission)
        # aiohttp cancels this handler when the peer's connection drops; the stream runs in its own task,
        # shielded, so the call is still torn down completely and with the right cause.
        task = asyncio.create_task(stream.run(), name="media-stream")
        self.active[stream] = task
        task.add_done_callback(lambda _: self.active.pop(stream, None))
        await asyncio.shield(task)
        return ws

    async def close_all(self) -> None:
        """Gateway shutdown: end every open stream and wait for its teardown."""
        for stream in list(self.active):
            stream.shutdown()
        await asyncio.gather(*self.active.values(), return_exceptions=True)


class TwilioMediaStream:
    """One media stream: waits for `start`, runs a call, relays audio/keys both ways, tears down."""

    def __init__(self, ws: web.WebSocketResponse, call_factory: CallFactory, idle_timeout_s: float,
                 cdr_writer: CdrWriter | None = None, admission: Admission | None = None) -> None:
        self._ws = ws
        self._admission = admission
        self._call_factory = call_factory
        self._cdr_writer = cdr_writer
        self._idle_timeout_s = idle_timeout_s
        self._session: CallSession | None = None
        self._codec: TwilioCodec | None = None
        self._outbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._mark_timer: asyncio.TimerHandle | None = None
        self._marks_sent = 0
        self.marks_played = 0
        self.bad_messages = 0
        self._shutdown = asyncio.Event()
        # Set by _next_message: why the socket ended, and the raw text of the last message (for the codec).
        self._end_cause = "remote_hangup"
        self._last_text = ""

    @property
    def call_id(self) -> str:
        return self._session.id if self._session else "-"

    @property
    def log(self) -> CallLoggerAdapter:
        return call_logger(log, self.call_id)

    async def run(self) -> None:
        sender: asyncio.Task | None = None
        cause = "remote_hangup"
        try:
            start = await first_result(self._wait_for_start(), self._shutdown.wait())
            if not isinstance(start, dict):
                cause = "shutdown" if self._shutdown.is_set() else self._end_cause
                return
            self._session = session = self._new_session(start)
            assert self._codec is not None
            await self._codec.setup()
            sender = asyncio.create_task(self._send_loop(), name=f"media-send-{self.call_id}")
            if not await session.start(on_audio=self._queue_audio, on_clear=self._queue_clear):
                cause = await self._refused(session)
                return
            cause = await first_result(self._receive_loop(), self._until_bot_hangup(), self._shutdown.wait())
            cause = cause if isinstance(cause, str) else "shutdown"
        finally:
            await self._teardown(sender, cause)

    def shutdown(self) -> None:
        self._shutdown.set()

    # ---- call set-up ------------------------------------------------------------------------

    async def _wait_for_start(self) -> dict[str, Any] | None:
        """Messages before `start` are skipped (`connected` silently, call input counted); None if the socket
        ends or idles first."""
        while True:
            message = await self._next_message()
            if message is None or message.get("event") == "stop":
                return None
            event = message.get("event")
            if event == "start":
                if isinstance(message.get("start"), dict):
                    return message
                self._count_bad("bad_start")
            elif event in ("media", "dtmf", "mark"):
                self._count_bad("before_start")

    def _new_session(self, message: dict[str, Any]) -> CallSession:
        start = message["start"]
        stream_sid = safe_peer_reference(message.get("streamSid") or start.get("streamSid")) or uuid.uuid4().hex
        peer_call_id = safe_peer_reference(start.get("callSid")) or stream_sid
        parameters = start.get("customParameters") if isinstance(start.get("customParameters"), dict) else {}
        caller = next((parameters[name] for name in _CALLER_PARAMETER_NAMES if name in parameters), "")
        session = CallSession(self._call_factory, DOOR_MEDIA_STREAM, caller=caller, peer_call_id=peer_call_id,
                              codec=WIRE_CODEC, sample_rate=MEDIA_SAMPLE_RATE, cdr_writer=self._cdr_writer,
                              admission=self._admission)
        self._codec = TwilioCodec(stream_sid)
        session.log.info("media stream %s started (peer call %s)", stream_sid, peer_call_id)
        return session

    async def _refused(self, session: CallSession) -> str:
        """The voice loop did not take the call: say busy when it is full, then close; the cause for the CDR."""
        if session.busy is None:
            await self._ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"call could not be started")
            return "start_failed"
        await first_result(session.play_busy(self._queue_audio), self._shutdown.wait())
        await first_result(self._outbox_drained(), asyncio.sleep(1.0))  # the prompt's last frames go out
        await self._ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"busy")
        return "busy"

    def _count_bad(self, reason: str) -> None:
        self.bad_messages += 1
        BAD_MESSAGES.labels(DOOR_MEDIA_STREAM, reason).inc()

    # ---- peer → call ------------------------------------------------------------------------

    async def _receive_loop(self) -> str:
        while True:
            message = await self._next_message()
            if message is None:
                return self._end_cause
            event = message.get("event")
            if event == "stop":
                return "remote_hangup"
            if event in ("media", "dtmf"):
                await self._relay(event, message, self._last_text)
            elif event == "mark":
                self.marks_played += 1
            elif event == "start":
                self._count_bad("start_again")  # one stream, one call: a second start changes nothing
            elif not isinstance(event, str):
                self._count_bad("bad_event")  # unknown event names are skipped silently (newer protocol versions)

    async def _relay(self, event: str, message: dict[str, Any], text: str) -> None:
        assert self._codec is not None and self._session is not None
        if not _well_formed(event, message):
            self._count_bad(f"bad_{event}")
            return
        try:
            decoded = await self._codec.decode(text)
        except Exception:  # pipecat parses untrusted input; any failure (e.g. bad base64) is a bad message
            decoded = None
        if decoded is None:
            self._count_bad(f"bad_{event}")
        elif isinstance(decoded, str):
            self._session.feed_dtmf(decoded)
        else:
            self._session.feed_audio(decoded)

    async def _next_message(self) -> dict[str, Any] | None:
        """The next JSON object from the peer; None when the socket closed, errored or idled out."""
        self._end_cause = "remote_hangup"
        while True:
            try:
                msg = await self._ws.receive(timeout=self._idle_timeout_s)
            except asyncio.TimeoutError:
                self._end_cause = "idle_timeout"
                self.log.info("no message for %.0f s, closing the media stream", self._idle_timeout_s)
                await self._ws.close(code=WSCloseCode.GOING_AWAY, message=b"idle timeout")
                return None
            if msg.type != WSMsgType.TEXT:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    self._end_cause = "media_error" if msg.type == WSMsgType.ERROR else "remote_hangup"
                    if msg.type == WSMsgType.ERROR:  # aiohttp already closed, e.g. with 1009 for a large frame
                        self.log.warning("media stream error: %s", msg.data)
                    return None
                self._count_bad("binary")
                continue
            message = _parse_json_object(msg.data)
            if message is None:
                self._count_bad("not_json_object")
                continue
            self._last_text = msg.data
            return message

    # ---- call → peer ------------------------------------------------------------------------

    def _queue_audio(self, pcm16: bytes) -> None:
        if self._outbox.qsize() >= MAX_QUEUED_CHUNKS:
            self.log.warning("peer not reading bot audio, dropping a chunk")
            return
        self._outbox.put_nowait(("audio", pcm16))
        if self._mark_timer is not None:
            self._mark_timer.cancel()
        self._mark_timer = asyncio.get_running_loop().call_later(MARK_AFTER_SILENCE_S, self._queue_mark)

    def _queue_mark(self) -> None:
        self._mark_timer = None
        self._marks_sent += 1
        self._outbox.put_nowait(("mark", f"bot-speech-{self._marks_sent}"))

    def _queue_clear(self) -> None:
        """Barge-in: drop bot audio we still hold, and tell the peer to drop what it buffered."""
        while not self._outbox.empty():
            self._outbox.get_nowait()
        self._outbox.put_nowait(("clear", None))

    async def _outbox_drained(self) -> None:
        while not self._outbox.empty():
            await asyncio.sleep(0.02)

    async def _send_loop(self) -> None:
        assert self._codec is not None
        while True:
            kind, value = await self._outbox.get()
            if kind == "audio":
                text = await self._codec.encode_audio(value[: len(value) & ~1])  # whole 16-bit samples only
            elif kind == "clear":
                text = await self._codec.encode_clear()
            else:
                text = self._codec.encode_mark(value)
            if text is None:
                continue
            try:
                await self._ws.send_str(text)
            except (ConnectionError, RuntimeError):  # the socket is closing; teardown follows
                return
            if kind == "audio" and self._session is not None:
                self._session.audio_sent()

    # ---- teardown ---------------------------------------------------------------------------

    async def _until_bot_hangup(self) -> str:
        assert self._session is not None
        await self._session.bot_hung_up.wait()
        return "bot_hangup"

    async def _teardown(self, sender: asyncio.Task | None, cause: str) -> None:
        if self._mark_timer is not None:
            self._mark_timer.cancel()
        if self._session is not None:
            await self._session.stop(cause)
        if sender is not None:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        if not self._ws.closed:
            await self._ws.close(code=WSCloseCode.OK, message=cause.encode())


def _parse_json_object(data: str) -> dict[str, Any] | None:
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: "[[[[…" nested deeper than the parser recurses
        return None
    return message if isinstance(message, dict) else None


def _well_formed(event: str, message: dict[str, Any]) -> bool:
    """The fields the codec reads are there and of the right kind: media.payload a string, dtmf.digit one key."""
    body = message.get(event)
    if not isinstance(body, dict):
        return False
    if event == "media":
        return isinstance(body.get("payload"), str)
    digit = body.get("digit")
    return isinstance(digit, str) and digit in DTMF_KEYS
