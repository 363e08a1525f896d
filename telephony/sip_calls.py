"""The SIP door: each SIP call becomes one RTP session and one voice-loop call (bot/call.py CallHandle).

    bridge = await start_sip_server(settings, runtime.create_call)     # or add_sip_service(app, ...)
    ...
    await bridge.close()

Per call, events are handled in order by one task that ends with the call, so nothing outlives it:
IncomingCall → RTP port + 200 OK; CallAnswered (ACK) → the voice loop starts (the greeting plays);
DtmfInfo → feed_dtmf; ReInvite → new RTP destination; TransferResult → transfer_result; CallEnded → stop
the voice loop and close the RTP port. The bot's handoff becomes a REFER to the routing table's queue,
its hangup a BYE; no RTP for media_timeout_s → BYE.

`python -m telephony.sip_calls --echo` runs the door with a media-only echo bot (for sipp, baresip, bench).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Protocol

from settings import Settings, get_settings
from telephony.rtp.ports import NoFreePortError, PortAllocator
from telephony.rtp.session import RtpSession, RtpStats
from telephony.sip.refer import TransferNotAllowed
from telephony.sip.sdp import LocalMedia, MediaPlan
from telephony.sip.transport import SipServer
from telephony.sip.uas import Call, CallAnswered, CallState, CallEnded, CallError, DtmfInfo, Event, IncomingCall, ReInvite, TransferResult

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
CALLER_NUMBER_MAX = 32


class VoiceCall(Protocol):
    """What the door needs from a voice-loop call (bot.call.CallHandle satisfies it)."""

    on_audio: Callable[[bytes], None]
    on_clear: Callable[[], None]
    on_handoff: Any
    on_hangup: Any

    async def start(self) -> None: ...
    def feed_audio(self, pcm16: bytes) -> None: ...
    def feed_dtmf(self, key: str) -> None: ...
    def transfer_result(self, ok: bool, detail: str = "") -> None: ...
    async def stop(self, cause: str = "remote_hangup") -> None: ...


CallFactory = Callable[[Any], VoiceCall]  # CallInfo -> CallHandle; bot.call is imported lazily (heavy)


@dataclass
class CallLeg:
    """One call's resources; `events` is drained by the call's own task."""

    call: Call
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    rtp: RtpSession | None = None
    voice: VoiceCall | None = None
    task: asyncio.Task | None = None


class SipCallBridge:
    def __init__(self, settings: Settings, call_factory: CallFactory, allocator: PortAllocator | None = None):
        self.settings = settings
        self.call_factory = call_factory
        self.allocator = allocator or PortAllocator.from_settings(settings)
        self.server = SipServer(settings.sip, self._on_event)
        self.legs: dict[int, CallLeg] = {}
        # CDR hook: called once per call with its RTP counters (None if no media leg was opened).
        self.on_call_closed: Callable[[Call, RtpStats | None], None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    async def start(self, host: str | None = None, port: int | None = None) -> "SipCallBridge":
        await self.server.start(host, port)
        return self

    async def close(self) -> None:
        """Hang up every call, wait for their tasks to clean up, close the sockets."""
        for leg in list(self.legs.values()):
            if leg.call.state is not CallState.ENDED:
                self.server.hangup(leg.call, "shutdown")
        tasks = [leg.task for leg in self.legs.values() if leg.task]
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        await self.server.close()

    # ------------------------------------------------------------------------------ event routing

    def _on_event(self, event: Event) -> None:
        leg = self.legs.get(id(event.call))
        if leg is None:
            if not isinstance(event, IncomingCall):
                return
            leg = self.legs[id(event.call)] = CallLeg(event.call)
            leg.task = asyncio.get_running_loop().create_task(self._run_leg(leg), name=f"sip-{event.call.id}")
        leg.events.put_nowait(event)

    async def _run_leg(self, leg: CallLeg) -> None:
        try:
            while True:
                event = await leg.events.get()
                try:
                    await self._handle(leg, event)
                except Exception:
                    log.exception("call %s: handling %s failed", leg.call.id, type(event).__name__)
                    if not isinstance(event, CallEnded):
                        self._hangup(leg, "internal_error")
                if isinstance(event, CallEnded):
                    return
        finally:
            await self._teardown(leg, "bridge_closed")
            self.legs.pop(id(leg.call), None)

    async def _handle(self, leg: CallLeg, event: Event) -> None:
        if isinstance(event, IncomingCall):
            await self._answer(leg)
        elif isinstance(event, CallAnswered):
            await self._start_voice(leg)
        elif isinstance(event, DtmfInfo) and leg.voice is not None:
            leg.voice.feed_dtmf(event.digit)
        elif isinstance(event, ReInvite):
            self._apply_media(leg, event.media)
        elif isinstance(event, TransferResult) and leg.voice is not None:
            if event.ok and event.time_to_agent_s is not None:
                log.info("call %s: time to agent %.1f s", leg.call.id, event.time_to_agent_s)
            leg.voice.transfer_result(event.ok, event.detail)
        elif isinstance(event, CallEnded):
            await self._teardown(leg, event.cause)

    async def _answer(self, leg: CallLeg) -> None:
        call = leg.call
        media = call.media
        try:
            leg.rtp = await RtpSession.open(
                self.allocator, _remote(media) if media else None, local_host=self.server.address[0],
                payload_type=media.payload_type if media else 0,
                dtmf_payload_type=(media.telephone_event_pt if media and media.telephone_event_pt is not None else 101),
                call_id=call.id, settings=self.settings,
            )
        except NoFreePortError:
            log.warning("call %s: no free RTP port", call.id)
            self.server.reject(call, 503)
            return
        leg.rtp.on_timeout = lambda: self._hangup(leg, "media_timeout")
        self.server.answer(call, LocalMedia(self.server.address[0], leg.rtp.local_port))

    async def _start_voice(self, leg: CallLeg) -> None:
        assert leg.rtp is not None
        if leg.call.media is not None and leg.rtp.remote_address is None:
            leg.rtp.set_remote(_remote(leg.call.media))  # the offer came in the ACK
        from bot.call import CallInfo

        voice = self.call_factory(CallInfo(leg.call.id, _caller_number(leg.call.caller), sample_rate=SAMPLE_RATE))
        leg.voice = voice
        rtp = leg.rtp
        voice.on_audio = rtp.send_audio
        voice.on_clear = rtp.clear_audio
        voice.on_handoff = lambda event: self._handoff(leg, event)
        voice.on_hangup = lambda: self._bot_hangup(leg)
        rtp.on_audio = voice.feed_audio
        rtp.on_dtmf = voice.feed_dtmf
        await voice.start()

    def _apply_media(self, leg: CallLeg, media: MediaPlan) -> None:
        """A re-INVITE: new destination, or hold. On hold we must not send (RFC 3264 §8.4), and a
        `c=0.0.0.0` destination would even loop back to this host."""
        if leg.rtp is None:
            return
        rtp = leg.rtp
        if media.direction in ("sendrecv", "sendonly"):
            rtp.set_remote(_remote(media))
            if leg.voice is not None:
                leg.voice.on_audio = rtp.send_audio
        elif leg.voice is not None:
            leg.voice.on_audio = _discard_audio
        log.info("call %s: media now %s to %s:%s", leg.call.id, media.direction, media.remote_host, media.remote_port)

    async def _handoff(self, leg: CallLeg, event: dict) -> None:
        """The bot's handoff event: REFER to the queue's URI (routing table only), else report failure."""
        try:
            self.server.refer_to_queue(leg.call, str(event.get("queue", "")), dict(event.get("context") or {}))
        except (TransferNotAllowed, CallError) as error:
            log.warning("call %s: transfer refused: %s", leg.call.id, error)
            if leg.voice is not None:
                asyncio.get_running_loop().call_soon(leg.voice.transfer_result, False, str(error))

    async def _bot_hangup(self, leg: CallLeg) -> None:
        self._hangup(leg, "bot_hangup")

    def _hangup(self, leg: CallLeg, cause: str) -> None:
        if leg.call.state is not CallState.ENDED:
            self.server.hangup(leg.call, cause)

    async def _teardown(self, leg: CallLeg, cause: str) -> None:
        voice, leg.voice = leg.voice, None
        if voice is not None:
            try:
                await voice.stop(cause)
            except Exception:
                log.exception("call %s: voice loop failed to stop", leg.call.id)
        if leg.rtp is not None and not leg.rtp.closed:
            stats = leg.rtp.stats()
            leg.rtp.close()
            self._report_closed(leg.call, stats)
        elif leg.rtp is None and self.on_call_closed is not None:
            self._report_closed(leg.call, None)

    def _report_closed(self, call: Call, stats: RtpStats | None) -> None:
        if self.on_call_closed is None:
            return
        try:
            self.on_call_closed(call, stats)
        except Exception:
            log.exception("call %s: on_call_closed failed", call.id)


def _discard_audio(pcm16: bytes) -> None:
    """Bot audio while the caller holds the call: nowhere to send it."""


def _remote(media: MediaPlan) -> tuple[str, int]:
    return (media.remote_host, media.remote_port)


def _caller_number(user: str) -> str:
    digits = "".join(c for c in user if c.isdigit())[:CALLER_NUMBER_MAX]
    return ("+" + digits) if user.startswith("+") and digits else digits


async def start_sip_server(settings: Settings, call_factory: CallFactory, host: str | None = None,
                           port: int | None = None) -> SipCallBridge:
    """The SIP door on settings.sip.host/port (UDP+TCP). `close()` it to stop."""
    return await SipCallBridge(settings, call_factory).start(host, port)


def add_sip_service(app: Any, call_factory: CallFactory | None = None, settings: Settings | None = None) -> None:
    """Run the SIP door with the gateway's aiohttp app, started and stopped by its cleanup context.

    Without `call_factory` the calls go to the gateway's shared voice loop, `app[VOICE_RUNTIME_KEY].create_call`
    (bot/web/voice.py loads it in an earlier cleanup context)."""

    async def sip_ctx(app: Any) -> AsyncIterator[None]:
        from bot.web.app import SETTINGS_KEY
        from bot.web.voice import VOICE_RUNTIME_KEY

        factory = call_factory
        if factory is None:
            runtime = app.get(VOICE_RUNTIME_KEY)
            if runtime is None:
                log.error("no voice runtime in the gateway: SIP door not started")
                yield
                return
            factory = runtime.create_call
        sip_settings = settings or app.get(SETTINGS_KEY) or get_settings()
        try:
            bridge = await start_sip_server(sip_settings, factory)
        except OSError as error:
            # One door failing (port taken) must not take the console and the other doors down with it.
            log.error("SIP door not started on %s:%s: %s", sip_settings.sip.host, sip_settings.sip.port, error)
            yield
            return
        try:
            yield
        finally:
            await bridge.close()

    app.cleanup_ctx.append(sip_ctx)


class MediaEchoCall:
    """A media-only bot: plays back what it hears, packet by packet. For load tests and line checks."""

    def __init__(self, info: Any):
        self.info = info
        self.on_audio: Callable[[bytes], None] = lambda pcm16: None
        self.on_clear: Callable[[], None] = lambda: None
        self.on_handoff: Any = None
        self.on_hangup: Any = None
        self.dtmf: list[str] = []
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    def feed_audio(self, pcm16: bytes) -> None:
        self.on_audio(pcm16)

    def feed_dtmf(self, key: str) -> None:
        self.dtmf.append(key)

    def transfer_result(self, ok: bool, detail: str = "") -> None:
        pass

    async def stop(self, cause: str = "remote_hangup") -> None:
        self.stopped = True


async def _serve_echo(settings: Settings, host: str, port: int) -> None:
    bridge = await start_sip_server(settings, MediaEchoCall, host, port)
    print(f"SIP echo door on {bridge.address[0]}:{bridge.address[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await bridge.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m telephony.sip_calls", description=__doc__.splitlines()[0])
    parser.add_argument("--echo", action="store_true", required=True, help="answer with the media-only echo bot")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    asyncio.run(_serve_echo(settings, args.host or settings.sip.host, settings.sip.port if args.port is None else args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
