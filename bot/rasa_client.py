"""HTTP client for the Rasa server: the call contract's REST channel plus the tracker API.

Used by the text console, the voice loop's Rasa bridge and the health check. See docs/ARCHITECTURE.md.

Every turn is sent with its own `message_id`. When the answer means the Rasa server died or none was reachable
(HTTP 502/503 from the front, or the connection refused or dropped before any answer), the same turn, same
`message_id`, is sent again, at most MAX_RETRIES times and only while enough of the reply budget is left for the
dialogue's whole turn. The call channel (dialogue/channel.py) answers a message_id it has already stored from the
tracker instead of running the turn again, so a retried turn is never run twice (docs/SCALING.md, Rasa tier).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from call_contract import dtmf_message
from settings import RASA_REPLY_MARGIN_S

__all__ = ["BotReply", "RasaClient", "RasaUnavailable", "dtmf_message", "new_message_id"]

# A turn is sent at most 1 + MAX_RETRIES times.
MAX_RETRIES = 2
# Statuses that mean "no Rasa server answered this": HAProxy's 502 (the server's connection broke: it died) and 503
# (no server up). Any other error status is an answer from a live Rasa server: not retried.
RETRY_STATUSES = frozenset({502, 503})
RETRY_PAUSE_S = 0.1


def new_message_id() -> str:
    """A turn's id: 32 hex characters (the call channel accepts short token characters only)."""
    return uuid.uuid4().hex


class RasaUnavailable(Exception):
    """Rasa did not answer in time, refused the connection, or answered with an error status."""


class RasaGone(RasaUnavailable):
    """No Rasa server answered: the front said 502/503, or the connection was refused or dropped before an answer."""


@dataclass
class BotReply:
    """One Rasa reply, in order: items are {"text": str} or {"custom": {"event": ...}}."""

    items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [item["text"] for item in self.items if item.get("text")]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [item["custom"] for item in self.items if isinstance(item.get("custom"), dict)]


class RasaClient:
    """Talks to one Rasa server. One instance per process; it owns an aiohttp session unless given one."""

    def __init__(self, base_url: str, token: str = "", timeout_s: float = 3.0,
                 session: aiohttp.ClientSession | None = None, retry_min_s: float | None = None) -> None:
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        # A turn is sent again only while this much of its reply budget is left: the dialogue's own turn budget
        # (the reply budget less its margin, settings.Settings.rasa_reply_timeout_s). The channel answers a retry
        # within that budget, so the gateway never gives up on a retry that Rasa then runs to the end.
        self._retry_min_s = max(timeout_s - RASA_REPLY_MARGIN_S, 0.0) if retry_min_s is None else retry_min_s
        self._session = session
        self._owns_session = session is None

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()

    async def send(self, sender: str, message: str, metadata: dict[str, Any] | None = None,
                   message_id: str | None = None) -> BotReply:
        """Sends one caller message and returns the bot's reply; raises RasaUnavailable on timeout or error.

        The turn carries `message_id` (a new one unless given). It is sent again, with the same id, when no Rasa
        server answered it (RasaGone) and enough budget is left; the whole exchange, retries included, ends
        within the client's timeout."""
        payload = {"sender": sender, "message": message, "metadata": metadata or {},
                   "message_id": message_id or new_message_id()}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        attempt = 0
        while True:
            try:
                items = await self._request("POST", "/webhooks/rest/webhook", json=payload,
                                            timeout=aiohttp.ClientTimeout(total=max(deadline - loop.time(), 0.001)))
                break
            except RasaGone:
                # Retried: the server that had the turn died (502), none was up (503), or the connection was refused
                # or dropped before any answer. Either the turn never ran, or it ran and was saved with its
                # message_id (the channel then answers from the tracker), or it died unsaved (the dead server's
                # lock lease runs out and the turn runs once, on another server).
                # Never retried (RasaUnavailable): the client's own timeout (the turn may still be running and
                # finish: the caller hears the apology for it, as without retries) and any answer from a live
                # server, 200 or 500 (it has had its say on the turn).
                attempt += 1
                if attempt > MAX_RETRIES or deadline - loop.time() - RETRY_PAUSE_S < self._retry_min_s:
                    raise
                await asyncio.sleep(RETRY_PAUSE_S)
        if not isinstance(items, list):
            raise RasaUnavailable(f"unexpected reply from Rasa: {type(items).__name__}")
        return BotReply(items=[item for item in items if isinstance(item, dict)])

    async def tracker(self, sender: str) -> dict[str, Any]:
        """The conversation's tracker (latest_message, slots, events) from Rasa's HTTP API."""
        # Quoted: a sender id is caller-chosen text and must not change the path it lands in.
        path = f"/conversations/{quote(sender, safe='')}/tracker"
        return await self._request("GET", path, params={"token": self._token})

    async def healthy(self) -> bool:
        try:
            await self._request("GET", "/status", params={"token": self._token})
            return True
        except RasaUnavailable:
            return False

    async def _request(self, method: str, path: str, timeout: aiohttp.ClientTimeout | None = None,
                       **kwargs: Any) -> Any:
        session = await self._http()
        try:
            async with session.request(method, self._base_url + path, timeout=timeout or self._timeout,
                                       **kwargs) as resp:
                if resp.status in RETRY_STATUSES:
                    raise RasaGone(f"no Rasa server answered {method} {path}: {resp.status}")
                if resp.status >= 400:
                    raise RasaUnavailable(f"Rasa answered {resp.status} to {method} {path}")
                return await resp.json(content_type=None)
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, ConnectionResetError) as exc:
            # refused, or closed/reset before an answer (a ClientConnectorError is never a timeout: aiohttp raises
            # ServerTimeoutError/asyncio.TimeoutError for those)
            raise RasaGone(f"Rasa unreachable for {method} {path}: {exc!r}") from exc
        except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError) as exc:
            raise RasaUnavailable(f"Rasa unavailable for {method} {path}: {exc!r}") from exc
