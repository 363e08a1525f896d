"""Who may talk SIP to us, and how much (issue 4 §6).

- Source CIDR allow-list (default loopback only); peers outside it may still get in with digest auth
  (RFC 3261 §22, RFC 8760 MD5) when a password is configured, otherwise they are silently ignored.
- Known scanner User-Agents (friendly-scanner, sipvicious, sipcli, ...) are silently dropped:
  answering them only confirms a target.
- A per-source token bucket bounds the request rate; over it, datagrams are dropped (answering would amplify).
- Message size is checked before parsing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from dataclasses import dataclass, field

from settings import SipSettings
from telephony.sip.message import SipMessage, split_list

SCANNER_USER_AGENTS = ("friendly-scanner", "sipvicious", "sipcli", "sip-scan", "sundayddr", "iWar", "sipsak", "smap")
SCANNER_RE = re.compile("|".join(re.escape(name) for name in SCANNER_USER_AGENTS), re.IGNORECASE)
NONCE_LIFETIME_S = 300.0
MAX_TRACKED_SOURCES = 10_000


def parse_cidrs(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]


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
    """One token bucket per source host; burst of one second's worth."""

    rate_per_s: float
    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def allow(self, host: str, now: float) -> bool:
        bucket = self.buckets.get(host)
        if bucket is None:
            if len(self.buckets) >= MAX_TRACKED_SOURCES:
                self._forget_idle(now)
            bucket = self.buckets[host] = TokenBucket(self.rate_per_s, max(self.rate_per_s, 1.0), max(self.rate_per_s, 1.0), now)
        return bucket.take(now)

    def _forget_idle(self, now: float) -> None:
        self.buckets = {host: b for host, b in self.buckets.items() if now - b.updated < 10.0}


class DigestAuthenticator:
    """Stateless digest challenges: the nonce is a timestamp signed with a per-process secret."""

    def __init__(self, realm: str, user: str, password: str):
        self.realm, self.user, self.password = realm, user, password
        self._secret = secrets.token_bytes(16)

    def challenge(self) -> str:
        issued = f"{time.time():.0f}"
        signature = hmac.new(self._secret, issued.encode(), hashlib.sha256).hexdigest()[:16]
        return f'Digest realm="{self.realm}", nonce="{issued}.{signature}", algorithm=MD5, qop="auth"'

    def verify(self, request: SipMessage) -> bool:
        header = request.get("authorization") or ""
        if not header.lower().startswith("digest "):
            return False
        fields = parse_digest_fields(header[7:])
        if fields.get("username") != self.user or fields.get("realm") != self.realm:
            return False
        if not self._nonce_is_fresh(fields.get("nonce", "")):
            return False
        ha1 = _md5(f"{self.user}:{self.realm}:{self.password}")
        ha2 = _md5(f"{request.method}:{fields.get('uri', '')}")
        if fields.get("qop"):
            expected = _md5(f"{ha1}:{fields['nonce']}:{fields.get('nc', '')}:{fields.get('cnonce', '')}:{fields['qop']}:{ha2}")
        else:
            expected = _md5(f"{ha1}:{fields['nonce']}:{ha2}")
        return hmac.compare_digest(expected, fields.get("response", ""))

    def _nonce_is_fresh(self, nonce: str) -> bool:
        issued, _, signature = nonce.partition(".")
        expected = hmac.new(self._secret, issued.encode(), hashlib.sha256).hexdigest()[:16]
        if not issued.isdigit() or not hmac.compare_digest(signature, expected):
            return False
        return time.time() - int(issued) < NONCE_LIFETIME_S


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
        self.rate_limiter = RateLimiter(settings.rate_limit_per_s)
        self.max_message_bytes = settings.max_message_bytes
        self.digest = (
            DigestAuthenticator(settings.digest_realm, settings.digest_user, settings.digest_password)
            if settings.digest_password
            else None
        )

    def source_allowed(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def may_authenticate(self) -> bool:
        """Peers outside the allow-list get a digest challenge only when a password is configured."""
        return self.digest is not None
