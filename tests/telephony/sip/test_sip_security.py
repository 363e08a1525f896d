"""Admission: CIDR allow-list, scanners, rate limit, size, digest auth."""

from __future__ import annotations

import dataclasses
import hashlib

from sip_test_support import CALLER, LOCAL, Uac, datagrams, events, statuses
from telephony.sip.security import parse_digest_fields
from telephony.sip.uas import IncomingCall, UserAgent

OUTSIDER = ("198.51.100.7", 5060)


def test_outside_the_allow_list_is_silently_ignored(ua):
    assert ua.feed(Uac(OUTSIDER).invite(), OUTSIDER, 0.0) == []
    assert ua.feed(Uac().invite(), ("::1", 5060), 0.0)  # IPv6 loopback is allowed by default


def test_scanner_user_agents_are_dropped(ua):
    for agent in ("friendly-scanner", "sipvicious 0.3", "SIPCLI/v1.8"):
        assert ua.feed(Uac().request("OPTIONS", headers=f"User-Agent: {agent}"), CALLER, 0.0) == []
    assert statuses(ua.feed(Uac().request("OPTIONS", headers="User-Agent: Zoiper"), CALLER, 0.0)) == [200]


def test_rate_limit_per_source(sip_settings):
    ua = UserAgent(dataclasses.replace(sip_settings, rate_limit_per_s=5.0), LOCAL)
    answered = sum(bool(ua.feed(Uac().request("OPTIONS"), CALLER, 0.0)) for _ in range(20))
    assert answered == 5
    assert ua.feed(Uac().request("OPTIONS"), ("127.0.0.2", 5060), 0.0)  # another source has its own bucket
    assert ua.feed(Uac().request("OPTIONS"), CALLER, 1.0)  # and the bucket refills


def test_oversized_message_gets_513(sip_settings):
    ua = UserAgent(dataclasses.replace(sip_settings, max_message_bytes=1000), LOCAL)
    big = Uac().request("OPTIONS", headers="X-Padding: " + "a" * 2000)
    assert statuses(ua.feed(big, CALLER, 0.0)) == [513]


def test_digest_auth_admits_outsiders_with_the_password(sip_settings):
    settings = dataclasses.replace(sip_settings, digest_user="pbx", digest_password="s3cret", digest_realm="ivr")
    ua = UserAgent(settings, LOCAL)
    uac = Uac(OUTSIDER)
    challenge = datagrams(ua.feed(uac.invite(), OUTSIDER, 0.0))[0]
    assert challenge.status == 401
    fields = parse_digest_fields(challenge.get("www-authenticate")[len("Digest "):])
    uri = "sip:ivr@127.0.0.1:5099"
    ha1 = hashlib.md5(b"pbx:ivr:s3cret").hexdigest()
    ha2 = hashlib.md5(f"INVITE:{uri}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{fields['nonce']}:00000001:abc:auth:{ha2}".encode()).hexdigest()
    auth = (f'Authorization: Digest username="pbx", realm="ivr", nonce="{fields["nonce"]}", uri="{uri}", '
            f'qop=auth, nc=00000001, cnonce="abc", response="{response}"')
    uac.cseq += 1
    uac.branch += "x"
    assert events(ua.feed(uac.invite(headers=auth), OUTSIDER, 0.1), IncomingCall)
    wrong = auth.replace(response, "0" * 32)
    assert statuses(ua.feed(Uac(OUTSIDER).invite(headers=wrong), OUTSIDER, 0.2)) == [401]
