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
