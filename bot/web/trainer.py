"""The trainers' page: `GET /trainer` lists the caller turns the bot did not understand well, and labels them.

    GET  /trainer[?days=N&developers=1]    the review list grouped by predicted intent (bot/nlu_review.py), a label
                                           form per item (identical sentences merged, with their count and label)
    GET  /trainer/api/items[?days=N&developers=1]   the same as JSON: {"low_confidence", "intents", "groups", ...}
    POST /trainer/api/labels    {"key", "intent" | "out_of_scope": true, "by", "expected"} -> {"status", "intent",
                                "message"}; 409 when the sentence's label is no longer `expected` (another trainer)
The list reads a window of days (settings.trainer.review_days by default, at most MAX_DAYS), merges identical
sentences and shows at most settings.trainer.max_listed items; a label reads its turn's day only. Reading and
rendering run on the page's own single thread, never on the event loop nor on the executor Piper's TTS uses, and
one listing at a time: another asked meanwhile gets 503 with Retry-After.
Labels go to the Rasa project's data/nlu/review.yml through bot/nlu_labels.py, which refuses external-evaluation
sentences, held-out ones, masked turns and unknown intents (422 with the reason). The label names a listed turn by
its key; the sentence written is the record's own, never text from the browser.

Who may use it: the consoles' rule (bot/web/access.py): loopback peers only unless CONSOLE_TOKEN is set, then the
token (`?token=` once for the page, which then sets the session cookie, or `Authorization: Bearer`). The API is
CSRF-protected like the console API: JSON only (415 otherwise), a foreign `Origin` refused (403). The page and its
answers carry the agent page's security headers (never cached, no Referer, no framing); its one script is served
from here (CSP `script-src 'self'`), and every text from a record is HTML-escaped (callers can say anything).
"""

from __future__ import annotations

import asyncio
import html
from pathlib import Path

from aiohttp import web
from prometheus_client import Counter

from concurrent.futures import ThreadPoolExecutor

from bot.nlu_labels import OUT_OF_SCOPE, UNCHECKED, LabelConflict, LabelRefused, Labeller, clean_by
from bot.nlu_review import (REASON_FALLBACK, REASON_LOW_CONFIDENCE, REASON_THREE_STRIKES, NoRecords, ReviewItem,
                            Window, find_listed, grouped, load_records, review_items, with_labels)
from bot.web.access import ACCESS_KEY, Refused, console_access
from bot.web.agent import HEADERS as AGENT_HEADERS
from bot.web.console import BadRequest, _json_body
from settings import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
TRAINER_SETTINGS_KEY: web.AppKey[Settings] = web.AppKey("trainer_settings", Settings)
TRAINER_WORKER_KEY: web.AppKey[ThreadPoolExecutor] = web.AppKey("trainer_worker", ThreadPoolExecutor)
TRAINER_LISTING_KEY: web.AppKey[asyncio.Lock] = web.AppKey("trainer_listing", asyncio.Lock)
MAX_DAYS = 31
RETRY_AFTER_S = 5
TRAINER_REQUESTS = Counter("ivr_trainer_requests_total", "Trainer page and API requests", ["kind", "result"])
HEADERS = {
    **AGENT_HEADERS,
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; "
                               "style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'",
}
REASON_NAMES = {REASON_FALLBACK: "没听懂 nlu_fallback", REASON_LOW_CONFIDENCE: "低置信 low confidence",
                REASON_THREE_STRIKES: "三次未懂转人工 3-strike handoff"}
MAX_KEY_CHARS = 100


def add_trainer_routes(app: web.Application, settings: Settings) -> None:
    app[TRAINER_SETTINGS_KEY] = settings
    # One thread of its own: record reads never queue behind (or ahead of) Piper's TTS on the default executor.
    app[TRAINER_WORKER_KEY] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainer")
    app[TRAINER_LISTING_KEY] = asyncio.Lock()
    app.on_cleanup.append(_stop_worker)
    console_access(app, settings.gateway)
    app.router.add_get("/trainer", trainer_page)
    app.router.add_get("/trainer/trainer.js", trainer_script)
    app.router.add_get("/trainer/api/items", list_items)
    app.router.add_post("/trainer/api/labels", add_label)


async def trainer_page(request: web.Request) -> web.StreamResponse:
    access = request.app[ACCESS_KEY]
    access.check_peer(request)
    if access.token_required and access.session_of(request) is None:
        # Not in yet: the 401, or the redirect that trades `?token=` for the session cookie; records stay unread.
        return await access.page(request, lambda: web.Response(status=401, headers=HEADERS))
    settings = request.app[TRAINER_SETTINGS_KEY]
    window, developers = _window_of(request, settings)

    def page() -> str:
        groups, problem = _listing(settings, window, developers)
        labels = sorted(Labeller.from_settings(settings).labels())
        return render(groups, labels, settings.trainer.low_confidence, problem, window)

    body = await _one_listing(request, page)
    TRAINER_REQUESTS.labels("page", "shown").inc()
    return await access.page(
        request, lambda: web.Response(text=body, content_type="text/html", charset="utf-8", headers=HEADERS))


async def trainer_script(request: web.Request) -> web.StreamResponse:
    request.app[ACCESS_KEY].check_peer(request)
    return web.FileResponse(STATIC_DIR / "trainer.js", headers={**HEADERS, "Cache-Control": "no-cache"})


async def list_items(request: web.Request) -> web.Response:
    _check_access(request, needs_json=False)
    settings = request.app[TRAINER_SETTINGS_KEY]
    window, developers = _window_of(request, settings)

    def answer() -> dict:
        groups, problem = _listing(settings, window, developers)
        return {"low_confidence": settings.trainer.low_confidence, "problem": problem,
                "from": window.first.isoformat(), "to": window.last.isoformat(),
                "intents": sorted(Labeller.from_settings(settings).labels()),
                "groups": {intent: [item.as_json() for item in members] for intent, members in groups.items()}}

    data = await _one_listing(request, answer)
    TRAINER_REQUESTS.labels("items", "shown").inc()
    return web.json_response(data, headers=HEADERS)


async def add_label(request: web.Request) -> web.Response:
    _check_access(request, needs_json=True)
    settings = request.app[TRAINER_SETTINGS_KEY]
    body = await _json_body(request)
    key, intent = body.get("key"), OUT_OF_SCOPE if body.get("out_of_scope") is True else body.get("intent")
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS:
        raise BadRequest("key must be a listed turn's key")
    if not isinstance(intent, str) or len(intent) > MAX_KEY_CHARS:
        raise BadRequest("intent must be an intent's name (or out_of_scope: true)")
    by = clean_by(body.get("by") if isinstance(body.get("by"), str) else "")
    expected = body.get("expected", UNCHECKED)
    if expected is not UNCHECKED and expected is not None and not (isinstance(expected, str)
                                                                  and len(expected) <= MAX_KEY_CHARS):
        raise BadRequest("expected must be the label shown (null for none)")
    loop = asyncio.get_running_loop()
    try:  # files, a database and a lock: off the event loop, on the page's own thread
        result = await loop.run_in_executor(request.app[TRAINER_WORKER_KEY], _label_turn, settings, key, intent,
                                            f"web:{by}", expected)
    except LabelConflict as conflict:
        TRAINER_REQUESTS.labels("label", "conflict").inc()
        return web.json_response({"error": str(conflict)}, status=409, headers=HEADERS)
    except LabelRefused as refused:
        TRAINER_REQUESTS.labels("label", "refused").inc()
        return web.json_response({"error": str(refused)}, status=422, headers=HEADERS)
    TRAINER_REQUESTS.labels("label", result.status).inc()
    return web.json_response({"status": result.status, "intent": result.intent, "message": result.message},
                             headers=HEADERS)


def _label_turn(settings: Settings, key: str, intent: str, by: str, expected: str | None):
    try:
        item = find_listed(settings, key)  # the records of the key's day only
    except NoRecords as error:
        raise LabelRefused(str(error)) from None
    if item is None:
        raise LabelRefused("no listed turn has this key (reload the page)")
    return Labeller.from_settings(settings).label(item.text, intent, call=item.call, by=by, expected=expected)


def _check_access(request: web.Request, *, needs_json: bool) -> None:
    if needs_json and request.content_type != "application/json":
        TRAINER_REQUESTS.labels("api", "refused").inc()
        raise Refused(415, "the trainer API takes JSON only (Content-Type: application/json)")
    try:
        request.app[ACCESS_KEY].check_api(request)
    except Refused:
        TRAINER_REQUESTS.labels("api", "refused").inc()
        raise


async def _stop_worker(app: web.Application) -> None:
    app[TRAINER_WORKER_KEY].shutdown(wait=False, cancel_futures=True)


def _window_of(request: web.Request, settings: Settings) -> tuple[Window, bool]:
    """The days asked for (`?days=`, 1..MAX_DAYS, the settings' default) and whether developers' calls are listed."""
    days = request.query.get("days", "")
    try:
        count = int(days) if days else settings.trainer.review_days
    except ValueError:
        raise BadRequest("days must be a whole number of days") from None
    if not 1 <= count <= MAX_DAYS:
        raise BadRequest(f"days must be from 1 to {MAX_DAYS}")
    return Window.last_days(count), request.query.get("developers") == "1"


async def _one_listing(request: web.Request, work):
    """Runs a listing on the page's own thread, one at a time: a second one meanwhile is told to come back."""
    lock = request.app[TRAINER_LISTING_KEY]
    if lock.locked():
        TRAINER_REQUESTS.labels("listing", "busy").inc()
        raise web.HTTPServiceUnavailable(text="the review list is being read for someone else: retry in a moment",
                                         headers={**HEADERS, "Retry-After": str(RETRY_AFTER_S)})
    async with lock:
        return await asyncio.get_running_loop().run_in_executor(request.app[TRAINER_WORKER_KEY], work)


def _listing(settings: Settings, window: Window, developers: bool) -> tuple[dict[str, list[ReviewItem]], str | None]:
    """The review list (merged, bounded, with current labels), and why it is empty when the records cannot be read
    (said on the page, not a 500)."""
    trainer = settings.trainer
    try:
        records = load_records(settings, window)
        groups = grouped(review_items(records, low_confidence=trainer.low_confidence, include_developers=developers),
                         limit=trainer.max_listed)
    except NoRecords as error:
        return {}, str(error)
    except Exception as error:  # a database down: the page says so
        return {}, f"cannot read the call records: {type(error).__name__}"
    try:
        return with_labels(groups, Labeller.from_settings(settings).current_labels()), None
    except LabelRefused as refused:  # review.yml edited by hand: the list, and why labels are not shown
        return groups, str(refused)


def render(groups: dict[str, list[ReviewItem]], labels: list[str], low_confidence: float,
           problem: str | None, window: Window | None = None) -> str:
    """The page; every text from a record is escaped."""
    esc = lambda value: html.escape(str(value), quote=True)  # noqa: E731
    options = "".join(f'<option value="{esc(name)}">{esc(name)}</option>' for name in labels)
    sections = []
    for intent, members in groups.items():
        rows = []
        for item in members:
            confidence = "—" if item.confidence is None else f"{item.confidence:.2f}"
            reasons = "、".join(esc(REASON_NAMES.get(r, r)) for r in item.reasons)
            count = f' <small class="count">×{item.count}</small>' if item.count > 1 else ""
            now = esc(item.labelled or "")
            rows.append(
                f'<tr data-key="{esc(item.key)}" data-labelled="{now}"><td class="text">{esc(item.text)}{count}</td>'
                f'<td>{confidence}</td><td>{reasons}</td><td class="labelled">{now or "—"}</td>'
                f'<td><select aria-label="intent"><option value="">— 选择意图 intent —</option>'
                f'{options}</select> <button class="label">标注 label</button> '
                f'<button class="oos">不属于业务 out of scope</button> <span class="result"></span></td></tr>')
        said = sum(item.count for item in members)
        sections.append(f"<h2>{esc(intent)} <small>({said})</small></h2>\n<table>"
                        "<tr><th>来电人说 caller said</th><th>置信 conf.</th><th>原因 why</th><th>现标注 now</th>"
                        "<th>标注 label</th></tr>"
                        + "\n".join(rows) + "</table>")
    empty = esc(problem) if problem else "没有需要复核的话语 nothing to review"
    period = f"{window.first.isoformat()} – {window.last.isoformat()} (UTC)" if window else ""
    notice = f'<p class="result error">{esc(problem)}</p>' if problem and sections else ""
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<title>训练师复核 trainer review</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:70em}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:.3em;text-align:left;vertical-align:top}}td.text{{width:40%}}
.result{{color:#060}}.result.error{{color:#b00}}</style></head>
<body><h1>训练师复核 · trainer review</h1>
<p>机器人没听懂或把握不大的来电话语（置信度低于 {low_confidence:g}），按预测意图分组。标注写入 data/nlu/review.yml，
然后 <code>make train</code> 与 <code>make swap-model</code>。Caller turns the bot did not understand well, grouped by
predicted intent. 期间 period: {period}（<code>?days=N</code>；开发者测试通话不列出 developers' test calls
left out, <code>?developers=1</code>）。</p>
{notice}
<p><label>标注人 labelled by: <input id="by" maxlength="40" value="trainer"></label></p>
{"".join(sections) or f"<p>{empty}</p>"}
<script src="/trainer/trainer.js"></script>
</body></html>
"""
