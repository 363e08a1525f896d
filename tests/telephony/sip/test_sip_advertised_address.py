"""The address the gateway names (Via sent-by, Contact, SDP c=/o=) behind a proxy or NAT: SIP_ADVERTISED_HOST.

Bound to a wildcard (0.0.0.0, ::) the bound address names no host a peer can reach, and `c=IN IP4 0.0.0.0`
even means "hold" (RFC 2543, RFC 3264 §8.4): so the advertised host is used, and without one the door refuses
to start instead of advertising a wildcard."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket

import pytest

from settings import Settings
from sip_test_support import CALLER, Uac, datagrams, events
from telephony.rtp.ports import PortAllocator
from telephony.sip.message import parse_message
from telephony.sip.sdp import LocalMedia, parse_sdp
from telephony.sip.transport import free_port
from telephony.sip.uas import AdvertisedAddressError, CallAnswered, IncomingCall, UserAgent
from telephony.sip_calls import MediaEchoCall, SipCallBridge, add_sip_service

PUBLIC = "203.0.113.7"  # RFC 5737 documentation address: the NAT's public side
WAIT_S = 10.0


def answered_call(ua: UserAgent, uac: Uac, media: LocalMedia):
    call = events(ua.feed(uac.invite(), CALLER, 0.0), IncomingCall)[0].call
    answer = datagrams(ua.answer(call, media, 0.1))[0]
    uac.learn_tag(answer)
    assert events(ua.feed(uac.ack(), CALLER, 0.2), CallAnswered)
    return call, answer


def test_wildcard_bind_advertises_the_advertised_host_in_contact_and_via(sip_settings):
    ua = UserAgent(sip_settings, ("0.0.0.0", 5099), advertised_host=PUBLIC)
    uac = Uac()
    call, answer = answered_call(ua, uac, LocalMedia(PUBLIC, 20000))
    assert answer.get("contact") == f"<sip:ivr@{PUBLIC}:5099>"
    [bye] = [m for m in datagrams(ua.hangup(call, 1.0)) if m.is_request]
    assert bye.top_via.sent_by == f"{PUBLIC}:5099"  # responses to our BYE must find their way back (§18.2.2)
    assert "0.0.0.0" not in bye.serialise().decode() + answer.serialise().decode()


def test_advertised_host_wins_over_a_specific_bound_address_too(sip_settings):
    """Behind NAT the bound address is private: the public one is what peers must be told."""
    ua = UserAgent(sip_settings, ("127.0.0.1", 5099), advertised_host=PUBLIC)
    call = events(ua.feed(Uac().invite(), CALLER, 0.0), IncomingCall)[0].call
    ringing = datagrams(ua.ringing(call, 0.1))[0]
    assert ringing.get("contact") == f"<sip:ivr@{PUBLIC}:5099>"


@pytest.mark.parametrize("advertised, contact", [
    ("2001:db8::7", "<sip:ivr@[2001:db8::7]:5099>"),
    ("[2001:db8::7]", "<sip:ivr@[2001:db8::7]:5099>"),  # either spelling of an IPv6 literal
    ("ivr.bank.example", "<sip:ivr@ivr.bank.example:5099>"),
])
def test_advertised_host_may_be_ipv6_or_a_name(sip_settings, advertised, contact):
    ua = UserAgent(sip_settings, ("::", 5099), advertised_host=advertised)
    call = events(ua.feed(Uac().invite(), CALLER, 0.0), IncomingCall)[0].call
    assert datagrams(ua.ringing(call, 0.1))[0].get("contact") == contact


def test_without_an_advertised_host_the_bound_address_is_advertised(ua):
    call = events(ua.feed(Uac().invite(), CALLER, 0.0), IncomingCall)[0].call
    assert datagrams(ua.ringing(call, 0.1))[0].get("contact") == "<sip:ivr@127.0.0.1:5099>"


@pytest.mark.parametrize("bound, advertised", [
    ("0.0.0.0", ""), ("::", ""), ("", ""), ("0:0::0", ""),
    ("127.0.0.1", "0.0.0.0"),  # advertising a wildcard is no better than binding one
    ("0.0.0.0", "10.0.0.1\r\nX-Injected: yes"),  # it goes into headers: a host, nothing else
    ("0.0.0.0", "a host"),
])
def test_a_wildcard_or_garbage_is_never_advertised(sip_settings, bound, advertised):
    with pytest.raises(AdvertisedAddressError):
        UserAgent(sip_settings, (bound, 5099), advertised_host=advertised)


def _settings(**sip) -> Settings:
    base = Settings()
    return dataclasses.replace(base, sip=dataclasses.replace(base.sip, rtp_port_min=32000, rtp_port_max=32099, **sip))


async def _udp_exchange(port: int, data: bytes, replies: int) -> list:
    """Send one datagram to 127.0.0.1:port and read `replies` answers (asyncio timeouts, no sleeps)."""
    loop = asyncio.get_running_loop()
    received: asyncio.Queue[bytes] = asyncio.Queue()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, payload: bytes, addr) -> None:
            received.put_nowait(payload)

    transport, _ = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0))
    try:
        transport.sendto(data, ("127.0.0.1", port))
        return [parse_message(await asyncio.wait_for(received.get(), WAIT_S)) for _ in range(replies)]
    finally:
        transport.close()


async def test_bridge_bound_to_a_wildcard_puts_the_advertised_host_in_sdp_and_binds_rtp_to_the_wildcard():
    port = free_port()
    settings = _settings(host="0.0.0.0", port=port, advertised_host=PUBLIC)
    bridge = SipCallBridge(settings, MediaEchoCall, PortAllocator(32000, 32099))
    await bridge.start()
    try:
        trying, ok = await _udp_exchange(port, Uac().invite(), 2)
        assert (trying.status, ok.status) == (100, 200)
        assert ok.get("contact") == f"<sip:ivr@{PUBLIC}:{port}>"
        sdp = parse_sdp(ok.body)
        assert sdp.connection == f"IN IP4 {PUBLIC}"
        assert sdp.origin.endswith(f" IN IP4 {PUBLIC}")
        [leg] = bridge.legs.values()
        assert leg.rtp is not None and leg.rtp._transport.get_extra_info("sockname")[0] == "0.0.0.0"
    finally:
        await bridge.close()


async def test_bridge_bound_to_a_wildcard_without_advertised_host_refuses_before_binding():
    port = free_port()
    bridge = SipCallBridge(_settings(host="0.0.0.0", port=port), MediaEchoCall, PortAllocator(32000, 32099))
    with pytest.raises(AdvertisedAddressError):
        await bridge.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("0.0.0.0", port))  # nothing was left bound


class _Voice:
    """The gateway's voice loop, reduced to what add_sip_service looks at."""

    runtime = object()
    admission = None

    @staticmethod
    def create_call(info):
        return MediaEchoCall(info)


async def test_the_gateways_sip_door_logs_one_clear_error_and_does_not_start_on_a_wildcard(caplog):
    from aiohttp import web

    app = web.Application()
    port = free_port()
    add_sip_service(app, _Voice(), settings=_settings(host="0.0.0.0", port=port))
    runner = web.AppRunner(app)
    with caplog.at_level(logging.INFO, logger="telephony"):
        await runner.setup()  # the cleanup context runs: the door must not raise out of it
        try:
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1, [r.getMessage() for r in errors]
            message = errors[0].getMessage()
            assert "SIP door not started" in message and "SIP_ADVERTISED_HOST" in message
            assert not any("SIP listening" in r.getMessage() for r in caplog.records)
        finally:
            await runner.cleanup()
