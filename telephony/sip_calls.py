"""The SIP door: each SIP call becomes one RTP session and one voice-loop call (bot/call.py CallHandle).

    bridge = await start_sip_server(settings, runtime.create_call)     # or add_sip_service(app, voice_loop)
    ...
    await bridge.close()

Per call, events are handled in order by one task that ends with the call, so nothing outlives it:
IncomingCall → RTP port + 200 OK; CallAnswered (ACK) → the voice loop starts (the greeting plays);
DtmfInfo → feed_dtmf; ReInvite → new RTP destination and direction (hold); TransferResult → transfer_result;
CallEnded → stop the voice loop and close the RTP port. The bot's handoff becomes a REFER to the routing table's
queue, its hangup a BYE; no RTP for media_timeout_s → BYE (not while the caller holds the call with `inactive`).

A call's life (id, admission, voice loop, CDR, metrics, key logging, teardown) is a `bot.call_session.CallSession`;
this module adds what is SIP's: the RTP leg, the REFER, and 503 + Retry-After for an INVITE that finds the voice
loop full (the admission is taken at the INVITE, so the caller is never answered and then dropped).
Every log line of a call carries `call=<id>`; each call ends in one CDR line, including the time to agent (from our
answer, the call's 200 OK, to the agent answering, the REFER's NOTIFY 200) and the time from the handoff (our REFER)
to its 202 (`refer_accepted_s`).
With a screen-pop store (bot/screen_pop.py, the voice loop's), the handoff leaves a context reference for the agent's
page, and the REFER carries it as X-IVR-Context-Ref.

`python -m telephony.sip_calls --echo` runs the door with a media-only echo bot (for sipp, baresip, bench).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from bot import door_metrics as metrics
from bot.admission import Admission
from bot.call_log import CallLoggerAdapter, call_logger
from bot.call_session import CallFactory, CallSession, safe_caller_number
from bot.cdr import CallDetailRecord, CdrWriter, finish_call
from bot.screen_pop import ScreenPopStore
from settings import Settings, get_settings
from telephony.rtp.ports import NoFreePortError, PortAllocator
from telephony.rtp.session import RtpSession, RtpStats
from telephony.signals import until_signalled
from telephony.sip.refer import RoutingTable, TransferNotAllowed
from telephony.sip.sdp import LocalMedia, MediaPlan
from telephony.sip.transport import SipServer
from telephony.sip.uas import (AdvertisedAddressError, Call, CallAnswered, CallEnded, CallError, CallRefused,
                               CallState, DtmfInfo, Event, IncomingCall, ReInvite, TransferResult)

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000


@dataclass
class CallLeg:
    """One call's resources; `events` is drained by the call's own task."""

    call: Call
    session: CallSession
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    rtp: RtpSession | None = None
    task: asyncio.Task | None = None
    rtp_awaits_sdp: bool = False  # opened without a remote (INVITE without SDP): the ACK's SDP sets it

    @property
    def log(self) -> CallLoggerAdapter:
        return self.session.log


class SipCallBridge:
    """`cdr_writer`: where each call's CDR line goes (None: metrics only, e.g. for benchmarks).
    `admission`: the voice loop's limit, taken at the INVITE (None: only settings.sip.max_calls)."""

    def __init__(self, settings: Settings, call_factory: CallFactory, allocator: PortAllocator | None = None,
                 cdr_writer: CdrWriter | None = None, admission: Admission | None = None,
                 screen_pops: ScreenPopStore | None = None):
        self.settings = settings
        self.screen_pops = screen_pops
        self.call_factory = call_factory
        self.admission = admission
        self.allocator = allocator or PortAllocator.from_settings(settings)
        self.cdr_writer = cdr_writer
        self.routing = RoutingTable.parse(settings.sip.routing)
        self.server = SipServer(settings.sip, self._on_event)
        self.legs: dict[str, CallLeg] = {}  # by our call id
        # Called once per call with its RTP counters (None if no media leg was opened); bench/sip_load.py uses it.
        self.on_call_closed: Callable[[Call, RtpStats | None], None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    async def start(self, host: str | None = None, port: int | None = None) -> "SipCallBridge":
        await self.server.start(host, port)
        return self

    async def close(self) -> None:
        """Hang up every call, wait for their tasks to clean up, close the sockets.
        A call stuck in teardown is cancelled after 5 s; its CDR is still written (a `finally` in `_teardown`)."""
        for leg in list(self.legs.values()):
            if leg.call.state is not CallState.ENDED:
                self.server.hangup(leg.call, "shutdown")
        tasks = [leg.task for leg in self.legs.values() if leg.task]
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=5.0)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        await self.server.close()

    # ------------------------------------------------------------------------------ event routing

    def _on_event(self, event: Event) -> None:
        if isinstance(event, CallRefused):
            self._record_refused(event)
            return
        leg = self.legs.get(event.call.id)
        if leg is None:
            if not isinstance(event, IncomingCall):
                return
            leg = self.legs[event.call.id] = self._new_leg(event.call)
            leg.task = asyncio.get_running_loop().create_task(self._run_leg(leg), name=event.call.id)
        leg.events.put_nowait(event)

    def _new_leg(self, call: Call) -> CallLeg:
        session = CallSession(self.call_factory, metrics.DOOR_SIP, caller=call.caller, peer_call_id=call.sip_call_id,
                              sample_rate=SAMPLE_RATE, cdr_writer=self.cdr_writer, admission=self.admission,
                              transfer=lambda session, event: self._handoff(call, session, event),
                              on_bot_hangup=lambda: self._hangup(call, "bot_hangup"), call_id=call.id,
                              screen_pops=self.screen_pops)
        return CallLeg(call, session)

    def _record_refused(self, event: CallRefused) -> None:
        """An INVITE the SIP core refused (over the limit, no common codec, bad SDP) still gets its CDR."""
        record = CallDetailRecord.begin(event.id, metrics.DOOR_SIP,
                                        caller=safe_caller_number(event.caller), peer_call_id=event.sip_call_id)
        finish_call(record, f"refused_{event.status}", self.cdr_writer)

    async def _run_leg(self, leg: CallLeg) -> None:
        try:
            while True:
                event = await leg.events.get()
                try:
                    await self._handle(leg, event)
                except Exception:
                    leg.log.exception("handling %s failed", type(event).__name__)
                    if not isinstance(event, CallEnded):
                        self._hangup(leg.call, "internal_error")
                if isinstance(event, CallEnded):
                    return
        finally:
            await self._teardown(leg, "bridge_closed")
            self.legs.pop(leg.call.id, None)

    async def _handle(self, leg: CallLeg, event: Event) -> None:
        if isinstance(event, IncomingCall):
            await self._answer(leg)
        elif isinstance(event, CallAnswered):
            await self._start_voice(leg)
        elif isinstance(event, DtmfInfo):
            leg.session.feed_dtmf(event.digit, "sip info")
        elif isinstance(event, ReInvite):
            self._apply_media(leg, event.media)
        elif isinstance(event, TransferResult):
            leg.session.transfer_finished(event.ok, event.detail, event.time_to_agent_s, event.refer_accepted_s)
        elif isinstance(event, CallEnded):
            await self._teardown(leg, event.cause)

    async def _answer(self, leg: CallLeg) -> None:
        call = leg.call
        media = call.media
        if not leg.session.admit():
            leg.log.warning("the voice loop is full: 503 with Retry-After")
            self.server.reject(call, 503)
            return
        try:
            # RTP binds where SIP is bound (a wildcard: every interface); the SDP names the advertised host.
            leg.rtp = await RtpSession.open(
                self.allocator, _remote(media) if media else None, local_host=self.server.address[0],
                payload_type=media.payload_type if media else 0,
                dtmf_payload_type=(media.telephone_event_pt if media and media.telephone_event_pt is not None else 101),
                call_id=call.id, settings=self.settings, signalling_host=call.peer[0],
            )
        except NoFreePortError:
            leg.log.warning("no free RTP port")
            self.server.reject(call, 503)
            return
        leg.rtp_awaits_sdp = media is None
        leg.rtp.on_timeout = lambda: self._hangup(call, "media_timeout")
        leg.session.before_record = lambda: self._close_media(leg)
        self.server.answer(call, LocalMedia(self.server.advertised_host, leg.rtp.local_port))
        leg.session.record.codec = media.codec if media else None
        leg.session.record.answered()

    async def _start_voice(self, leg: CallLeg) -> None:
        assert leg.rtp is not None
        if leg.call.media is not None and leg.rtp_awaits_sdp:
            # The INVITE had no offer: the ACK's SDP says where the caller's media is. Until now the RTP leg had
            # no remote and latches on nothing (a stranger's early packets must not win the call's audio).
            leg.rtp.set_remote(_remote(leg.call.media))
            leg.rtp_awaits_sdp = False
        rtp, session = leg.rtp, leg.session
        rtp.on_audio = session.feed_audio
        rtp.on_dtmf = lambda key: session.feed_dtmf(key, "rtp event")
        if not await session.start(on_audio=rtp.send_audio, on_clear=rtp.clear_audio):
            self._hangup(leg.call, "busy" if session.busy else "start_failed")

    def _apply_media(self, leg: CallLeg, media: MediaPlan) -> None:
        """A re-INVITE: new destination, hold or unhold. The RTP leg sends only when our direction includes
        "send" (RFC 3264 §8.4; a `c=0.0.0.0` hold address would even loop back to this host), and expects media
        only when it includes "recv", so a caller holding with `inactive` is not hung up for silence."""
        if leg.rtp is None:
            return
        if media.direction in ("sendrecv", "sendonly"):
            leg.rtp.set_remote(_remote(media))
        leg.rtp.set_direction(media.direction)
        leg.log.info("media now %s, remote %s:%s", media.direction, media.remote_host, media.remote_port)

    async def _handoff(self, call: Call, session: CallSession, event: dict) -> None:
        """The bot's handoff event: REFER to the queue's URI (routing table only), else report failure."""
        queue = str(event.get("queue", ""))
        context = event.get("context") if isinstance(event.get("context"), dict) else {}
        session.transfer_requested(queue, self.routing.routes.get(queue), event)
        try:
            self.server.refer_to_queue(call, queue, context)
        except (TransferNotAllowed, CallError) as error:
            session.log.warning("transfer refused: %s", error)
            session.transfer_finished(False, str(error))

    def _hangup(self, call: Call, cause: str) -> None:
        if call.state is not CallState.ENDED:
            self.server.hangup(call, cause)

    async def _teardown(self, leg: CallLeg, cause: str) -> None:
        """Once per call (CallSession.stop is idempotent): voice loop, RTP port, admission slot, CDR line."""
        if leg.rtp is None:
            leg.session.before_record = lambda: self._report_closed(leg, None)
        await leg.session.stop(cause)

    def _close_media(self, leg: CallLeg) -> None:
        assert leg.rtp is not None
        stats = leg.rtp.stats()
        leg.rtp.close()
        leg.session.record.media(stats.packets_in, stats.packets_out, stats.packets_lost, stats.jitter_ms)
        self._report_closed(leg, stats)

    def _report_closed(self, leg: CallLeg, stats: RtpStats | None) -> None:
        if self.on_call_closed is None:
            return
        try:
            self.on_call_closed(leg.call, stats)
        except Exception:
            leg.log.exception("on_call_closed failed")


def _remote(media: MediaPlan) -> tuple[str, int]:
    return (media.remote_host, media.remote_port)


async def start_sip_server(settings: Settings, call_factory: CallFactory, host: str | None = None,
                           port: int | None = None, cdr_writer: CdrWriter | None = None,
                           admission: Admission | None = None,
                           screen_pops: ScreenPopStore | None = None) -> SipCallBridge:
    """The SIP door on settings.sip.host/port (UDP+TCP). `close()` it to stop."""
    return await SipCallBridge(settings, call_factory, cdr_writer=cdr_writer, admission=admission,
                               screen_pops=screen_pops).start(host, port)


def add_sip_service(app: Any, voice: Any, settings: Settings | None = None) -> None:
    """Run the SIP door with the gateway's aiohttp app, started and stopped by its cleanup context.

    `voice`: the gateway's voice loop (bot/web/voice_loop.py VoiceLoop): calls go to `voice.create_call` and take
    `voice.admission` at the INVITE. Without a loaded voice loop the door does not start."""

    async def sip_ctx(app: Any) -> AsyncIterator[None]:
        from bot.web.app import SETTINGS_KEY

        if voice is None or voice.runtime is None:
            log.error("no voice loop in the gateway: SIP door not started")
            yield
            return
        sip_settings = settings or app.get(SETTINGS_KEY) or get_settings()
        try:
            bridge = await start_sip_server(sip_settings, voice.create_call, admission=voice.admission,
                                            cdr_writer=CdrWriter.from_settings(sip_settings),
                                            screen_pops=getattr(voice, "screen_pops", None))
        except AdvertisedAddressError as error:
            log.error("SIP door not started on %s:%s: %s; set SIP_ADVERTISED_HOST to the address peers reach us at",
                      sip_settings.sip.host, sip_settings.sip.port, error)
            yield
            return
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
    await until_signalled()
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
    try:
        asyncio.run(_serve_echo(settings, args.host or settings.sip.host, settings.sip.port if args.port is None else args.port))
    except AdvertisedAddressError as error:
        log.error("SIP echo door not started: %s; set SIP_ADVERTISED_HOST", error)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
