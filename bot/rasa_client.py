"""HTTP client for the Rasa server: the call contract's REST channel plus the tracker API.

Used by the text console, the voice loop's Rasa bridge and the health check. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

from call_contract import dtmf_message

__all__ = ["BotReply", "RasaClient", "RasaUnavailable", "dtmf_message"]


class RasaUnavailable(Exception):
    """Rasa did not answer in time, refused the connection, or answered with an error status."""


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
                 session: aiohttp.ClientSession | None = None) -> None:
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
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

    async def send(self, sender: str, message: str, metadata: dict[str, Any] | None = None) -> BotReply:
        """Sends one caller message and returns the bot's reply; raises RasaUnavailable on timeout or error."""
        payload = {"sender": sender, "message": message, "metadata": metadata or {}}
        items = await self._request("POST", "/webhooks/rest/webhook", json=payload)
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

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        session = await self._http()
        try:
            async with session.request(method, self._base_url + path, timeout=self._timeout, **kwargs) as resp:
                if resp.status >= 400:
                    raise RasaUnavailable(f"Rasa answered {resp.status} to {method} {path}")
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError) as exc:
            raise RasaUnavailable(f"Rasa unavailable for {method} {path}: {exc!r}") from exc
