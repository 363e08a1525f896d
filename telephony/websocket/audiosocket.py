"""Asterisk AudioSocket over TCP: an on-prem Asterisk hands a call over with `AudioSocket(uuid,host:port)`.

Each message is a 3-byte header (kind, 16-bit big-endian payload length) and the payload. Kinds:
0x00 hangup, 0x01 the call's UUID (16 bytes, always first), 0x03 one DTMF key (ASCII),
0x10 audio (signed linear 16-bit little-endian, 8 kHz mono), 0xff error (optional code).
We send 0x10 with bot audio (paced in real time by the voice loop) and 0x00 when the bot hangs up.
Asterisk plays audio as it arrives, so a barge-in has nothing queued here to clear.

The protocol has no authentication, so only peers in AUDIOSOCKET_ALLOW_CIDRS (default: loopback) are served; any
other connection is closed before a byte is read and counted in `ivr_media_refused_connections_total`. The
call's id is a fresh `audiosocket-<uuid4>`; Asterisk's UUID is kept as the CDR's `peer_call_id`. A DTMF message
that is not one keypad key is counted in `ivr_media_bad_messages_total` and skipped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
import uuid
from dataclasses import dataclass

from bot.admission import Admission
from bot.call_session import CallSession
from call_contract import DTMF_KEYS  # what the voice loop takes: 0-9 * # A-D
from bot.cdr import CdrWriter
from bot.door_metrics import DOOR_AUDIOSOCKET
from settings import GatewaySettings
from telephony.websocket.calls import BAD_MESSAGES, MEDIA_SAMPLE_RATE, REFUSED_CONNECTIONS, CallFactory, first_result

log = logging.getLogger(__name__)

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_AUDIO = 0x10
KIND_ERROR = 0xFF
_HEADER = struct.Struct("!BH")
# Asterisk sends 20 ms (320 bytes); anything far larger is not a telephone audio frame.
MAX_PAYLOAD_BYTES = 8192
# Bot audio the peer has not read yet beyond this means it is stuck: drop rather than buffer without bound.
MAX_UNSENT_BYTES = 64 * 1024
WIRE_CODEC = "L16"  # signed linear 16-bit, 8 kHz mono


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_allow_cidrs(raw: str) -> tuple[IpNetwork, ...]:
    """AUDIOSOCKET_ALLOW_CIDRS, e.g. "127.0.0.0/8,::1/128,10.1.2.3/32"; a malformed entry is a configuration error."""
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as error:
            raise ValueError(f"AUDIOSOCKET_ALLOW_CIDRS: {item!r} is not an address or CIDR ({error})") from None
    return tuple(networks)


def peer_allowed(peername: object, networks: tuple[IpNetwork, ...]) -> bool:
    """Whether a socket's peer (its `peername`) lies in one of `networks`; unknown peers do not."""
    if not isinstance(peername, tuple) or not peername or not isinstance(peername[0], str):
        return False
    try:
        address = ipaddress.ip_address(peername[0].split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d
    return any(address in network for network in networks)


class AudioSocketProtocolError(Exception):
    """The peer broke the AudioSocket framing; the connection is closed."""


@dataclass(frozen=True, slots=True)
class Message:
    kind: int
    payload: bytes = b""

    def serialise(self) -> bytes:
        """The frame on the wire: kind, 16-bit length, payload."""
        if len(self.payload) > 0xFFFF:
            raise ValueError(f"AudioSocket payload of {len(self.payload)} bytes does not fit a 16-bit length")
        return _HEADER.pack(self.kind, len(self.payload)) + self.payload


async def read_message(reader: asyncio.StreamReader, timeout_s: float) -> Message | None:
    """The next message, or None when the peer closed the connection (EOF)."""
    try:
        header = await asyncio.wait_for(reader.readexactly(_HEADER.size), timeout_s)
        kind, length = _HEADER.unpack(header)
        if length > MAX_PAYLOAD_BYTES:
            raise AudioSocketProtocolError(f"payload of {length} bytes exceeds {MAX_PAYLOAD_BYTES}")
        payload = await asyncio.wait_for(reader.readexactly(length), timeout_s) if length else b""
    except asyncio.IncompleteReadError:
        return None
    return Message(kind, payload)


class AudioSocketServer:
    """TCP server; each connection is one call handed to `call_factory`.
    `cdr_writer`: where each call's CDR line goes (None: metrics only); `admission`: the voice loop's limit."""

    def __init__(self, call_factory: CallFactory, settings: GatewaySettings,
                 cdr_writer: CdrWriter | None = None, admission: Admission | None = None) -> None:
        self._call_factory = call_factory
        self._settings = settings
        self._cdr_writer = cdr_writer
        self._admission = admission
        self._allowed = parse_allow_cidrs(settings.audiosocket_allow_cidrs)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()
        self.refused = 0

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0 in tests)."""
        assert self._server is not None and self._server.sockets, "server not started"
        return self._server.sockets[0].getsockname()[1]

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        host = self._settings.audiosocket_host if host is None else host
        port = self._settings.audiosocket_port if port is None else port
        self._server = await asyncio.start_server(self._on_connection, host, port)
        log.info("AudioSocket listening on %s:%d", host, self.port)

    async def close(self) -> None:
        """Stop accepting, end every call in progress, wait for their teardown."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if not peer_allowed(peer, self._allowed):
            self._refuse(writer, peer)
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await AudioSocketCall(reader, writer, self._call_factory, self._settings.media_idle_timeout_s,
                                  self._cdr_writer, self._admission).run()
        finally:
            self._connections.discard(task)

    def _refuse(self, writer: asyncio.StreamWriter, peer: object) -> None:
        """A stranger: closed at once (RST, nothing read, no call), counted; logged sparingly, as strangers flood."""
        self.refused += 1
        REFUSED_CONNECTIONS.labels(DOOR_AUDIOSOCKET, "not_allowed").inc()
        if self.refused == 1 or self.refused % 1000 == 0:
            log.warning("AudioSocket connection from %s refused: not in AUDIOSOCKET_ALLOW_CIDRS (%d refused so far)",
                        peer, self.refused)
        writer.transport.abort()


class AudioSocketCall:
    """One AudioSocket connection: UUID first, then audio/DTMF to the call and bot audio back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, call_factory: CallFactory,
                 idle_timeout_s: float, cdr_writer: CdrWriter | None = None,
                 admission: Admission | None = None) -> None:
        self._admission = admission
        self._reader = reader
        self._writer = writer
        self._call_factory = call_factory
        self._cdr_writer = cdr_writer
        self._idle_timeout_s = idle_timeout_s
        self._session: CallSession | None = None
        self.peer = writer.get_extra_info("peername")
        self.bad_messages = 0

    async def run(self) -> None:
        cause = "remote_hangup"
        try:
            self._session = session = await self._new_session()
            if session is None:
                return
            if not await session.start(on_audio=self._send_audio, on_clear=lambda: None):
                # Nothing is queued on our side to clear on barge-in: Asterisk plays frames as they come.
                cause = "start_failed" if session.busy is None else "busy"
                await session.play_busy(self._send_audio)
                return
            cause = await first_result(self._receive_loop(), self._until_bot_hangup())
        except asyncio.CancelledError:
            cause = "shutdown"
            raise
        finally:
            await self._teardown(cause)

    async def _new_session(self) -> CallSession | None:
        try:
            first = await read_message(self._reader, self._idle_timeout_s)
        except (AudioSocketProtocolError, asyncio.TimeoutError) as exc:
            log.warning("AudioSocket from %s: no valid UUID message (%s)", self.peer, exc or "timeout")
            return None
        if first is None or first.kind != KIND_UUID or len(first.payload) != 16:
            log.warning("AudioSocket from %s: the first message must be a 16-byte UUID", self.peer)
            return None
        peer_call_id = str(uuid.UUID(bytes=first.payload))
        session = CallSession(self._call_factory, DOOR_AUDIOSOCKET, peer_call_id=peer_call_id, codec=WIRE_CODEC,
                              sample_rate=MEDIA_SAMPLE_RATE, cdr_writer=self._cdr_writer, admission=self._admission)
        session.log.info("AudioSocket call %s from %s", peer_call_id, self.peer)
        return session

    async def _receive_loop(self) -> str:
        assert self._session is not None
        session = self._session
        while True:
            try:
                message = await read_message(self._reader, self._idle_timeout_s)
            except asyncio.TimeoutError:
                session.log.info("no AudioSocket message for %.0f s", self._idle_timeout_s)
                return "idle_timeout"
            except AudioSocketProtocolError as exc:
                session.log.warning("AudioSocket protocol error: %s", exc)
                return "media_error"
            if message is None or message.kind == KIND_HANGUP:
                return "remote_hangup"
            if message.kind == KIND_AUDIO:
                session.feed_audio(message.payload[: len(message.payload) & ~1])
            elif message.kind == KIND_DTMF:
                key = message.payload.decode("ascii", "replace").upper()
                if key in DTMF_KEYS:
                    session.feed_dtmf(key)
                else:
                    self.bad_messages += 1
                    BAD_MESSAGES.labels(DOOR_AUDIOSOCKET, "bad_dtmf").inc()
            elif message.kind == KIND_ERROR:
                session.log.warning("Asterisk reported error %s", message.payload.hex())
                return "remote_error"

    def _send_audio(self, pcm16: bytes) -> None:
        if self._writer.is_closing():
            return
        if self._writer.transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
            return  # the peer is not reading; dropping keeps memory bounded and the audio real-time
        self._writer.write(Message(KIND_AUDIO, pcm16).serialise())
        if self._session is not None:
            self._session.audio_sent()

    async def _until_bot_hangup(self) -> str:
        assert self._session is not None
        await self._session.bot_hung_up.wait()
        return "bot_hangup"

    async def _teardown(self, cause: str) -> None:
        if self._session is not None:
            await self._session.stop(cause)
        try:
            if cause in ("bot_hangup", "busy", "idle_timeout", "shutdown") and not self._writer.is_closing():
                self._writer.write(Message(KIND_HANGUP).serialise())
            self._writer.close()
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)
        except (ConnectionError, asyncio.TimeoutError, OSError):
            pass  # the peer is already gone
