"""attach_call: an RTP leg and a voice-loop call (test double) exchange audio and keys over real UDP."""

import asyncio

import numpy as np

from bot.call import CallInfo
from telephony.rtp import g711
from telephony.rtp.bridge import attach_call, detach_call
from telephony.rtp.dtmf import DtmfReceiver, event_payloads
from telephony.rtp.packet import RtpPacket, build_packet, parse_packet
from telephony.rtp.ports import PortAllocator
from telephony.rtp.session import RtpSession


class RecordingCall:
    """The CallHandle surface attach_call touches; records what the RTP leg fed it."""

    def __init__(self) -> None:
        self.info = CallInfo("rtp-bridge-test", "13800000001")
        self.on_audio = lambda pcm16: None
        self.on_clear = lambda: None
        self.audio_in = bytearray()
        self.keys: list[str] = []

    def feed_audio(self, pcm16: bytes) -> None:
        self.audio_in += pcm16

    def feed_dtmf(self, key: str) -> None:
        self.keys.append(key)


async def test_audio_and_keys_flow_both_ways(udp_peer):
    phone = udp_peer()
    phone.setblocking(False)
    port = phone.getsockname()[1] & ~1
    allocator = PortAllocator(min(port, 65000), min(port, 65000) + 49)
    session = await RtpSession.open(allocator, phone.getsockname(), media_timeout_s=30)
    call = RecordingCall()
    attach_call(session, call)
    loop = asyncio.get_running_loop()
    try:
        speech = (np.arange(160) * 50).astype("<i2").tobytes()
        rtp_address = ("127.0.0.1", session.local_port)
        phone.sendto(build_packet(RtpPacket(0, 1, 160, 9, g711.pcm16_to_ulaw(speech))), rtp_address)
        receiver = DtmfReceiver()
        for i, payload in enumerate(event_payloads("8"), start=2):
            phone.sendto(build_packet(RtpPacket(101, i, 320, 9, payload)), rtp_address)
        deadline = loop.time() + 10  # generous: only bounds a broken run on a loaded machine
        while not call.keys and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert call.keys == ["8"] and bytes(call.audio_in) == g711.ulaw_to_pcm16(g711.pcm16_to_ulaw(speech))

        call.on_audio(speech)  # the bot speaks
        packet = parse_packet(await asyncio.wait_for(loop.sock_recv(phone, 2048), 10))
        assert packet.payload == g711.pcm16_to_ulaw(speech) and not receiver.feed(packet)

        call.on_audio(speech[:100])
        call.on_clear()  # barge-in drops the partial frame
        call.on_audio(speech[100:])
        assert session.stats().packets_out == 1  # sending is synchronous: the partial frame was dropped

        detach_call(session, call)
        call.on_audio(speech)
        assert session.stats().packets_out == 1
    finally:
        session.close()
