"""Who may talk SIP to us, and how much (issue 4 §6).

- Source CIDR allow-list (default loopback only); peers outside it may still get in with digest auth
  (RFC 3261 §22, RFC 8760 MD5) when a password is configured, otherwise they are silently ignored.
- Known scanner User-Agents (friendly-scanner, sipvicious, sipcli, ...) are silently dropped:
  answering them only confirms a target.
- A per-source token bucket bounds the request rate; over it, datagrams are dropped (answering would amplify).
  The bucket table has a fixed cap and does O(1) work per packet: it is an LRU, so a flood of new (spoofed)
  sources evicts the sources heard from longest ago. An evicted source only starts again with a full bucket.
- Message size is checked before parsing.
- Trusted proxies (settings.trusted_proxies, CIDRs) are the only sources whose P-Asserted-Identity names the
  caller (RFC 3325 §4: an identity is asserted only within a trust domain); see telephony/sip/identity.py.
- Digest credentials are bound to the request (the `uri` field must be its Request-URI) and cannot be replayed:
  qop=auth is required and each nonce's nonce-count must increase (RFC 7616 §3.4.5, RFC 8760).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from settings import SipSettings
from telephony.sip.digits import ascii_int
from telephony.sip.message import SipMessage, split_list

SCANNER_USER_AGENTS = ("friendly-scanner", "sipvicious", "sipcli", "sip-scan", "sundayddr", "iWar", "sipsak", "smap")
SCANNER_RE = re.compile("|".join(re.escape(name) for name in SCANNER_USER_AGENTS), re.IGNORECASE)
NONCE_LIFETIME_S = 300.0
MAX_TRACKED_SOURCES = 10_000
MAX_TRACKED_NONCES = 10_000
NONCE_COUNT_RE = re.compile(r"[0-9A-Fa-f]{8}")  # nc-value = 8LHEX (RFC 7616 §3.4)


def parse_cidrs(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]


def address_in(host: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Whether the IP literal `host` is in one of `networks`. A dual-stack socket reports an IPv4 peer as
    ::ffff:a.b.c.d, which must match the IPv4 CIDRs operators write; a host name matches nothing."""
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def is_scanner(message: SipMessage) -> bool:
    agent = " ".join(message.get_lines("user-agent") + message.get_lines("server"))
    return bool(agent and SCANNER_RE.search(agent))


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass
class RateLimiter:
    """One token bucket per source host; burst of one second's worth. At most `max_sources` buckets: the one
    heard from longest ago makes room for a new source (O(1): an OrderedDict kept in recency order)."""

    rate_per_s: float
    max_sources: int = MAX_TRACKED_SOURCES
    buckets: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)

    def allow(self, host: str, now: float) -> bool:
        bucket = self.buckets.get(host)
        if bucket is None:
            while len(self.buckets) >= max(self.max_sources, 1):
                self.buckets.popitem(last=False)
            burst = max(self.rate_per_s, 1.0)
            bucket = self.buckets[host] = TokenBucket(self.rate_per_s, burst, burst, now)
        else:
            self.buckets.move_to_end(host)
        return bucket.take(now)


class NonceCounts:
    """The highest nonce-count accepted per nonce, so a captured Authorization cannot be replayed.

    Bounded: at most `capacity` nonces, the first used longest ago evicted first. Nonces are issued with a
    strictly increasing serial, and an evicted nonce's serial raises a watermark below which an unknown nonce is
    refused (the peer just gets a new challenge), so eviction never reopens a replay."""

    def __init__(self, capacity: int = MAX_TRACKED_NONCES):
        self.capacity = capacity
        self._last_count: OrderedDict[str, int] = OrderedDict()
        self._watermark = -1  # serials at or below it are forgotten: refused

    def advance(self, nonce: str, serial: int, count: int) -> bool:
        """Record `count` for `nonce` if it is above the last one; False for a replay or a forgotten nonce."""
        last = self._last_count.get(nonce)
        if last is None and serial <= self._watermark:
            return False
        if last is not None and count <= last:
            return False
        self._last_count[nonce] = count
        while len(self._last_count) > self.capacity:
            evicted, _ = self._last_count.popitem(last=False)
            self._watermark = max(self._watermark, _nonce_serial(evicted))
        return True

    def __len__(self) -> int:
        return len(self._last_count)


class DigestAuthenticator:
    """Digest challenges whose nonce is `issued-time.serial.signature`, signed with a per-process secret, so any
    nonce we did not issue is refused without state; replays are refused with `NonceCounts`."""

    def __init__(self, realm: str, user: str, password: str, clock: Callable[[], float] = time.time):
        self.realm, self.user, self.password = realm, user, password
        self._secret = secrets.token_bytes(16)
        self._clock = clock
        self._serial = 0
        self.nonce_counts = NonceCounts()

    def challenge(self) -> str:
        self._serial += 1
        issued = f"{self._clock():.0f}.{self._serial}"
        return f'Digest realm="{self.realm}", nonce="{issued}.{self._sign(issued)}", algorithm=MD5, qop="auth"'

    def verify(self, request: SipMessage) -> bool:
        header = request.get("authorization") or ""
        if not header.lower().startswith("digest "):
            return False
        fields = parse_digest_fields(header[7:])
        if fields.get("username") != self.user or fields.get("realm") != self.realm:
            return False
        # The credentials must be for this request: a response computed over another URI proves nothing about it.
        if fields.get("uri") != request.uri or fields.get("qop") != "auth":
            return False
        nonce, count = fields.get("nonce", ""), _nonce_count(fields.get("nc", ""))
        if count is None or not self._nonce_is_fresh(nonce):
            return False
        ha1 = _md5(f"{self.user}:{self.realm}:{self.password}")
        ha2 = _md5(f"{request.method}:{request.uri}")
        expected = _md5(f"{ha1}:{nonce}:{fields['nc']}:{fields.get('cnonce', '')}:auth:{ha2}")
        if not hmac.compare_digest(expected, fields.get("response", "")):
            return False
        return self.nonce_counts.advance(nonce, _nonce_serial(nonce), count)  # only after the hash proved the sender

    def _sign(self, issued: str) -> str:
        return hmac.new(self._secret, issued.encode(), hashlib.sha256).hexdigest()[:16]

    def _nonce_is_fresh(self, nonce: str) -> bool:
        issued, _, signature = nonce.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(issued)):
            return False
        issued_at = ascii_int(issued.partition(".")[0])
        return issued_at is not None and self._clock() - issued_at < NONCE_LIFETIME_S


def _nonce_count(text: str) -> int | None:
    return int(text, 16) if NONCE_COUNT_RE.fullmatch(text) else None


def _nonce_serial(nonce: str) -> int:
    """The serial of a nonce we issued (`issued.serial.signature`); -1 if it has none."""
    parts = nonce.split(".")
    serial = ascii_int(parts[1]) if len(parts) == 3 else None
    return -1 if serial is None else serial


def parse_digest_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in split_list(text):
        name, _, value = part.partition("=")
        fields[name.strip().lower()] = value.strip().strip('"')
    return fields


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - RFC 2617 digest is MD5 by definition


class Gate:
    """The admission checks of one SIP server, configured from SipSettings."""

    def __init__(self, settings: SipSettings):
        self.networks = parse_cidrs(settings.allow_cidrs)
        self.trusted_proxies = parse_cidrs(settings.trusted_proxies)
        self.rate_limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_max_sources)
        self.max_message_bytes = settings.max_message_bytes
        self.digest = (
            DigestAuthenticator(settings.digest_realm, settings.digest_user, settings.digest_password)
            if settings.digest_password
            else None
        )

    def source_allowed(self, host: str) -> bool:
        return address_in(host, self.networks)

    def trusted_proxy(self, host: str) -> bool:
        """Whether `host` is a proxy of our trust domain (RFC 3325 §2.3), so its P-Asserted-Identity is believed."""
        return address_in(host, self.trusted_proxies)

    def may_authenticate(self) -> bool:
        """Peers outside the allow-list get a digest challenge only when a password is configured."""
        return self.digest is not None
