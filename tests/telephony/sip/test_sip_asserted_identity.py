"""Who is calling behind a proxy: P-Asserted-Identity (RFC 3325) is believed only from SIP_TRUSTED_PROXIES.

The caller number can decide how a caller is greeted and served, so anyone able to reach the SIP port must not
be able to name it with a header: from any source outside the trusted proxies the header is ignored (and that is
logged, the numbers masked) and the From URI's user is the caller, as without a proxy."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from sip_test_support import CALLER, Uac, events, statuses
from telephony.sip.uas import CallRefused, IncomingCall, UserAgent

FROM_NUMBER = "13800000001"  # what sip_test_support's From says
ASSERTED = "13900000003"
PROXY = "127.0.0.1/32"  # CALLER's address: the "Kamailio" of these tests


def agent(sip_settings, trusted_proxies: str) -> UserAgent:
    return UserAgent(dataclasses.replace(sip_settings, trusted_proxies=trusted_proxies), ("127.0.0.1", 5099))


def caller_of(ua: UserAgent, headers: str, source=CALLER) -> str:
    out = ua.feed(Uac(source).invite(headers=headers), source, 0.0)
    assert statuses(out) == [100]
    return events(out, IncomingCall)[0].call.caller


def test_asserted_identity_from_a_trusted_proxy_names_the_caller(sip_settings):
    ua = agent(sip_settings, PROXY)
    pai = f'P-Asserted-Identity: "Customer" <sip:{ASSERTED}@proxy.bank.example;user=phone>'
    assert caller_of(ua, pai) == ASSERTED


def test_asserted_identity_from_an_untrusted_source_is_ignored_and_logged_masked(sip_settings, caplog):
    """An attacker who reaches the SIP port forges the identity of a customer: the From user stays the caller."""
    ua = agent(sip_settings, "127.0.0.2/32,10.0.0.0/8")  # the proxy is elsewhere
    with caplog.at_level(logging.INFO, logger="telephony"):
        assert caller_of(ua, f"P-Asserted-Identity: <sip:{ASSERTED}@bank.example>") == FROM_NUMBER
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "P-Asserted-Identity" in text and "ignored" in text and "139****0003" in text
    assert ASSERTED not in text and FROM_NUMBER not in text  # numbers only masked


def test_without_trusted_proxies_no_asserted_identity_is_believed(sip_settings):
    assert caller_of(agent(sip_settings, ""), f"P-Asserted-Identity: <tel:{ASSERTED}>") == FROM_NUMBER


def test_a_trusted_proxy_on_an_ipv4_mapped_ipv6_source_is_recognised(sip_settings):
    ua = agent(sip_settings, PROXY)
    assert caller_of(ua, f"P-Asserted-Identity: <tel:{ASSERTED}>", ("::ffff:127.0.0.1", 40000)) == ASSERTED


def test_without_asserted_identity_from_a_trusted_proxy_from_is_the_caller(sip_settings):
    assert caller_of(agent(sip_settings, PROXY), "") == FROM_NUMBER


@pytest.mark.parametrize("pai, caller", [
    ("<tel:+86-139-0000-0003>", "+8613900000003"),  # RFC 3966 visual separators are not part of the number
    ("<tel:+86 (139) 0000.0003>", FROM_NUMBER),  # a space is no visual separator: malformed
    ("<tel:(139)0000.0003;phone-context=+86>", ASSERTED),
    ("tel:+8613900000003", "+8613900000003"),  # addr-spec without <>
    (f"<sips:{ASSERTED}@proxy.bank.example>", ASSERTED),
    (f"<sip:{ASSERTED};isub=1@proxy.bank.example;user=phone>", ASSERTED),
    ("<sip:+86-139-0000-0003@proxy.bank.example;user=phone>", "+8613900000003"),
])
def test_asserted_identity_forms(sip_settings, pai, caller):
    assert caller_of(agent(sip_settings, PROXY), f"P-Asserted-Identity: {pai}") == caller


@pytest.mark.parametrize("headers", [
    # RFC 3325 §9.1: one or two values, and two only as one sip/sips URI and one tel URI; the first is the caller
    f"P-Asserted-Identity: <sip:{ASSERTED}@bank.example>, <tel:+8613700000000>",
    f"P-Asserted-Identity: <sip:{ASSERTED}@bank.example>\nP-Asserted-Identity: <tel:+8613700000000>",
    f"P-Asserted-Identity: \"A, B\" <tel:{ASSERTED}>, <sip:+8613700000000@bank.example>",
])
def test_a_sip_and_a_tel_identity_the_first_one_names_the_caller(sip_settings, headers):
    assert caller_of(agent(sip_settings, PROXY), headers) == ASSERTED


@pytest.mark.parametrize("headers", [
    f"P-Asserted-Identity: <sip:{ASSERTED}@a.example>, <sip:13700000000@b.example>",  # two sip URIs
    f"P-Asserted-Identity: <tel:{ASSERTED}>\nP-Asserted-Identity: <tel:13700000000>",  # two tel URIs
    f"P-Asserted-Identity: <tel:{ASSERTED}>, <sip:1@a.example>, <sip:2@a.example>",  # three values
    f"P-Asserted-Identity: <http://{ASSERTED}.example>",  # not sip, sips or tel
    f"P-Asserted-Identity: <sip:{ASSERTED}@>",
    f"P-Asserted-Identity: <sip:{ASSERTED}@bank.example",  # no '>'
    f"P-Asserted-Identity: \"unbalanced <sip:{ASSERTED}@bank.example>",
    "P-Asserted-Identity: <sip:bank.example>",  # no user: names no one
    "P-Asserted-Identity: <tel:>",
    "P-Asserted-Identity: ",
    "P-Asserted-Identity: <tel:+86" + "1" * 200 + ">",  # no phone number is that long
    f"P-Asserted-Identity: \"{'x' * 3000}\" <tel:{ASSERTED}>",  # huge: not even parsed
    f"P-Asserted-Identity: <sip:{ASSERTED}\u00a0@bank.example>",
])
def test_a_malformed_asserted_identity_from_a_trusted_proxy_falls_back_to_from(sip_settings, headers, caplog):
    with caplog.at_level(logging.INFO, logger="telephony"):
        assert caller_of(agent(sip_settings, PROXY), headers) == FROM_NUMBER
    assert any("P-Asserted-Identity" in r.getMessage() for r in caplog.records)


def test_privacy_id_does_not_change_the_caller_and_keeps_the_identity_out_of_the_logs(sip_settings, caplog):
    """RFC 3325 §7: the bank is the trust domain, so it still learns who calls; the logs keep the number masked."""
    ua = agent(sip_settings, PROXY)
    pai = f'P-Asserted-Identity: "Wang Jianguo" <sip:{ASSERTED}@bank.example>\nPrivacy: id'
    with caplog.at_level(logging.DEBUG, logger="telephony"):
        assert caller_of(ua, pai) == ASSERTED
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert ASSERTED not in text and "Wang Jianguo" not in text and "139****0003" in text


def test_a_refused_invite_records_the_asserted_caller_too(sip_settings):
    """The CDR of an INVITE refused in the core (here 488: no common codec) names the same caller a call would."""
    ua = agent(sip_settings, PROXY)
    offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 18\r\n"
    out = ua.feed(Uac().invite(offer, headers=f"P-Asserted-Identity: <tel:{ASSERTED}>"), CALLER, 0.0)
    [refused] = events(out, CallRefused)
    assert (refused.status, refused.caller) == (488, ASSERTED)


def test_a_refused_invite_from_an_untrusted_source_keeps_the_from_caller(sip_settings):
    ua = agent(sip_settings, "10.0.0.0/8")
    offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 18\r\n"
    out = ua.feed(Uac().invite(offer, headers=f"P-Asserted-Identity: <tel:{ASSERTED}>"), CALLER, 0.0)
    assert events(out, CallRefused)[0].caller == FROM_NUMBER
