"""RasaClient against a scripted Rasa: the contract payload, the tracker path, and clear failures."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.rasa_client import RasaClient, RasaUnavailable, dtmf_message
from tests.bot.fake_rasa import TOKEN, FakeRasa


@pytest.fixture
async def rasa():
    fake = FakeRasa()
    server = TestServer(fake.app())
    await server.start_server()
    client = RasaClient(str(server.make_url("")), TOKEN, timeout_s=2)
    client.fake = fake
    yield client
    await client.close()
    await server.close()


async def test_send_posts_the_contract_and_splits_texts_and_events(rasa):
    reply = await rasa.send("call-1", "/call_start", {"caller_number": "13800000001", "channel": "voice"})
    [sent] = rasa.fake.received
    assert sent == {"sender": "call-1", "message": "/call_start",
                    "metadata": {"caller_number": "13800000001", "channel": "voice"}, "message_id": sent["message_id"]}
    assert len(sent["message_id"]) == 32 and sent["message_id"].isalnum()
    assert reply.texts[0].startswith("王先生")
    assert reply.events == [{"event": "speech_rate", "rate": 0.8}]


async def test_tracker_quotes_the_sender_into_one_path_segment(rasa):
    await rasa.send("a/b c", "再见")
    tracker = await rasa.tracker("a/b c")
    assert rasa.fake.tracker_requests == [("a/b c", TOKEN)]
    assert tracker["latest_message"]["text"] == "再见"


async def test_dead_server_raises_rasa_unavailable(unused_tcp_port):
    client = RasaClient(f"http://127.0.0.1:{unused_tcp_port}", timeout_s=1)
    try:
        with pytest.raises(RasaUnavailable):
            await client.send("x", "hi")
        assert await client.healthy() is False
    finally:
        await client.close()


def test_dtmf_message_is_compact_json():
    assert dtmf_message("135790") == '/dtmf{"digits":"135790"}'


class ScriptedRasa:
    """Answers the webhook with the scripted statuses in turn (then 200), recording every body it was sent."""

    REPLY = [{"recipient_id": "call-1", "text": "您的余额是52340.50元。"}]

    def __init__(self, statuses: list[int], delay_s: float = 0.0) -> None:
        self.statuses = list(statuses)
        self.delay_s = delay_s
        self.bodies: list[dict] = []

    async def webhook(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response(self.REPLY if status == 200 else {"error": status}, status=status)


@pytest.fixture
async def scripted():
    servers: list[TestServer] = []
    clients: list[RasaClient] = []

    async def start(statuses: list[int], timeout_s: float = 2, delay_s: float = 0.0) -> tuple[ScriptedRasa, RasaClient]:
        fake = ScriptedRasa(statuses, delay_s)
        app = web.Application()
        app.router.add_post("/webhooks/rest/webhook", fake.webhook)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        client = RasaClient(str(server.make_url("")), TOKEN, timeout_s=timeout_s)
        clients.append(client)
        return fake, client

    yield start
    for client in clients:
        await client.close()
    for server in servers:
        await server.close()


@pytest.mark.parametrize("statuses", [[502], [503], [502, 503]])
async def test_a_turn_no_server_answered_is_sent_again_with_the_same_message_id(scripted, statuses):
    """502/503 from the front: the Rasa server died mid-turn or none was up. The same turn goes again, and the
    channel recognises it by its message_id (answers it from the tracker if the first attempt was saved)."""
    fake, client = await scripted(statuses)
    reply = await client.send("call-1", "查余额", {"channel": "voice"})
    assert reply.texts == ["您的余额是52340.50元。"]
    assert len(fake.bodies) == len(statuses) + 1
    assert len({body["message_id"] for body in fake.bodies}) == 1
    assert all(body == fake.bodies[0] for body in fake.bodies)


async def test_a_given_message_id_is_sent(scripted):
    fake, client = await scripted([502])
    await client.send("call-1", "查余额", message_id="abc123")
    assert [body["message_id"] for body in fake.bodies] == ["abc123", "abc123"]


async def test_retries_are_bounded(scripted):
    fake, client = await scripted([502] * 10)
    with pytest.raises(RasaUnavailable):
        await client.send("call-1", "查余额")
    assert len(fake.bodies) == 3


async def test_every_turn_has_its_own_message_id(scripted):
    fake, client = await scripted([])
    await client.send("call-1", "查余额")
    await client.send("call-1", "查余额")
    assert fake.bodies[0]["message_id"] != fake.bodies[1]["message_id"]


@pytest.mark.parametrize("status", [500, 400, 504])
async def test_an_answer_from_a_live_server_is_not_retried(scripted, status):
    """A 500 is the Rasa server's own answer: it is alive and has had its say on the turn."""
    fake, client = await scripted([status])
    with pytest.raises(RasaUnavailable):
        await client.send("call-1", "查余额")
    assert len(fake.bodies) == 1


async def test_the_clients_own_timeout_is_not_retried(scripted):
    """The turn may still be running, and may complete: sending it again would only wait for it."""
    fake, client = await scripted([], timeout_s=0.3, delay_s=1.0)
    started = time.monotonic()
    with pytest.raises(RasaUnavailable):
        await client.send("call-1", "查余额")
    assert time.monotonic() - started < 0.9
    assert len(fake.bodies) == 1


async def test_no_retry_without_budget_for_a_whole_dialogue_turn(scripted):
    """A retry may wait out the dead server's lock lease and then run the turn: it is only sent while the budget
    left covers the dialogue's turn budget, so the gateway never gives up on a turn that Rasa then completes."""
    fake, client = await scripted([502], timeout_s=2, delay_s=1.2)  # 2 s budget: a retry needs 1 s left
    with pytest.raises(RasaUnavailable):
        await client.send("call-1", "查余额")
    assert len(fake.bodies) == 1


async def test_a_refused_connection_is_retried_within_the_budget(unused_tcp_port):
    client = RasaClient(f"http://127.0.0.1:{unused_tcp_port}", timeout_s=1)
    calls = 0
    original = client._request

    async def counting(*args, **kwargs):
        nonlocal calls
        calls += 1
        return await original(*args, **kwargs)

    client._request = counting  # type: ignore[method-assign]
    try:
        with pytest.raises(RasaUnavailable):
            await client.send("x", "hi")
        assert calls == 3
    finally:
        await client.close()


async def test_a_connection_dropped_before_any_answer_is_retried():
    """The Rasa server died with the request in hand and nothing in between answered: the connection closes."""
    bodies: list[bytes] = []

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        bodies.append(await reader.read(65536))
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = RasaClient(f"http://127.0.0.1:{port}", timeout_s=1)
    try:
        with pytest.raises(RasaUnavailable):
            await client.send("x", "hi")
        assert len(bodies) == 3
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
