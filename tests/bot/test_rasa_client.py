"""RasaClient against a scripted Rasa: the contract payload, the tracker path, and clear failures."""

from __future__ import annotations

import pytest
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
    assert rasa.fake.received == [{"sender": "call-1", "message": "/call_start",
                                   "metadata": {"caller_number": "13800000001", "channel": "voice"}}]
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
