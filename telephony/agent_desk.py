"""A stand-in agent desk: the SIP endpoint at the routing table's loopback target that answers transferred calls.

    python -m telephony.agent_desk                 # 127.0.0.1:5070, the default SIP_ROUTING targets' address
    python -m telephony.agent_desk --port 5071 --answer-after 2

`make run` starts it (scripts/stack.py) when SIP_ROUTING points at a loopback address, so a handoff over SIP
completes end to end on one machine: the gateway REFERs the caller here, the caller's phone INVITEs the desk, the desk
rings for `answer_after_s` (an agent picking up), answers, says 「坐席已接通」 (espeak-ng; a tone without it) and then
holds the line, quiet, until the caller hangs up (or `hold_s` passes). The caller's phone reports the answer to the
gateway in a NOTIFY `SIP/2.0 200`, where the gateway's time to agent ends.

It reuses the gateway's SIP core (telephony/sip: the same UserAgent, transport and RTP session) and knows nothing
of banking. It serves loopback only: it refuses to bind anything but a loopback address, and its allow-list is
loopback whatever SIP_ALLOW_CIDRS says, with no digest login (nobody off this machine can reach an agent through it).
An INVITE carrying the screen-pop's reference, as RFC 7433 User-to-User (the REFER embeds it in the Refer-To URI,
so the caller's phone sends it) or as X-IVR-Context-Ref (a PBX that copies the REFER's headers), is logged with the screen-pop's tag (a
SHA-256 prefix, bot/screen_pop.py ref_tag), never the reference: whoever holds a reference can open the agent's page.
For a person trying the stack, the desk prints the page's address (`http://<gateway>/agent/<ref>`) on its console,
stdout and not the log, with `--show-screen-pop`: the default when stdout is a terminal, and `make run` passes it when
its own stdout is one (the desk's output reaches that terminal through the supervisor). The desk binds loopback only,
so the address printed is one only this machine can open. A real PBX hands the reference to the agent's desktop.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import dataclasses
import ipaddress
import logging
import math
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from bot.screen_pop import REF_RE, ref_tag
from settings import Settings, get_settings
from telephony.rtp.ports import NoFreePortError, PortAllocator
from telephony.rtp.session import RtpSession
from telephony.signals import until_signalled
from telephony.sip.message import parse_uri
from telephony.sip.refer import RoutingTable
from telephony.sip.sdp import LocalMedia
from telephony.sip.transport import SipServer
from telephony.sip.uas import Call, CallAnswered, CallEnded, CallState, Event, IncomingCall
from telephony.sip.uui import parse_reference

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
FRAME_BYTES = SAMPLE_RATE // 50 * 2  # 20 ms of 16-bit PCM
ANNOUNCEMENT = "坐席已接通"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 5070
LOOPBACK_CIDRS = "127.0.0.0/8,::1/128"


class NotLoopback(ValueError):
    """The desk was asked to listen where others than this machine could reach it."""


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def desk_address(settings: Settings) -> tuple[str, int] | None:
    """Where the desk stands in: the first routing-table target on a loopback address (None: every queue goes to a
    real PBX, so there is nothing to stand in for)."""
    for uri in RoutingTable.parse(settings.sip.routing).routes.values():
        parsed = parse_uri(uri)
        if is_loopback(parsed.host):
            return parsed.host.strip("[]"), parsed.port or 5060
    return None


def tone(seconds: float = 0.25, frequency: float = 880.0, amplitude: int = 6000) -> bytes:
    samples = array.array("h", (int(amplitude * math.sin(2 * math.pi * frequency * n / SAMPLE_RATE))
                                for n in range(int(SAMPLE_RATE * seconds))))
    return samples.tobytes()


def silence(seconds: float) -> bytes:
    return bytes(int(SAMPLE_RATE * seconds) * 2)


def resample(pcm16: bytes, rate: int) -> bytes:
    """16-bit mono PCM at `rate` to 8 kHz (linear interpolation: an announcement, not music)."""
    source = array.array("h")
    source.frombytes(pcm16)
    if rate == SAMPLE_RATE or not source:
        return pcm16
    count = int(len(source) * SAMPLE_RATE / rate)
    out = array.array("h", bytes(count * 2))
    step = rate / SAMPLE_RATE
    for n in range(count):
        position = n * step
        i = int(position)
        following = source[i + 1] if i + 1 < len(source) else source[i]
        out[n] = int(source[i] + (following - source[i]) * (position - i))
    return out.tobytes()


def announcement_audio(text: str = ANNOUNCEMENT) -> bytes:
    """A beep, then `text` in espeak-ng's Mandarin voice at 8 kHz; the beep twice without espeak-ng."""
    beep = tone() + silence(0.15)
    executable = shutil.which("espeak-ng")
    if executable is None:
        return beep + beep
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "announcement.wav"
        try:
            subprocess.run([executable, "-v", "cmn", "-w", str(path), text], check=True, timeout=20,
                           capture_output=True)
            with wave.open(str(path)) as speech:
                if speech.getnchannels() != 1 or speech.getsampwidth() != 2:
                    return beep + beep
                return beep + resample(speech.readframes(speech.getnframes()), speech.getframerate())
        except (OSError, subprocess.SubprocessError, wave.Error) as error:
            log.warning("espeak-ng announcement unavailable (%s): a tone instead", error)
            return beep + beep


def screen_pop_reference(headers: dict[str, str]) -> str | None:
    """The screen-pop reference an INVITE carries: RFC 7433 User-to-User first, else X-IVR-Context-Ref; only a
    well-formed reference (it is printed on a console: no control characters, no escape sequences)."""
    reference = parse_reference(headers.get("user-to-user")) or headers.get("x-ivr-context-ref")
    return reference if reference and REF_RE.fullmatch(reference) else None


@dataclass
class DeskCall:
    call: Call
    rtp: RtpSession | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)


class AgentDesk:
    """`answer_after_s`: how long it rings before the agent answers; `hold_s`: the longest it keeps a call."""

    def __init__(self, settings: Settings, *, answer_after_s: float = 1.0, hold_s: float = 600.0,
                 announcement: bytes | None = None, gateway_url: str = "", show_screen_pop: bool = False,
                 console: TextIO | None = None):
        """`show_screen_pop`: print each transferred call's screen-pop address on `console` (default stdout), a
        person's terminal; the log only ever has the reference's tag."""
        # Loopback peers only, whatever the gateway's own SIP allow-list and digest credentials say.
        sip = dataclasses.replace(settings.sip, allow_cidrs=LOOPBACK_CIDRS, digest_user="", digest_password="",
                                  advertised_host="", trusted_proxies="")
        self.settings = dataclasses.replace(settings, sip=sip)
        self.answer_after_s = answer_after_s
        self.hold_s = hold_s
        self.announcement = announcement if announcement is not None else announcement_audio()
        self.gateway_url = gateway_url or f"http://{settings.gateway.host}:{settings.gateway.port}"
        self.allocator = PortAllocator.from_settings(self.settings)
        self.server = SipServer(sip, self._on_event)
        self.calls: dict[str, DeskCall] = {}
        self.answered: list[str] = []  # the queues (Request-URI users) of the calls answered so far
        self.show_screen_pop = show_screen_pop
        self.console = console

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    async def start(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> "AgentDesk":
        if not is_loopback(host):
            raise NotLoopback(f"the stand-in agent desk serves loopback only, not {host!r}")
        await self.server.start(host, port)
        return self

    async def close(self) -> None:
        for desk_call in list(self.calls.values()):
            if desk_call.call.state is not CallState.ENDED:
                self.server.hangup(desk_call.call, "shutdown")
            self._release(desk_call)
        await self.server.close()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, IncomingCall):
            desk_call = self.calls[event.call.id] = DeskCall(event.call)
            self._spawn(desk_call, self._ring_then_answer(desk_call))
        elif isinstance(event, CallAnswered):
            desk_call = self.calls.get(event.call.id)
            if desk_call is not None:
                self._spawn(desk_call, self._speak(desk_call))
        elif isinstance(event, CallEnded):
            desk_call = self.calls.pop(event.call.id, None)
            if desk_call is not None:
                log.info("agent desk: call %s ended (%s)", event.call.id, event.cause)
                self._release(desk_call)

    async def _ring_then_answer(self, desk_call: DeskCall) -> None:
        call = desk_call.call
        context_ref = screen_pop_reference(call.headers)
        log.info("agent desk: call for %s ringing%s", call.callee or "?",
                 f"; screen-pop {ref_tag(context_ref)}" if context_ref else "")
        if context_ref and self.show_screen_pop and is_loopback(self.server.address[0]):
            print(f"agent desk: screen-pop {ref_tag(context_ref)} for the call to {call.callee or '?'}: "
                  f"{self.gateway_url}/agent/{context_ref}", file=self.console or sys.stdout, flush=True)
        self.server.ringing(call)
        await asyncio.sleep(self.answer_after_s)
        if call.state is not CallState.RINGING:
            return
        media = call.media
        try:
            desk_call.rtp = await RtpSession.open(
                self.allocator, (media.remote_host, media.remote_port) if media else None,
                local_host=self.server.address[0], payload_type=media.payload_type if media else 0,
                call_id=call.id, settings=self.settings, signalling_host=call.peer[0])
        except NoFreePortError:
            self.server.reject(call, 503)
            return
        desk_call.rtp.on_timeout = lambda: self._hangup(call, "media_timeout")
        self.server.answer(call, LocalMedia(self.server.advertised_host, desk_call.rtp.local_port))
        self.answered.append(call.callee)
        log.info("agent desk: answered the call for %s", call.callee or "?")

    async def _speak(self, desk_call: DeskCall) -> None:
        """The announcement in real-time 20 ms frames, then quiet frames (the line stays up) until `hold_s`."""
        rtp, call = desk_call.rtp, desk_call.call
        if rtp is None:
            return
        if call.media is not None:
            rtp.set_remote((call.media.remote_host, call.media.remote_port))
        loop = asyncio.get_running_loop()
        started = loop.time()
        frames = (len(self.announcement) + FRAME_BYTES - 1) // FRAME_BYTES
        quiet = bytes(FRAME_BYTES)
        index = 0
        while loop.time() - started < self.hold_s and call.state is not CallState.ENDED:
            chunk = self.announcement[index * FRAME_BYTES:(index + 1) * FRAME_BYTES] if index < frames else quiet
            rtp.send_audio(chunk.ljust(FRAME_BYTES, b"\0"))
            index += 1
            await asyncio.sleep(max(0.0, started + index * 0.02 - loop.time()))
        self._hangup(call, "agent_hangup")

    def _hangup(self, call: Call, cause: str) -> None:
        if call.state is not CallState.ENDED:
            self.server.hangup(call, cause)

    def _spawn(self, desk_call: DeskCall, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        desk_call.tasks.append(task)
        task.add_done_callback(_log_failure)

    @staticmethod
    def _release(desk_call: DeskCall) -> None:
        for task in desk_call.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        if desk_call.rtp is not None:
            desk_call.rtp.close()


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("agent desk task failed: %r", task.exception())


async def serve(settings: Settings, host: str, port: int, answer_after_s: float, hold_s: float,
                show_screen_pop: bool = False) -> None:
    desk = await AgentDesk(settings, answer_after_s=answer_after_s, hold_s=hold_s,
                           show_screen_pop=show_screen_pop).start(host, port)
    print(f"agent desk on {desk.address[0]}:{desk.address[1]} (answers after {answer_after_s:g} s)", flush=True)
    await until_signalled()
    await desk.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m telephony.agent_desk", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=None, help="a loopback address (default: the routing table's)")
    parser.add_argument("--port", type=int, default=None, help="default: the routing table's loopback target's")
    parser.add_argument("--answer-after", type=float, default=1.0, help="seconds of ringing before the answer")
    parser.add_argument("--hold", type=float, default=600.0, help="longest call, seconds")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--show-screen-pop", action=argparse.BooleanOptionalAction, default=None,
                        help="print each screen-pop's address on stdout (never the log); default: if it is a terminal")
    args = parser.parse_args(argv)
    show_screen_pop = sys.stdout.isatty() if args.show_screen_pop is None else args.show_screen_pop
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    host, port = desk_address(settings) or (DEFAULT_HOST, DEFAULT_PORT)
    try:
        asyncio.run(serve(settings, args.host or host, port if args.port is None else args.port,
                          args.answer_after, args.hold, show_screen_pop))
    except NotLoopback as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
