"""Issue 8 at the NLU level: the trained model, asked over Rasa's /model/parse, tells a backchannel from a yes and
hears the service words the voice digits grammar lets through at a card or PIN prompt (as Vosk writes them, with
spaces). The actions read the words too (actions/utterances.py); this checks the classifier the rules see.

Cheap: it reuses the session's Rasa server (tests/rasa_servers.py), one parse per case."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.rasa_servers import TOKEN, DialogueServers

pytestmark = pytest.mark.integration


def intent_of(servers: DialogueServers, text: str) -> str:
    request = urllib.request.Request(f"{servers.rasa_url}/model/parse?token={TOKEN}",
                                     data=json.dumps({"text": text}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())["intent"]["name"]


@pytest.mark.parametrize("text", ["嗯", "哦", "啊啊", "那个", "呃", "嗯嗯", "那个 嗯"])
def test_a_backchannel_is_a_filler_never_a_yes(dialogue_servers, text):
    assert intent_of(dialogue_servers, text) == "filler"


@pytest.mark.parametrize("text", ["是", "对", "确认", "可以", "没问题", "是的"])
def test_explicit_yes_words_are_affirm(dialogue_servers, text):
    assert intent_of(dialogue_servers, text) == "affirm"


@pytest.mark.parametrize("text", ["不", "不是", "不对"])
def test_no_words_are_deny(dialogue_servers, text):
    assert intent_of(dialogue_servers, text) == "deny"


@pytest.mark.parametrize(("text", "intent"), [
    ("人工", "human_agent"), ("转 人工", "human_agent"), ("绿色 通道", "green_channel"), ("取消", "cancel"),
    ("返回", "cancel"), ("重 听", "repeat"), ("再说 一遍", "repeat"),
])
def test_the_digit_prompt_service_words_as_the_recogniser_writes_them(dialogue_servers, text, intent):
    assert intent_of(dialogue_servers, text) == intent
