"""RFC 4475 / RFC 5118 torture messages: every verdict from shared/sip-torture/README.md, through the
sans-I/O core and once over real UDP. Every response goes to the packet's source; OPTIONS still gets 200 after."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
from pathlib import Path

import pytest

from sip_test_support import CALLER, Uac, ack_for, datagrams, events
from telephony.sip.message import SipMessage, SipSyntaxError, parse_message
from telephony.sip.sdp import LocalMedia
from telephony.sip.transport import SipServer, free_port
from telephony.sip.uas import IncomingCall, UserAgent

CALL = "call"  # processed normally: IncomingCall, and our 200 OK once the app answers
DROPPED = "dropped"

EXPECTED = {
    # RFC 4475 §3.1.1: valid messages, processed normally
    "wsinv": 481,  # a valid INVITE whose To tag names a dialog we do not have: §12.2.2 says 481
    "intmeth": 501, "esc01": CALL, "escnull": 405, "esc02": 501, "lwsdisp": 200, "longreq": CALL,
    "semiuri": 200, "transports": 200, "mpart01": 405, "unreason": DROPPED, "noreason": DROPPED,
    "badbranch": 200, "unksm2": 405, "zeromf": 200, "inv2543": CALL, "dblreq": 405,
    # §3.1.2: invalid messages
    **{name: 400 for name in (
        "badinv01 clerr ncl scalar02 quotbal ltgtruri lwsruri lwsstart trws escruri baddate regbadct "
        "badaspec baddn mismatch01 mismatch02 insuf multi01 mcl01"
    ).split()},
    "badvers": 505, "scalarlg": DROPPED, "bigcode": DROPPED, "unkscm": 416, "novelsc": 416,
    "bext01": 420, "invut": 415, "bcast": DROPPED, "sdp01": 406,
    "cparam01": 405, "cparam02": 405, "regescrt": 405, "regaut01": 405,
    # RFC 5118: all valid but ipv6-bad. The G.726-only offers are answered 488 (no common codec).
    "ipv4-mapped-ipv6": 488, "ipv6-bad": 400, "ipv6-bug-abnf-3-colons": 200, "ipv6-correct-abnf-2-colons": 200,
    "ipv6-good": 405, "ipv6-in-sdp": 488, "mult-ip-in-header": 481, "mult-ip-in-sdp": CALL,
    "port-ambiguous": 405, "port-unambiguous": 405, "via-received-param-no-delim": 200,
    "via-received-param-with-delim": 481,
}
REQUIRED_HEADERS = {420: "unsupported", 415: "accept", 405: "allow"}


def torture_files(torture_dir: Path) -> list[Path]:
    return sorted(p for p in torture_dir.glob("rfc*/*") if p.is_file())


def verdict(ua: UserAgent, data: bytes, source=CALLER, now: float = 1.0) -> tuple[str | int, list]:
    outputs = ua.feed(data, source, now)
    for out in outputs:
        assert getattr(out, "dest", source) == source, "a response went somewhere else than the packet source"
    calls = events(outputs, IncomingCall)
    if calls:
        answered = ua.answer(calls[0].call, LocalMedia("127.0.0.1", 20000), now)
        assert [m.status for m in datagrams(answered)] == [200]
        return CALL, datagrams(outputs)
    responses = datagrams(outputs)
    if not responses:
        return DROPPED, []
    return responses[-1].status, responses


def test_every_torture_message_has_an_expected_verdict(torture_dir):
    names = {p.name.removesuffix(".dat") for p in torture_files(torture_dir)}
    assert names == set(EXPECTED), "README and test disagree on the message list"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_torture_verdict_through_the_core(name, ua, torture_dir):
    path = next(p for p in torture_files(torture_dir) if p.name.removesuffix(".dat") == name)
    result, responses = verdict(ua, path.read_bytes())
    assert result == EXPECTED[name]
    if isinstance(result, int) and result in REQUIRED_HEADERS:
        assert responses[-1].get(REQUIRED_HEADERS[result])
    options = Uac().request("OPTIONS")
    assert verdict(ua, options, now=2.0)[0] == 200


def test_all_torture_messages_over_real_udp(torture_dir, sip_settings):
    asyncio.run(_replay_over_udp(torture_dir, sip_settings))


async def _replay_over_udp(torture_dir: Path, settings) -> None:
    answered: list = []

    def on_event(event):
        if isinstance(event, IncomingCall):
            server.answer(event.call, LocalMedia("127.0.0.1", 20000))
            answered.append(event.call)

    server = SipServer(settings, on_event)
    await server.start("127.0.0.1", free_port())
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        for path in torture_files(torture_dir):
            expected = EXPECTED[path.name.removesuffix(".dat")]
            data = path.read_bytes()
            peer.sendto(data, server.address)
            call_id = _call_id(data)
            response = await _first_final_response(loop, peer, 0.3 if expected == DROPPED else 2.0, call_id)
            if expected == DROPPED:
                assert response is None, path.name
                continue
            assert response is not None, path.name
            if expected == CALL:
                assert response.status == 200, path.name
                peer.sendto(ack_for(response), server.address)  # stops the 200 OK retransmissions
            else:
                assert response.status == expected, path.name
                if (response.get("cseq") or "").endswith(" INVITE"):
                    peer.sendto(ack_for(response, data.split(b" ")[1].decode()), server.address)
        peer.sendto(Uac(peer.getsockname()).request("OPTIONS"), server.address)
        response = await _first_final_response(loop, peer, timeout=2.0)
        assert response is not None and response.status == 200
        assert len(answered) == sum(1 for v in EXPECTED.values() if v == CALL)
    finally:
        peer.close()
        await server.close()


def _call_id(data: bytes) -> str | None:
    try:
        return parse_message(data).call_id or None
    except SipSyntaxError as error:
        return error.message.call_id if error.message and error.message.get("call-id") else None


async def _first_final_response(loop, peer: socket.socket, timeout: float, call_id: str | None = None) -> SipMessage | None:
    """The first final response (for `call_id`, when known) received, or None after `timeout` of silence."""
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            data = await asyncio.wait_for(loop.sock_recv(peer, 65535), deadline - loop.time())
        except asyncio.TimeoutError:
            return None
        message = parse_message(data)
        if not message.is_request and message.status >= 200 and call_id in (None, message.call_id):
            return message
    return None


def test_mutated_torture_messages_never_break_the_core(torture_dir, sip_settings):
    """A bounded, seeded fuzz: byte flips, truncations, inserted separators, shuffled and doubled lines."""
    ua = UserAgent(dataclasses.replace(sip_settings, rate_limit_per_s=1e9, max_calls=10_000), ("127.0.0.1", 5099))
    messages = [p.read_bytes() for p in torture_files(torture_dir)]
    rng = random.Random(4475)
    for step in range(3000):
        data = mutate(rng, rng.choice(messages))
        for out in ua.feed(data, CALLER, step * 0.01):
            if isinstance(out, IncomingCall):
                ua.answer(out.call, LocalMedia("127.0.0.1", 20000), step * 0.01)
        ua.tick(step * 0.01)
    assert ua.internal_errors == 0
    assert verdict(ua, Uac().request("OPTIONS"), now=100.0)[0] == 200


def mutate(rng: random.Random, message: bytes) -> bytes:
    data = bytearray(message)
    kind = rng.randrange(5)
    if kind == 0 and data:
        data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:
        del data[rng.randrange(len(data) + 1):]
    elif kind == 2:
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.choice([b"\r\n", b" ", b";", b",", b":", b"<", b">", b'"', b"\x00", b"%", b"["]) * rng.randrange(1, 4)
    else:
        lines = bytes(data).split(b"\r\n")
        if kind == 3:
            rng.shuffle(lines)
        else:
            lines.insert(rng.randrange(len(lines)), rng.choice(lines))
        data = bytearray(b"\r\n".join(lines))
    return bytes(data)
