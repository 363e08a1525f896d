"""An INVITE without SDP: our 200 OK offers, the caller's answer comes in the ACK (RFC 3261 §13.2.1). Until then
the call's RTP port has no signalled remote, so a stranger spraying it must win nothing: the SIP door hands the
ACK's address to the RTP leg (`set_remote`) and the call's audio goes there, never to the stranger."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import struct

from settings import Settings
from telephony.rtp.ports import PortAllocator
from telephony.sip.message import parse_message
from telephony.sip.sdp import parse_sdp
from telephony.sip_calls import MediaEchoCall, SipCallBridge
from tests.telephony.sip.sip_test_support import Uac

WAIT_S = 10.0
STRANGER = "127.0.0.66"


class Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr) -> None:
        self.queue.put_nowait(data)


async def udp(host: str) -> tuple[asyncio.DatagramTransport, Inbox]:
    transport, inbox = await asyncio.get_running_loop().create_datagram_endpoint(Inbox, local_addr=(host, 0))
    return transport, inbox


def rtp_packet(sequence: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, sequence, sequence * 160, ssrc) + b"\xff" * 160  # PCMU silence


async def until(condition) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_the_acks_sdp_sets_the_remote_and_a_strangers_early_packets_win_nothing(tmp_path):
    base = Settings()
    rtp_min = 33000 + (os.getpid() % 80) * 20
    sip = dataclasses.replace(base.sip, rtp_port_min=rtp_min, rtp_port_max=rtp_min + 19)
    settings = dataclasses.replace(base, sip=sip)
    bridge = await SipCallBridge(settings, MediaEchoCall, PortAllocator(rtp_min, rtp_min + 19)).start("127.0.0.1", 0)
    signalling, sip_inbox = await udp("127.0.0.1")
    caller_media, caller_inbox = await udp("127.0.0.1")
    stranger, stranger_inbox = await udp(STRANGER)
    try:
        uac = Uac(signalling.get_extra_info("sockname")[:2])
        signalling.sendto(uac.invite(body=""), bridge.address)
        responses = []
        while not responses or responses[-1].status < 200:
            responses.append(parse_message(await asyncio.wait_for(sip_inbox.queue.get(), WAIT_S)))
        ok = responses[-1]
        assert ok.status == 200
        our_port = parse_sdp(ok.body).media[0].port
        [leg] = bridge.legs.values()

        for sequence in range(1, 11):  # the stranger sprays before the ACK
            stranger.sendto(rtp_packet(sequence, 0x5757), ("127.0.0.1", our_port))
        await until(lambda: leg.rtp is not None and leg.rtp.stats().packets_in + leg.rtp.stats().packets_ignored >= 10)

        caller_port = caller_media.get_extra_info("sockname")[1]
        answer = (f"v=0\r\no=caller 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                  f"m=audio {caller_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
        uac.learn_tag(ok)
        with_sdp = f"Content-Type: application/sdp\r\nContent-Length: {len(answer)}\r\n\r\n{answer}"
        ack = uac.ack().replace(b"Content-Length: 0\r\n\r\n", with_sdp.encode())
        signalling.sendto(ack, bridge.address)
        await until(lambda: leg.session.voice is not None)
        assert leg.rtp.remote_address == ("127.0.0.1", caller_port)

        for sequence in range(1, 30):  # the caller speaks; the echo bot answers it
            caller_media.sendto(rtp_packet(sequence, 0x1234), ("127.0.0.1", our_port))
            stranger.sendto(rtp_packet(100 + sequence, 0x5757), ("127.0.0.1", our_port))
        echoed = await asyncio.wait_for(caller_inbox.queue.get(), WAIT_S)
        assert echoed[:1] == b"\x80"
        await until(lambda: leg.rtp.stats().packets_out >= 5)
        assert stranger_inbox.queue.empty(), "the stranger received the call's audio"
    finally:
        for transport in (signalling, caller_media, stranger):
            transport.close()
        await bridge.close()

