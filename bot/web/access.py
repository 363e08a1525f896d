"""Who may use the gateway's web doors: loopback, default tokens, `Origin`, and the consoles' sessions.

The consoles (`/console` and its API, `/voice` and `/voice/ws`) drive conversations with the bank's dialogue, so:
- Off loopback they need `CONSOLE_TOKEN`; the gateway refuses to start when it binds anything but loopback with
  no console token, a short one, or a default token (`require_safe_binding`). Without a token they serve
  loopback peers only, and a default token is never accepted from a peer off loopback.
- A browser proves it was let in with a session cookie (random, HttpOnly, SameSite=Strict) issued when the page
  is loaded (with `?token=` when a token is needed). Console calls are registered under that session and the API
  addresses no other conversation (`ConsoleSessions`).
- CSRF: the API takes only `application/json` (a cross-site form or `text/plain` POST cannot send it without a
  CORS preflight, which the gateway never grants), and a request carrying `Origin` must come from the page's
  own origin on a host that cannot be DNS-rebound (an IP literal or `localhost`) or from `CONSOLE_ALLOWED_ORIGINS`.
  A request without `Origin` is accepted: browsers always send it on POST and on WebSocket handshakes, so such a
  request comes from a non-browser client (curl, tests, `make call`), which CSRF cannot drive.
- DNS rebinding: without a token, a page on evil.example whose name is re-pointed at 127.0.0.1 is same-origin with
  the gateway as far as the browser knows, and a same-origin GET carries no `Origin`. So when no token is required
  every door (`check_peer`: the consoles' pages, API and socket, the agent page, the dashboard and its API, the
  trainer) serves only a `Host` that cannot be rebound (an IP literal or `localhost`) or one named in
  `CONSOLE_ALLOWED_ORIGINS`. With a token the rebound page has neither the token nor the session cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web
from yarl import URL

from settings import GatewaySettings, RasaSettings, Settings

SESSION_COOKIE = "ivr_console_session"
# Tokens anyone can read in this repository: never good enough for a peer off loopback.
DEFAULT_TOKENS = frozenset({RasaSettings().token, GatewaySettings().media_ws_token})
MIN_TOKEN_CHARS = 16
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


class UnsafeBinding(RuntimeError):
    """The gateway would expose its doors beyond loopback with no token or a default one; it does not start."""


class Refused(Exception):
    """A request a web door turns away; `json_errors_middleware` answers it as `{"error": ...}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# ---- addresses and tokens -------------------------------------------------------------------

def is_loopback_host(host: str) -> bool:
    """Whether a bind address (settings.gateway.host) is loopback only; "", 0.0.0.0 and names are not."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    return is_loopback_address(host)


def is_loopback_address(address: str | None) -> bool:
    """Whether a peer address (request.remote) is loopback; unknown addresses are not."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def tokens_equal(offered: str, expected: str) -> bool:
    """Constant-time comparison; an empty expected token matches nothing."""
    return bool(expected) and hmac.compare_digest(offered.encode("utf-8", "replace"),
                                                  expected.encode("utf-8", "replace"))


def token_usable_from(remote: str | None, token: str) -> bool:
    """A default token is only good from loopback: off it, everybody knows it."""
    return token not in DEFAULT_TOKENS or is_loopback_address(remote)


def token_problem(name: str, token: str) -> str | None:
    """Why `token` cannot guard a door reachable from other machines; None when it can."""
    if not token:
        return f"{name} is not set"
    if token in DEFAULT_TOKENS:
        return f"{name} is a default token published in this repository"
    if len(token) < MIN_TOKEN_CHARS:
        return f"{name} is shorter than {MIN_TOKEN_CHARS} characters"
    return None


def require_safe_binding(settings: Settings) -> None:
    """Raises UnsafeBinding when the gateway binds anything but loopback without real tokens on its doors, or when
    CALLER_KEY_SECRET is set but short (whoever holds the records could guess it and read the callers' numbers
    back from the caller keys; bot/caller_keys.py) wherever it binds."""
    gateway = settings.gateway
    if gateway.caller_key_secret and len(gateway.caller_key_secret) < MIN_TOKEN_CHARS:
        raise UnsafeBinding(f"CALLER_KEY_SECRET is shorter than {MIN_TOKEN_CHARS} characters: set a long random "
                            "one (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), the same on "
                            "every gateway, or leave it unset on a single host (docs/KPIS.md)")
    if is_loopback_host(gateway.host):
        return
    problems = [p for p in (token_problem("CONSOLE_TOKEN", gateway.console_token),
                            token_problem("MEDIA_WS_TOKEN", gateway.media_ws_token)) if p]
    if problems:
        raise UnsafeBinding(
            f"GATEWAY_HOST={gateway.host!r} is not loopback, but " + "; ".join(problems) +
            ". Set long random tokens (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`) "
            "or bind 127.0.0.1 (docs/CONSOLE.md).")


def bearer_token(request: web.BaseRequest) -> str:
    authorization = request.headers.get("Authorization", "")
    return authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""


# ---- Origin ---------------------------------------------------------------------------------

def normalize_origin(origin: str) -> str | None:
    """scheme://host[:port] lower-cased, default port dropped; None for `null` or anything not an origin."""
    try:
        url = URL(origin.strip())
    except (ValueError, TypeError):
        return None
    if url.scheme not in _DEFAULT_PORTS or not url.host or url.user or url.path not in ("", "/") \
            or url.query_string or url.fragment:
        return None
    port = url.explicit_port
    netloc = url.host.lower() if ":" not in url.host else f"[{url.host.lower()}]"
    return f"{url.scheme}://{netloc}" + ("" if port in (None, _DEFAULT_PORTS[url.scheme]) else f":{port}")


def parse_origins(raw: str) -> frozenset[str]:
    """CONSOLE_ALLOWED_ORIGINS: comma-separated origins; a malformed one is a configuration error."""
    origins = set()
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        normalized = normalize_origin(item)
        if normalized is None:
            raise ValueError(f"CONSOLE_ALLOWED_ORIGINS: {item!r} is not an origin like https://ivr.bank.example")
        origins.add(normalized)
    return frozenset(origins)


def _cannot_be_rebound(hostname: str) -> bool:
    """An IP literal or localhost: a page on another site cannot make the browser send this Host (DNS rebinding)."""
    if hostname == "localhost":
        return True
    try:
        ipaddress.ip_address(hostname.strip("[]"))
    except ValueError:
        return False
    return True


def host_allowed(host: str | None, allowed: frozenset[str]) -> bool:
    """Whether a `Host` header names the gateway in a way a hostile page cannot borrow (DNS rebinding): an IP literal
    or localhost, with or without a port, or the host of one of `allowed` (CONSOLE_ALLOWED_ORIGINS). No header at
    all (None) is not a browser, which always sends one, so it cannot be a rebound page."""
    if host is None:
        return True
    if not host or len(host) > 300 or any(c in host for c in "@/\\ ?#"):
        return False
    try:
        url = URL(f"http://{host}")
    except ValueError:
        return False
    if not url.host or url.user or url.path not in ("", "/"):
        return False
    if _cannot_be_rebound(url.host.lower()):
        return True
    return any(normalize_origin(f"{scheme}://{host}") in allowed for scheme in ("http", "https"))


def origin_allowed(origin: str | None, host: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request with this Origin (None: header absent) and Host header may use a console."""
    if origin is None:
        return True  # not a browser: browsers send Origin on every POST and WebSocket handshake
    normalized = normalize_origin(origin)
    if normalized is None:
        return False  # "null" (sandboxed frames, file://) or garbage
    if normalized in allowed:
        return True
    if not host or any(c in host for c in "@/\\ "):
        return False
    origin_url = URL(normalized)
    try:
        host_url = URL(f"{origin_url.scheme}://{host}")
    except ValueError:
        return False
    same = (host_url.host or "").lower() == (origin_url.host or "").lower() and host_url.port == origin_url.port
    return same and _cannot_be_rebound((origin_url.host or "").lower())


# ---- console sessions -----------------------------------------------------------------------

@dataclass
class _Session:
    last_used: float
    calls: OrderedDict[str, None] = field(default_factory=OrderedDict)


class ConsoleSessions:
    """Sans-I/O table of console sessions and the calls each started, bounded in memory.

    A session is a random secret held by one browser (its cookie); only its SHA-256 is kept. Sessions idle for
    `idle_s` expire; beyond `max_sessions` the least recently used goes; each keeps its last `calls_per_session`
    call ids. Every method takes `now` so tests step time."""

    def __init__(self, *, max_sessions: int = 1000, idle_s: float = 8 * 3600.0,
                 calls_per_session: int = 100) -> None:
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._max_sessions = max_sessions
        self._idle_s = idle_s
        self._calls_per_session = calls_per_session

    def __len__(self) -> int:
        return len(self._sessions)

    def new_session(self, now: float) -> str:
        secret = secrets.token_urlsafe(32)
        self._sessions[_digest(secret)] = _Session(last_used=now)
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)
        return secret

    def is_valid(self, secret: str | None, now: float) -> bool:
        return self._touch(secret, now) is not None

    def add_call(self, secret: str, call_id: str, now: float) -> None:
        session = self._touch(secret, now)
        if session is None:
            raise KeyError("no such console session")
        session.calls[call_id] = None
        while len(session.calls) > self._calls_per_session:
            session.calls.popitem(last=False)

    def owns(self, secret: str | None, call_id: str, now: float) -> bool:
        session = self._touch(secret, now)
        return session is not None and call_id in session.calls

    def _touch(self, secret: str | None, now: float) -> _Session | None:
        if not secret or len(secret) > 128:
            return None
        key = _digest(secret)
        session = self._sessions.get(key)
        if session is None:
            return None
        if now - session.last_used > self._idle_s:
            del self._sessions[key]
            return None
        session.last_used = now
        self._sessions.move_to_end(key)
        return session


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


# ---- the consoles' gatekeeper ---------------------------------------------------------------

class ConsoleAccess:
    """Applies the rules above to requests for the text console, the voice page and their API/socket."""

    def __init__(self, gateway: GatewaySettings, sessions: ConsoleSessions | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.token = gateway.console_token
        self.allowed_origins = parse_origins(gateway.console_allowed_origins)
        self.sessions = sessions or ConsoleSessions()
        self._clock = clock

    @property
    def token_required(self) -> bool:
        return bool(self.token)

    def session_of(self, request: web.BaseRequest) -> str | None:
        """The request's session secret, if it names a live session."""
        secret = request.cookies.get(SESSION_COOKIE)
        return secret if self.sessions.is_valid(secret, self._clock()) else None

    def new_session(self, response: web.StreamResponse, request: web.BaseRequest) -> str:
        secret = self.sessions.new_session(self._clock())
        response.set_cookie(SESSION_COOKIE, secret, path="/", httponly=True, samesite="Strict",
                            secure=request.secure or None)
        return secret

    def check_peer(self, request: web.BaseRequest) -> None:
        """Without a token the web doors serve loopback peers only, and only under a Host that cannot be DNS-rebound
        (every page, API and socket of the consoles, agent page, dashboard and trainer calls this first)."""
        if self.token_required:
            return
        if not is_loopback_address(request.remote):
            raise Refused(403, "the consoles answer only loopback peers unless CONSOLE_TOKEN is set")
        if not host_allowed(request.headers.get("Host"), self.allowed_origins):
            raise Refused(403, "this Host is not served without CONSOLE_TOKEN (DNS rebinding): open the page as "
                               "http://127.0.0.1:<port>/ or http://localhost:<port>/, or add the name to "
                               "CONSOLE_ALLOWED_ORIGINS")

    def check_origin(self, request: web.BaseRequest) -> None:
        if not origin_allowed(request.headers.get("Origin"), request.headers.get("Host"), self.allowed_origins):
            raise Refused(403, "cross-origin request refused: this origin is not allowed to use the console "
                               "(CONSOLE_ALLOWED_ORIGINS)")

    def offered_token_valid(self, request: web.BaseRequest, offered: str) -> bool:
        return tokens_equal(offered, self.token) and token_usable_from(request.remote, offered)

    def check_api(self, request: web.BaseRequest) -> str | None:
        """Refuses a console API request from a wrong peer or origin, or without the token when one is needed;
        returns its session secret (None: the caller may open one, see `start_call`)."""
        self.check_peer(request)
        self.check_origin(request)
        session = self.session_of(request)
        if session is None and self.token_required and not self.offered_token_valid(request, bearer_token(request)):
            raise Refused(401, "the console needs its token: open the page as /console?token=… (CONSOLE_TOKEN)")
        return session

    def owns(self, session: str | None, call_id: str) -> bool:
        return self.sessions.owns(session, call_id, self._clock())

    def add_call(self, session: str, call_id: str) -> None:
        self.sessions.add_call(session, call_id, self._clock())

    async def page(self, request: web.Request, serve: Callable[[], web.StreamResponse]) -> web.StreamResponse:
        """Serves a console page: issues the session cookie, taking `?token=` when a token is needed."""
        self.check_peer(request)
        if self.session_of(request) is not None:
            return serve()
        if not self.token_required:
            response = serve()
            self.new_session(response, request)
            return response
        offered = request.query.get("token", "")
        if not self.offered_token_valid(request, offered):
            return web.Response(status=401, content_type="text/plain", charset="utf-8",
                                text=f"This console needs its token: open {request.path}?token=<CONSOLE_TOKEN>.\n")
        # Drop the token from the address bar and history at once; the cookie carries the session from now on.
        redirect = web.Response(status=303, headers={"Location": request.path, "Cache-Control": "no-store"})
        self.new_session(redirect, request)
        return redirect

    def check_socket(self, request: web.BaseRequest) -> None:
        """Refuses a /voice/ws handshake from a wrong peer or origin, or without session or token."""
        self.check_session_or_bearer(request, "the voice console needs its token: open the page as /voice?token=… "
                                              "(CONSOLE_TOKEN), or send Authorization: Bearer")

    def check_session_or_bearer(self, request: web.BaseRequest, refusal: str) -> None:
        """Peer and origin as everywhere; then, when a token is needed, the page's session cookie or the token as
        `Authorization: Bearer` (never in the address). Refused(401, `refusal`) without either."""
        self.check_peer(request)
        self.check_origin(request)
        if not self.token_required or self.session_of(request) is not None:
            return
        if not self.offered_token_valid(request, bearer_token(request)):
            raise Refused(401, refusal)


ACCESS_KEY: web.AppKey[ConsoleAccess] = web.AppKey("console_access", ConsoleAccess)


def console_access(app: web.Application, gateway: GatewaySettings) -> ConsoleAccess:
    """The app's one ConsoleAccess (the text console and the voice page share their sessions)."""
    if ACCESS_KEY not in app:
        app[ACCESS_KEY] = ConsoleAccess(gateway)
    return app[ACCESS_KEY]
