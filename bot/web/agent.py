"""The agent's screen-pop: `GET /agent/{ref}`, the page an agent opens for a call the bot handed over.

`ref` is the handoff's context reference (bot/screen_pop.py; the REFER's X-IVR-Context-Ref). The page shows the
caller number masked, the elderly and green-channel flags, whether the caller was verified, the intent and the
handoff's reason, and the last turns of the transcript with secure input masked. `Accept: application/json` gets the
same as JSON.

Who may open it: the consoles' rule (bot/web/access.py), loopback peers only unless CONSOLE_TOKEN is set, then the
token (`Authorization: Bearer`, or `?token=` for a browser); and only with a live reference. A reference that is
malformed, unknown or expired gets the same 404 with the same body, so a guesser learns nothing, and references are
192 random bits looked up by their hash (no timing oracle). Every text is HTML-escaped (the transcript is ASR text: a
caller can say anything), the page runs no script (a Content-Security-Policy without script-src), is never cached
and never sends its address, which holds the reference, in a Referer.
"""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from bot.screen_pop import ScreenPopStore
from bot.web.access import ACCESS_KEY, Refused, bearer_token, console_access
from settings import Settings

SCREEN_POP_KEY: web.AppKey[ScreenPopStore] = web.AppKey("screen_pops", ScreenPopStore)
AGENT_PAGES = Counter("ivr_agent_screen_pops_total", "Agent screen-pop requests", ["result"])

NOT_FOUND = "no such call context (unknown or expired reference)"
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
}
WHO = {"caller": "来电人", "bot": "机器人"}


def add_agent_routes(app: web.Application, settings: Settings, store: ScreenPopStore) -> None:
    app[SCREEN_POP_KEY] = store
    console_access(app, settings.gateway)
    app.router.add_get("/agent/{ref}", agent_page)


async def agent_page(request: web.Request) -> web.Response:
    access = request.app[ACCESS_KEY]
    access.check_peer(request)
    if access.token_required:
        offered = bearer_token(request) or request.query.get("token", "")
        if not access.offered_token_valid(request, offered):
            AGENT_PAGES.labels("refused").inc()
            raise Refused(401, "the agent page needs the console token (CONSOLE_TOKEN)")
    pop = request.app[SCREEN_POP_KEY].get(request.match_info["ref"])
    wants_json = "application/json" in request.headers.get("Accept", "")
    if pop is None:
        AGENT_PAGES.labels("not_found").inc()
        if wants_json:
            return web.json_response({"error": NOT_FOUND}, status=404, headers=HEADERS)
        return web.Response(status=404, text=NOT_FOUND + "\n", content_type="text/plain", charset="utf-8",
                            headers=HEADERS)
    AGENT_PAGES.labels("shown").inc()
    if wants_json:
        return web.json_response(pop, headers=HEADERS)
    return web.Response(text=render(pop), content_type="text/html", charset="utf-8", headers=HEADERS)


def _yes(value: bool) -> str:
    return "是" if value else "否"


def render(pop: dict[str, Any]) -> str:
    """The page; every value from the pop is escaped."""
    esc = lambda value: html.escape(str(value if value is not None else "—"), quote=True)  # noqa: E731
    flags = []
    if pop.get("elderly"):
        flags.append('<span class="flag">光银岁月 elderly</span>')
    if pop.get("green_channel"):
        flags.append('<span class="flag">绿色通道 green channel</span>')
    rows = [
        ("来电号码 caller", esc(pop.get("caller") or "—")),
        ("已验证 verified", _yes(bool(pop.get("verified")))),
        ("意图 intent", esc(pop.get("intent"))),
        ("转人工原因 handoff reason", esc(pop.get("reason"))),
        ("队列 queue", esc(pop.get("queue"))),
        ("通话 call", esc(pop.get("call_id"))),
    ]
    table = "\n".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    turns = "\n".join(
        f'<li class="{esc(turn.get("who"))}"><b>{esc(WHO.get(str(turn.get("who")), "机器人"))}</b> '
        f'{esc(turn.get("text"))}</li>'
        for turn in pop.get("transcript") or [])
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<title>坐席弹屏 screen-pop</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:50em}}th{{text-align:left;padding-right:1em}}
.flag{{background:#c00;color:#fff;padding:.2em .5em;margin-right:.5em;border-radius:.3em}}
li.caller b{{color:#036}} li.bot b{{color:#555}}</style></head>
<body><h1>坐席弹屏 · screen-pop</h1>
<p>{"".join(flags) or "—"}</p>
<table>
{table}
</table>
<h2>最近对话 last turns</h2>
<ol>
{turns or "<li>—</li>"}
</ol>
</body></html>
"""
