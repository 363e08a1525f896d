"""The consoles under attack: forged and foreign call ids, CSRF, DNS rebinding, exposure beyond loopback.

The console API must only address conversations this browser started; a page on another site must not be able
to drive it; a gateway bound beyond loopback must not start without real tokens.
"""

from __future__ import annotations

import re
import uuid

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

import settings as settings_module
from bot.call import VoiceRuntime
from bot.web.access import (SESSION_COOKIE, ConsoleAccess, ConsoleSessions, Refused, UnsafeBinding,
                            origin_allowed, require_safe_binding)
from bot.web.app import create_app
from bot.web.voice import add_voice_routes
from bot.web.voice_loop import VoiceLoop
from settings import Settings
from tests.bot.fake_rasa import TOKEN, FakeRasa, running_fake_rasa

CONSOLE_TOKEN = "a-long-random-console-token-0123456789"
CALLER = {"caller_number": "13800000001"}


@pytest.fixture
async def fake_rasa():
    async with running_fake_rasa() as fake:
        yield fake


@pytest.fixture
async def gateway(fake_rasa, tmp_path):
    clients: list[TestClient] = []

    async def open_client(**env: str) -> TestClient:
        settings = Settings.from_env({"RASA_URL": fake_rasa.url, "RASA_TOKEN": TOKEN, "RASA_TIMEOUT_S": "2",
                                      "CALL_RECORDS_DIR": str(tmp_path / "calls"), **env})  # console records
        client = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()


async def start_call(client: TestClient, **kwargs) -> dict:
    resp = await client.post("/console/api/calls", json=CALLER, **kwargs)
    assert resp.status == 200, await resp.text()
    return await resp.json()


def other_browser() -> aiohttp.ClientSession:
    """Another browser: its own cookie jar (unsafe=True: cookies for an IP-address host, as browsers keep)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def origin_of(client: TestClient) -> str:
    return f"http://127.0.0.1:{client.port}"


# ---- conversations the console did not start ---------------------------------------------------

@pytest.mark.parametrize("call_id", ["sip-1", "sip-2", "media_stream-" + "0" * 32, "web-00ff", "CA42",
                                     "console-abc", "2f0b9a3c-6a1d-4a7e-9b8e-1c2d3e4f5a6b"])
@pytest.mark.parametrize("kind, body", [("messages", {"text": "查一下余额"}), ("dtmf", {"digits": "1"})])
async def test_the_api_refuses_ids_it_did_not_start(gateway, fake_rasa, call_id, kind, body):
    """The issue's reproduction: POST /console/api/calls/sip-1/messages was answered 200."""
    client = await gateway()
    await start_call(client)  # this browser has a session and a call of its own
    sent_before = len(fake_rasa.received)
    resp = await client.post(f"/console/api/calls/{call_id}/{kind}", json={**CALLER, **body})
    assert resp.status == 404
    assert (await resp.json())["error"] == "unknown call id: start a new call"
    assert len(fake_rasa.received) == sent_before  # nothing reached Rasa under that id


async def test_another_browser_cannot_drive_my_call(gateway, fake_rasa):
    mine = await gateway()
    call_id = (await start_call(mine))["call_id"]
    async with other_browser() as stranger:  # same gateway, its own cookie jar
        resp = await stranger.post(mine.make_url("/console/api/calls"), json=CALLER)
        assert resp.status == 200
        resp = await stranger.post(mine.make_url(f"/console/api/calls/{call_id}/messages"),
                                   json={**CALLER, "text": "余额"})
        assert resp.status == 404
    assert not any(p["sender"] == call_id and p["message"] == "余额" for p in fake_rasa.received)
    resp = await mine.post(f"/console/api/calls/{call_id}/messages", json={**CALLER, "text": "余额"})
    assert resp.status == 200


async def test_a_forged_session_cookie_is_worth_nothing(gateway):
    client = await gateway()
    call_id = (await start_call(client))["call_id"]
    async with other_browser() as other:
        for forged in ("", "x", "A" * 43, "A" * 5000, "\u00e9\u00e9"):
            other.cookie_jar.clear()
            other.cookie_jar.update_cookies({SESSION_COOKIE: forged}, client.make_url("/"))
            resp = await other.post(client.make_url(f"/console/api/calls/{call_id}/messages"),
                                    json={**CALLER, "text": "hi"})
            assert resp.status == 404, forged


async def test_call_ids_are_uuid4_and_the_session_cookie_is_locked_down(gateway):
    client = await gateway()
    resp = await client.post("/console/api/calls", json=CALLER)
    call_id = (await resp.json())["call_id"]
    match = re.fullmatch(r"console-([0-9a-f]{32})", call_id)
    assert match and uuid.UUID(hex=match.group(1)).version == 4
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Path=/" in cookie


# ---- CSRF ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          None])
async def test_the_api_takes_json_only(gateway, fake_rasa, content_type):
    """A cross-site form or `text/plain` fetch needs no preflight, so such a POST must be refused (415)."""
    client = await gateway()
    headers = {"Content-Type": content_type} if content_type else {}
    resp = await client.post("/console/api/calls", data=b'{"caller_number": "13800000001"}', headers=headers,
                             skip_auto_headers=["Content-Type"])
    assert resp.status == 415 and "JSON" in (await resp.json())["error"]
    assert fake_rasa.received == []


async def test_json_with_a_charset_is_fine(gateway):
    client = await gateway()
    resp = await client.post("/console/api/calls", data=b'{"caller_number": ""}',
                             headers={"Content-Type": "application/json; charset=utf-8"})
    assert resp.status == 200


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1.evil.example",
                                    "https://127.0.0.1", "http://localhost:1", "file://", "garbage"])
async def test_a_foreign_origin_is_refused(gateway, fake_rasa, origin):
    client = await gateway()
    resp = await client.post("/console/api/calls", json=CALLER, headers={"Origin": origin})
    assert resp.status == 403
    assert fake_rasa.received == []


async def test_the_page_own_origin_and_listed_origins_are_accepted(gateway):
    client = await gateway(CONSOLE_ALLOWED_ORIGINS="https://ivr.bank.example")
    await start_call(client, headers={"Origin": origin_of(client)})
    await start_call(client, headers={"Origin": f"http://localhost:{client.port}", "Host": f"localhost:{client.port}"})
    await start_call(client, headers={"Origin": "https://ivr.bank.example"})


async def test_dns_rebinding_is_refused(gateway, fake_rasa):
    """evil.example resolving to 127.0.0.1: Origin and Host agree, but the name is the attacker's."""
    client = await gateway()
    host = f"evil.example:{client.port}"
    resp = await client.post("/console/api/calls", json=CALLER, headers={"Origin": f"http://{host}", "Host": host})
    assert resp.status == 403 and fake_rasa.received == []


@pytest.mark.parametrize("origin, host, allowed", [
    (None, "127.0.0.1:8080", True),  # not a browser
    ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
    ("http://[::1]:8080", "[::1]:8080", True),
    ("https://10.0.0.5", "10.0.0.5:443", True),  # TLS-terminating proxy on the default port
    ("http://127.0.0.1:8080", "127.0.0.1:8081", False),
    ("http://127.0.0.1:8080", None, False),
    ("http://127.0.0.1:8080", "127.0.0.1:8080@evil", False),
    ("http://user@127.0.0.1:8080", "127.0.0.1:8080", False),
    ("http://127.0.0.1:8080/path", "127.0.0.1:8080", False),
    ("http://ivr.bank.example", "ivr.bank.example", False),  # a DNS name must be listed
    ("http://ⅰvr.example", "ⅰvr.example", False),
])
def test_origin_rules(origin, host, allowed):
    assert origin_allowed(origin, host, frozenset()) is allowed


async def test_a_deeply_nested_json_body_gets_a_400_not_a_500(gateway):
    client = await gateway()
    resp = await client.post("/console/api/calls", data=b"[" * 100_000, headers={"Content-Type": "application/json"})
    assert resp.status == 400


@pytest.mark.parametrize("text", ["\ud800", "\u202e余额\u202c", "１２３４", "\x00", "¹²³"])
async def test_odd_unicode_text_is_a_turn_or_a_400_never_a_500(gateway, text):
    client = await gateway()
    call_id = (await start_call(client))["call_id"]
    resp = await client.post(f"/console/api/calls/{call_id}/messages", json={**CALLER, "text": text})
    assert resp.status in (200, 400)


@pytest.mark.parametrize("digits", ["１２３４", "٣", "²", "1\u200b2"])
async def test_keypad_digits_must_be_ascii(gateway, fake_rasa, digits):
    client = await gateway()
    call_id = (await start_call(client))["call_id"]
    resp = await client.post(f"/console/api/calls/{call_id}/dtmf", json={**CALLER, "digits": digits})
    assert resp.status == 400 and len(fake_rasa.received) == 1  # only the /call_start


# ---- the voice page's socket -----------------------------------------------------------------

@pytest.fixture
async def voice_gateway(monkeypatch):
    """A voice page whose voice loop failed to load: a socket that passes the door's checks gets 503."""
    def no_voice_loop(settings, **kwargs):
        raise RuntimeError("no voice loop in this test")

    monkeypatch.setattr(VoiceRuntime, "load", staticmethod(no_voice_loop))
    servers = []

    async def serve(**env: str) -> TestServer:
        app = web.Application()
        settings = settings_module.Settings.from_env(env)
        voice = VoiceLoop(settings)
        app.cleanup_ctx.append(voice.serve)
        add_voice_routes(app, settings, voice)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server

    yield serve
    for server in servers:
        await server.close()


async def handshake_status(server: TestServer, headers: dict[str, str], session=None) -> int:
    async with other_browser() as own:
        http = session or own
        try:
            ws = await http.ws_connect(server.make_url("/voice/ws"), headers=headers)
        except aiohttp.WSServerHandshakeError as refused:
            return refused.status
        await ws.close()
        return 101


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://localhost:1"])
async def test_the_voice_socket_refuses_a_foreign_origin(voice_gateway, origin):
    server = await voice_gateway()
    assert await handshake_status(server, {"Origin": origin}) == 403


async def test_the_voice_socket_accepts_its_own_page_and_non_browser_clients(voice_gateway):
    server = await voice_gateway()
    assert await handshake_status(server, {"Origin": f"http://127.0.0.1:{server.port}"}) == 503
    assert await handshake_status(server, {}) == 503  # `make call`: no Origin


async def test_with_a_console_token_the_voice_socket_needs_the_page_session_or_the_token(voice_gateway):
    server = await voice_gateway(CONSOLE_TOKEN=CONSOLE_TOKEN)
    own = {"Origin": f"http://127.0.0.1:{server.port}"}
    assert await handshake_status(server, own) == 401
    assert await handshake_status(server, {"Authorization": "Bearer wrong"}) == 401
    assert await handshake_status(server, {"Authorization": f"Bearer {CONSOLE_TOKEN}"}) == 503
    async with other_browser() as browser:
        page = await browser.get(server.make_url(f"/voice?token={CONSOLE_TOKEN}"))
        assert page.status == 200 and str(page.url).endswith("/voice")  # the token left the address bar
        assert await handshake_status(server, own, session=browser) == 503


# ---- tokens and binding ------------------------------------------------------------------------

async def test_with_a_console_token_the_page_and_api_need_it(gateway, fake_rasa):
    client = await gateway(CONSOLE_TOKEN=CONSOLE_TOKEN)
    assert (await client.get("/console")).status == 401
    assert (await client.get("/console?token=wrong")).status == 401
    assert (await client.post("/console/api/calls", json=CALLER)).status == 401
    assert fake_rasa.received == []

    resp = await client.get(f"/console?token={CONSOLE_TOKEN}", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console"
    assert (await client.get("/console")).status == 200  # the cookie now carries the session
    await start_call(client)


async def test_a_non_browser_client_may_use_the_bearer_token(gateway):
    client = await gateway(CONSOLE_TOKEN=CONSOLE_TOKEN)
    async with other_browser() as tool:
        resp = await tool.post(client.make_url("/console/api/calls"), json=CALLER,
                               headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"})
        call_id = (await resp.json())["call_id"]
        resp = await tool.post(client.make_url(f"/console/api/calls/{call_id}/messages"), json={**CALLER, "text": "hi"})
        assert resp.status == 200  # its cookie jar holds the session it was given


@pytest.mark.parametrize("env, problem", [
    ({"GATEWAY_HOST": "0.0.0.0"}, "CONSOLE_TOKEN is not set"),
    ({"GATEWAY_HOST": "0.0.0.0", "CONSOLE_TOKEN": "ivr-local-token"}, "default token"),
    ({"GATEWAY_HOST": "0.0.0.0", "CONSOLE_TOKEN": "change-me-media-token"}, "default token"),
    ({"GATEWAY_HOST": "10.0.0.5", "CONSOLE_TOKEN": "short"}, "shorter than"),
    ({"GATEWAY_HOST": "::", "CONSOLE_TOKEN": CONSOLE_TOKEN}, "MEDIA_WS_TOKEN is a default token"),
    ({"GATEWAY_HOST": "", "CONSOLE_TOKEN": CONSOLE_TOKEN, "MEDIA_WS_TOKEN": "ivr-local-token"}, "MEDIA_WS_TOKEN"),
    ({"GATEWAY_HOST": "ivr.bank.example", "CONSOLE_TOKEN": CONSOLE_TOKEN}, "MEDIA_WS_TOKEN"),
])
def test_the_gateway_refuses_to_start_beyond_loopback_without_real_tokens(env, problem):
    settings = Settings.from_env(env)
    with pytest.raises(UnsafeBinding, match=problem):
        require_safe_binding(settings)
    with pytest.raises(UnsafeBinding):
        create_app(settings)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_token(host):
    require_safe_binding(Settings.from_env({"GATEWAY_HOST": host}))


def test_beyond_loopback_with_real_tokens_the_gateway_starts():
    require_safe_binding(Settings.from_env({"GATEWAY_HOST": "0.0.0.0", "CONSOLE_TOKEN": CONSOLE_TOKEN,
                                            "MEDIA_WS_TOKEN": "another-long-random-media-token-42"}))


def peer_request(remote: str, path: str = "/console", headers: dict[str, str] | None = None) -> web.Request:
    return make_mocked_request("POST", path, headers=headers or {}).clone(remote=remote)


@pytest.mark.parametrize("remote, allowed", [("127.0.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True),
                                             ("10.0.0.9", False), ("203.0.113.1", False), ("", False)])
def test_without_a_token_the_consoles_serve_loopback_peers_only(remote, allowed):
    access = ConsoleAccess(Settings.from_env({}).gateway)
    if allowed:
        access.check_peer(peer_request(remote))
    else:
        with pytest.raises(Refused) as refused:
            access.check_peer(peer_request(remote))
        assert refused.value.status == 403


@pytest.mark.parametrize("default", ["ivr-local-token", "change-me-media-token"])
def test_a_default_console_token_is_never_accepted_off_loopback(default):
    """Even if an app was built around require_safe_binding (tests, embedding), the door itself says no."""
    access = ConsoleAccess(Settings.from_env({"CONSOLE_TOKEN": default}).gateway)
    stranger = peer_request("203.0.113.1", headers={"Authorization": f"Bearer {default}"})
    with pytest.raises(Refused) as refused:
        access.check_api(stranger)
    assert refused.value.status == 401
    assert access.check_api(peer_request("127.0.0.1", headers={"Authorization": f"Bearer {default}"})) is None


# ---- the session table is bounded ----------------------------------------------------------------

def test_sessions_expire_when_idle_and_the_oldest_go_first():
    sessions = ConsoleSessions(max_sessions=3, idle_s=100.0, calls_per_session=2)
    first = sessions.new_session(now=0.0)
    sessions.add_call(first, "console-a", now=1.0)
    assert sessions.owns(first, "console-a", now=50.0)
    assert sessions.owns(first, "console-a", now=149.0)  # use keeps it alive
    assert not sessions.owns(first, "console-a", now=250.0)  # idle too long
    assert len(sessions) == 0

    kept = sessions.new_session(now=300.0)
    others = [sessions.new_session(now=301.0 + i) for i in range(3)]
    assert not sessions.is_valid(kept, now=310.0)  # evicted: only 3 sessions are kept
    assert all(sessions.is_valid(other, now=310.0) for other in others) and len(sessions) == 3


def test_a_session_remembers_its_latest_calls_only_and_not_other_sessions_calls():
    sessions = ConsoleSessions(calls_per_session=2)
    mine, theirs = sessions.new_session(now=0.0), sessions.new_session(now=0.0)
    for call_id in ("console-1", "console-2", "console-3"):
        sessions.add_call(mine, call_id, now=1.0)
    assert [sessions.owns(mine, c, now=2.0) for c in ("console-1", "console-2", "console-3")] == [False, True, True]
    assert not sessions.owns(theirs, "console-3", now=2.0)
    assert not sessions.owns(None, "console-3", now=2.0)
    with pytest.raises(KeyError):
        sessions.add_call("not-a-session", "console-4", now=2.0)
