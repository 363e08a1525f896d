"""Digest auth for peers outside the allow-list: credentials are bound to the Request-URI and cannot be replayed.

Before: the response hash was checked against whatever `uri` the peer wrote (so credentials captured for one
request URI opened any other), and a captured Authorization header could be sent again and again."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from settings import SipSettings
from telephony.sip.security import DigestAuthenticator, NonceCounts, parse_digest_fields
from telephony.sip.uas import IncomingCall, UserAgent
from tests.telephony.sip.sip_test_support import LOCAL, Uac, datagrams, events, statuses

OUTSIDER = ("198.51.100.7", 5060)
REQUEST_URI = "sip:ivr@127.0.0.1:5099"  # what Uac puts in the request line


@pytest.fixture
def ua() -> UserAgent:
    settings = dataclasses.replace(SipSettings(), digest_user="pbx", digest_password="s3cret", digest_realm="ivr")
    return UserAgent(settings, LOCAL)


def nonce_from(ua: UserAgent, now: float) -> str:
    challenge = datagrams(ua.feed(Uac(OUTSIDER).invite(), OUTSIDER, now))[0]
    assert challenge.status == 401
    return parse_digest_fields(challenge.get("www-authenticate")[len("Digest "):])["nonce"]


def authorization(nonce: str, nc: str, uri: str = REQUEST_URI, signed_uri: str | None = None) -> str:
    ha1 = hashlib.md5(b"pbx:ivr:s3cret").hexdigest()
    ha2 = hashlib.md5(f"INVITE:{signed_uri or uri}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{nonce}:{nc}:abc:auth:{ha2}".encode()).hexdigest()
    return (f'Authorization: Digest username="pbx", realm="ivr", nonce="{nonce}", uri="{uri}", '
            f'qop=auth, nc={nc}, cnonce="abc", response="{response}"')


def invite_with(ua: UserAgent, header: str, now: float) -> list:
    return ua.feed(Uac(OUTSIDER).invite(headers=header), OUTSIDER, now)


def test_a_replayed_authorization_is_challenged_again(ua):
    nonce = nonce_from(ua, 0.0)
    header = authorization(nonce, "00000001")
    assert events(invite_with(ua, header, 0.1), IncomingCall)
    replayed = invite_with(ua, header, 0.2)  # a new INVITE (new Call-ID, branch) with the captured header
    assert statuses(replayed) == [401] and events(replayed) == []
    assert statuses(invite_with(ua, authorization(nonce, "00000001"), 0.3)) == [401]  # nc must increase
    assert events(invite_with(ua, authorization(nonce, "00000002"), 0.4), IncomingCall)


def test_credentials_for_another_uri_do_not_open_this_one(ua):
    nonce = nonce_from(ua, 0.0)
    forged = authorization(nonce, "00000001", uri="sip:anything@198.51.100.9", signed_uri="sip:anything@198.51.100.9")
    assert statuses(invite_with(ua, forged, 0.1)) == [401]


def test_a_nonce_count_must_be_eight_ascii_hex_digits(ua):
    nonce = nonce_from(ua, 0.0)
    for nc in ("1", "٠٠٠٠٠٠٠١", "0000000g", "000000001"):
        assert statuses(invite_with(ua, authorization(nonce, nc), 0.1)) == [401], nc


def test_a_nonce_we_did_not_issue_is_refused(ua):
    nonce = nonce_from(ua, 0.0)
    issued, serial, signature = nonce.split(".")
    for forged in (f"{issued}.{int(serial) + 1}.{signature}", f"{int(issued) + 1}.{serial}.{signature}", "1.2"):
        assert statuses(invite_with(ua, authorization(forged, "00000001"), 0.1)) == [401], forged


def test_the_replay_memory_is_bounded_and_forgetting_never_reopens_a_replay():
    counts = NonceCounts(capacity=3)
    for serial in range(1, 8):
        assert counts.advance(f"t.{serial}.sig", serial, 1)
        assert len(counts) <= 3
    assert not counts.advance("t.1.sig", 1, 2)  # evicted: refused (a new challenge), not accepted afresh
    assert counts.advance("t.7.sig", 7, 2) and not counts.advance("t.7.sig", 7, 2)


def test_an_expired_nonce_is_refused():
    clock = [1000.0]
    digest = DigestAuthenticator("ivr", "pbx", "s3cret", clock=lambda: clock[0])
    nonce = parse_digest_fields(digest.challenge()[len("Digest "):])["nonce"]
    assert digest._nonce_is_fresh(nonce)
    clock[0] += 301.0
    assert not digest._nonce_is_fresh(nonce)
