"""The call contract (call_contract.py): stdlib only in both venvs, and each fact as both sides must read it.

Runs in both venvs: `.venv/bin/python -m pytest -q tests/test_call_contract.py` and the same with .venv-rasa.
"""

from __future__ import annotations

import json
import math
import subprocess

import pytest

import call_contract as contract
from settings import REPO_ROOT, Settings, VoiceSettings

VENVS = (".venv", ".venv-rasa")
# What `import call_contract` adds to a fresh interpreter, as JSON: only the modules the import itself loaded.
NEW_MODULES = "import json, sys; before = set(sys.modules); import call_contract; " \
              "print(json.dumps(sorted(set(sys.modules) - before)))"
OWN_MODULES = {"call_contract", "settings"}


@pytest.mark.parametrize("venv", VENVS)
def test_importing_the_contract_loads_only_the_standard_library_and_settings(venv):
    python = REPO_ROOT / venv / "bin" / "python"
    if not python.exists():
        pytest.skip(f"{venv} is not built")
    done = subprocess.run([str(python), "-c", NEW_MODULES], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    stdlib = set(json.loads(subprocess.run(
        [str(python), "-c", "import json, sys; print(json.dumps(sorted(sys.stdlib_module_names)))"],
        capture_output=True, text=True, timeout=60).stdout))
    loaded = json.loads(done.stdout)
    foreign = [name for name in loaded if name.split(".")[0] not in stdlib | OWN_MODULES]
    assert "call_contract" in loaded and "settings" in loaded
    assert foreign == []


def test_keypad_keys_are_the_phone_keys_inside_rfc_4733s_sixteen():
    assert contract.KEYPAD_KEYS == frozenset("0123456789*#")
    assert contract.KEYPAD_KEYS < contract.DTMF_KEYS and contract.DTMF_KEYS - contract.KEYPAD_KEYS == set("ABCD")
    assert {contract.MENU_KEY, contract.END_KEY} <= contract.KEYPAD_KEYS


def test_rtp_event_code_table_covers_exactly_the_contracts_keys():
    from telephony.rtp.dtmf import EVENT_KEYS, key_for_event_code, key_to_event_code

    assert len(EVENT_KEYS) == len(contract.DTMF_KEYS) and frozenset(EVENT_KEYS) == contract.DTMF_KEYS
    # RFC 4733 §3.2 anchors: the digits are their own codes, then * # A-D
    assert [key_to_event_code(key) for key in "09*#AD"] == [0, 9, 10, 11, 12, 15]
    assert key_for_event_code(16) is None and key_for_event_code(-1) is None


def test_human_key_comes_from_settings_and_must_be_one_digit():
    assert contract.human_key(Settings()) == "0"
    assert contract.human_key(Settings.from_env({"HUMAN_KEY": "9"})) == "9"
    for bad in ("*", "#", "12", "", "٣", "A"):
        with pytest.raises(ValueError, match="HUMAN_KEY"):
            contract.human_key(Settings(voice=VoiceSettings(human_key=bad)))


def test_messages_the_gateway_sends():
    assert (contract.CALL_START, contract.HUMAN_AGENT, contract.TRANSFER_FAILED) == (
        "/call_start", "/human_agent", "/transfer_failed")
    assert contract.dtmf_message("135790") == '/dtmf{"digits":"135790"}'
    assert contract.dtmf_message(contract.MENU_KEY) == '/dtmf{"digits":"*"}'


@pytest.mark.parametrize("digits, valid", [
    ("1", True), ("1234#", True), ("*", True), ("9" * contract.MAX_KEYED_DIGITS, True),
    ("", False), ("9" * (contract.MAX_KEYED_DIGITS + 1), False), ("12a", False), ("A", False), ("١٢", False),
    (1234, False), (None, False),
])
def test_keyed_digits_are_1_to_32_phone_keys(digits, valid):
    assert contract.valid_keyed_digits(digits) is valid


def test_handoff_priority_follows_the_queue_and_every_queue_has_a_route():
    context = contract.handoff_context("c1", intent="complaint", verified=True, customer_ref="ref-1")
    assert context == {"intent": "complaint", "verified": True, "customer_ref": "ref-1", "green_channel": False,
                       "call_id": "c1"}
    elderly = contract.handoff(contract.QUEUE_ELDERLY, contract.REASON_GREEN_CHANNEL, context)
    assert elderly == {"event": "handoff", "queue": "elderly_priority", "priority": 9, "reason": "green_channel",
                       "context": context}
    assert [contract.priority_for(q) for q in contract.QUEUES] == [1, 9, 1, 1]
    routed = {entry.split("=", 1)[0] for entry in Settings().sip.routing.split(";") if entry}
    assert routed == set(contract.QUEUES)


def test_the_fallback_handoff_sends_a_general_agent_a_call_it_knows_nothing_about():
    assert contract.fallback_handoff("sip-1") == {
        "event": "handoff", "queue": "general", "priority": 1, "reason": "dialogue_unavailable",
        "context": {"intent": None, "verified": False, "customer_ref": None, "green_channel": False,
                    "call_id": "sip-1"},
    }


def test_event_builders():
    assert contract.hangup() == {"event": "hangup"}
    assert contract.speech_rate(0.8000001) == {"event": "speech_rate", "rate": 0.8}
    assert contract.expect_digits(6, True) == {"event": "expect", "input": "digits", "max_length": 6, "secure": True}
    assert contract.interruptible(False) == {"event": "interruptible", "value": False}


def test_parsers_read_what_the_builders_write():
    assert contract.event_kind(contract.hangup()) == "hangup"
    assert contract.parse_speech_rate(contract.speech_rate(contract.ELDERLY_SPEECH_RATE)) == 0.8
    assert contract.parse_expect(contract.expect_digits(4, False)) == contract.Expect("digits", 4, False)
    assert contract.parse_interruptible(contract.interruptible(False)) is False
    assert contract.is_secure_expect(contract.expect_digits(6, True))


@pytest.mark.parametrize("custom", [None, "handoff", [], {}, {"event": 3}, {"kind": "hangup"}])
def test_what_is_not_a_custom_event_has_no_kind(custom):
    assert contract.event_kind(custom) is None and not contract.is_secure_expect(custom)


@pytest.mark.parametrize("rate", ["fast", None, math.nan, math.inf, 0.0, 50, [1]])
def test_a_nonsense_speech_rate_keeps_the_normal_rate(rate):
    assert contract.parse_speech_rate({"event": "speech_rate", "rate": rate}) == contract.NORMAL_SPEECH_RATE


def test_a_malformed_expect_is_still_digits_with_no_length():
    assert contract.parse_expect({"event": "expect", "max_length": "many"}) == contract.Expect("digits", 0, False)
    assert contract.parse_expect({"event": "expect", "max_length": math.inf, "secure": "yes"}).max_length == 0
    assert not contract.is_secure_expect({"event": "expect", "secure": "yes"})  # only True itself is secure


def test_secure_input_is_masked():
    assert contract.mask_secure("/dtmf{\"digits\":\"135790\"}", True) == contract.SECURE_MASK == "****"
    assert contract.mask_secure("查余额", False) == "查余额"



# Rebuilds a custom event from what the receiver parses out of it: equal only if the payload is exactly the contract's.
REBUILD = {
    "expect": lambda c: contract.expect_digits(contract.parse_expect(c).max_length, contract.parse_expect(c).secure),
    "hangup": lambda c: contract.hangup(),
    "speech_rate": lambda c: contract.speech_rate(contract.parse_speech_rate(c)),
    "interruptible": lambda c: contract.interruptible(contract.parse_interruptible(c)),
}


def test_custom_payloads_written_in_the_domain_are_the_contracts_events():
    # YAML cannot import the builders, so the responses' payloads are checked against them instead.
    yaml = pytest.importorskip("yaml")
    checked = 0
    for path in sorted((REPO_ROOT / "domain").glob("*.yml")):
        responses = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("responses") or {}
        for name, variations in responses.items():
            for custom in (variation.get("custom") for variation in variations if "custom" in variation):
                kind = contract.event_kind(custom)
                assert kind in REBUILD and custom == REBUILD[kind](custom), f"{path.name} {name}: {custom}"
                checked += 1
    assert checked >= 3  # the card, PIN and goodbye prompts at least
