"""CallChannel input hardening and metadata, without a server (the live behaviour is in test_live_rasa.py)."""

from __future__ import annotations

import pytest

from dialogue.channel import MAX_TEXT_CHARS, CallChannel, apology_reply, clean_metadata, normalise_message

INTENTS = {"dtmf", "call_start", "human_agent", "out_of_scope", "check_balance", "restart", "session_start"}


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("", "/out_of_scope"),
        ("   \n\t ", "/out_of_scope"),
        (None, "/out_of_scope"),
        (12345, "/out_of_scope"),
        ("/dtmf{bad json", "/out_of_scope"),
        ('/dtmf{"digits":12}', "/out_of_scope"),
        ('/dtmf{"digits":"abc"}', "/out_of_scope"),
        ('/dtmf{"digits":""}', "/out_of_scope"),
        ('/dtmf{"digits":"1234","x":"y"}', "/out_of_scope"),
        ("/dtmf", "/out_of_scope"),
        ("/no_such_intent", "/out_of_scope"),
        ("/restart", "/out_of_scope"),
        ("/session_start", "/out_of_scope"),
        ("/drop table users;--", "/out_of_scope"),
        ('/dtmf{"digits":"135790#"}', '/dtmf{"digits": "135790#"}'),
        ('/dtmf{"digits":"*"}', '/dtmf{"digits": "*"}'),
        ("/call_start", "/call_start"),
        ("  我要查余额 ", "我要查余额"),
        ("'; DROP TABLE events; --", "'; DROP TABLE events; --"),
        ("😀😀😀", "😀😀😀"),
        ("查\x00余\x1b额", "查余额"),
    ],
)
def test_messages_are_normalised(raw, expected):
    assert normalise_message(raw, INTENTS) == expected


def test_long_text_is_truncated():
    assert len(normalise_message("查" * 10_000, INTENTS)) == MAX_TEXT_CHARS


def test_metadata_keeps_only_the_contract_keys():
    assert clean_metadata({"caller_number": "13800000001", "channel": "voice", "asr_available": False, "x": 1}) == {
        "caller_number": "13800000001", "channel": "voice", "asr_available": False,
    }
    assert clean_metadata("not a dict") == {}
    assert clean_metadata({"caller_number": "1" * 500})["caller_number"] == "1" * 32


def test_channel_is_the_rest_channel():
    assert CallChannel.name() == "rest"
    assert CallChannel.from_credentials(None).timeout_s == 3.0


def test_apology_reply_is_a_spoken_apology_and_a_handoff():
    reply = apology_reply("call-9", {"elderly": True, "verified": True, "customer_ref": "C1001"})
    assert "抱歉" in reply[0]["text"]
    handoff = reply[1]["custom"]
    assert handoff["event"] == "handoff" and handoff["queue"] == "elderly_priority" and handoff["priority"] == 9
    assert handoff["reason"] == "action_unavailable" and handoff["context"]["call_id"] == "call-9"


def test_the_apology_speaks_the_trainers_wording_from_the_domain():
    from types import SimpleNamespace

    from dialogue.channel import APOLOGY_RESPONSE, UNAVAILABLE_APOLOGY, _apology_text

    def request(responses):
        domain = SimpleNamespace(responses=responses)
        return SimpleNamespace(app=SimpleNamespace(ctx=SimpleNamespace(agent=SimpleNamespace(domain=domain))))

    assert _apology_text(request({APOLOGY_RESPONSE: [{"text": "抱歉，马上为您转人工。"}]})) == "抱歉，马上为您转人工。"
    assert _apology_text(request({})) == UNAVAILABLE_APOLOGY  # a model without the response still apologises
    assert _apology_text(SimpleNamespace(app=None)) == UNAVAILABLE_APOLOGY
    assert apology_reply("call-1", {}, "改过的话。")[0]["text"] == "改过的话。"


# --- a turn is run at most once: a repeat (same message_id) is answered from the stored conversation ---

BALANCE_EVENT = {"event": "expect", "input": "digits", "max_length": 6, "secure": True}


def stored_conversation():
    from rasa.shared.core.events import ActionExecuted, BotUttered, UserUttered

    return [
        ActionExecuted("action_listen"),
        UserUttered("/call_start", message_id="turn-call-start-1"),
        BotUttered("您好，这里是银行热线。"),
        ActionExecuted("action_listen"),
        UserUttered("我要转账", message_id="turn-transfer-0002"),
        BotUttered("已为您转账500元。\n\n还有什么可以帮您？", metadata={"utter_action": "utter_transfer_done"}),
        BotUttered(None, data={"custom": BALANCE_EVENT}),
        ActionExecuted("action_listen"),
        UserUttered("再见", message_id="turn-goodbye-0003"),
        BotUttered("再见。"),
        ActionExecuted("action_listen"),
    ]


@pytest.fixture
async def conversation():
    from types import SimpleNamespace

    from rasa.core.lock_store import InMemoryLockStore
    from rasa.core.tracker_store import InMemoryTrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.trackers import DialogueStateTracker

    store = InMemoryTrackerStore(Domain.empty())
    await store.save(DialogueStateTracker.from_events("call-7", stored_conversation()))
    agent = SimpleNamespace(tracker_store=store, lock_store=InMemoryLockStore(), domain=None)
    request = SimpleNamespace(app=SimpleNamespace(ctx=SimpleNamespace(agent=agent)))
    turns: list = []

    async def rasa_turn(message) -> None:
        turns.append(message)
        await message.output_channel.send_text_message(message.sender_id, "新的回复。")

    return SimpleNamespace(request=request, agent=agent, turns=turns, rasa_turn=rasa_turn)


async def test_a_repeated_turn_is_answered_from_the_tracker_and_not_run_again(conversation):
    """The gateway sent the turn again because the server that ran it died after saving it: the caller hears what
    that turn said (texts split as Rasa's collector splits them, custom events as they were), and the money moves
    once."""
    reply = await CallChannel()._handle(conversation.rasa_turn, conversation.request, "call-7", "我要转账", {},
                                        message_id="turn-transfer-0002")
    assert conversation.turns == []
    assert reply == [
        {"recipient_id": "call-7", "text": "已为您转账500元。"},
        {"recipient_id": "call-7", "text": "还有什么可以帮您？"},
        {"recipient_id": "call-7", "custom": BALANCE_EVENT},
    ]


async def test_the_last_turn_is_replayed_up_to_the_end_of_the_conversation(conversation):
    reply = await CallChannel()._handle(conversation.rasa_turn, conversation.request, "call-7", "再见", {},
                                        message_id="turn-goodbye-0003")
    assert conversation.turns == [] and reply == [{"recipient_id": "call-7", "text": "再见。"}]


async def test_a_repeat_of_a_call_start_does_not_restart_the_conversation(conversation):
    reply = await CallChannel()._handle(conversation.rasa_turn, conversation.request, "call-7", "/call_start", {},
                                        message_id="turn-call-start-1")
    assert reply == [{"recipient_id": "call-7", "text": "您好，这里是银行热线。"}]
    tracker = await conversation.agent.tracker_store.retrieve("call-7")
    assert len(tracker.events) == len(stored_conversation())  # no Restarted


async def test_a_new_message_id_runs_the_turn_with_that_id(conversation):
    reply = await CallChannel()._handle(conversation.rasa_turn, conversation.request, "call-7", "查余额", {},
                                        message_id="turn-balance-0004")
    assert [m.message_id for m in conversation.turns] == ["turn-balance-0004"]  # Rasa stores it on the UserUttered
    assert reply == [{"recipient_id": "call-7", "text": "新的回复。"}]


async def test_a_turn_without_message_id_runs(conversation):
    await CallChannel()._handle(conversation.rasa_turn, conversation.request, "call-7", "查余额", {})
    assert len(conversation.turns) == 1


@pytest.mark.parametrize("hostile", ["turn-transfer-0002' OR '1'='1", "../../turn-transfer-0002", "a" * 65, "短",
                                     "x\nturn-transfer-0002", 12345678, {"id": "turn-transfer-0002"}, ""])
async def test_a_hostile_message_id_is_ignored(conversation, hostile):
    from dialogue.channel import clean_message_id

    assert clean_message_id(hostile) is None
    await CallChannel()._handle(conversation.rasa_turn, conversation.request, "call-7", "我要转账", {},
                                message_id=hostile)
    assert len(conversation.turns) == 1 and conversation.turns[0].message_id != hostile  # Rasa's own id


async def test_a_repeat_whose_turn_stored_no_reply_gets_the_apology(conversation):
    from rasa.shared.core.events import UserUttered

    tracker = await conversation.agent.tracker_store.retrieve("call-7")
    tracker.update(UserUttered("查余额", message_id="turn-silent-00005"))
    await conversation.agent.tracker_store.save(tracker)
    reply = await CallChannel()._handle(conversation.rasa_turn, conversation.request, "call-7", "查余额", {},
                                        message_id="turn-silent-00005")
    assert conversation.turns == [] and reply[1]["custom"]["event"] == "handoff"


async def test_the_look_for_a_repeat_waits_for_the_conversations_lock(conversation):
    """A turn still holding the conversation (or a dead server's lease) is waited for: its saved outcome is seen."""
    import asyncio

    from rasa.shared.core.events import BotUttered, UserUttered

    channel = CallChannel()
    async with conversation.agent.lock_store.lock("call-7"):
        repeat = asyncio.ensure_future(channel._handle(conversation.rasa_turn, conversation.request, "call-7",
                                                       "查余额", {}, message_id="turn-balance-0006"))
        await asyncio.sleep(0.2)
        assert not repeat.done()
        tracker = await conversation.agent.tracker_store.retrieve("call-7")
        tracker.update(UserUttered("查余额", message_id="turn-balance-0006"))
        tracker.update(BotUttered("余额为52340.50元。"))
        await conversation.agent.tracker_store.save(tracker)
    reply = await repeat
    assert conversation.turns == [] and reply == [{"recipient_id": "call-7", "text": "余额为52340.50元。"}]
