"""The per-source rate limiter under a flood of distinct (spoofed) sources: its table never grows past its cap,
and a busy source keeps its bucket (least recently seen sources are evicted first). Speed is measured by
bench/sip_ratelimit.py, not here."""

from __future__ import annotations

import dataclasses

from settings import SipSettings
from telephony.sip.security import RateLimiter
from telephony.sip.uas import UserAgent
from tests.telephony.sip.sip_test_support import LOCAL, Uac


def source(n: int) -> str:
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def test_the_table_never_exceeds_its_cap_however_many_sources_arrive_at_once():
    limiter = RateLimiter(rate_per_s=5.0, max_sources=100)
    largest = 0
    for n in range(3_000):  # all within the same instant: nothing is idle, nothing may simply expire
        assert limiter.allow(source(n), now=0.0)
        largest = max(largest, len(limiter.buckets))
    assert largest == 100


def test_a_flood_of_new_sources_does_not_reset_a_busy_sources_bucket():
    limiter = RateLimiter(rate_per_s=2.0, max_sources=10)
    attacker = "192.0.2.66"
    assert [limiter.allow(attacker, 0.0) for _ in range(3)] == [True, True, False]
    for n in range(50):
        limiter.allow(source(n), 0.0)
        assert not limiter.allow(attacker, 0.0)  # still over its rate: its bucket was kept, not recycled


def test_the_user_agent_uses_the_configured_cap():
    ua = UserAgent(dataclasses.replace(SipSettings(), rate_limit_max_sources=7, allow_cidrs="0.0.0.0/0"), LOCAL)
    for n in range(50):
        ua.feed(Uac().request("OPTIONS"), (source(n), 5060), 0.0)
    assert len(ua.gate.rate_limiter.buckets) == 7
