"""The Mandarin NLU training data (data/nlu/) and its held-out split (tests/nlu/heldout.yml) keep their contract:
exactly the agreed intents, enough examples each, only the agreed entities, no leak between splits or from the
external evaluation set."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from call_contract import GATEWAY_ONLY_INTENTS

REPO_ROOT = Path(__file__).resolve().parents[2]
EXTERNAL_EVAL = REPO_ROOT.parent / "shared" / "eval" / "nlu_external.yml"
JIEBA_DICT = REPO_ROOT / "dialogue" / "jieba_dict" / "banking.txt"

SPOKEN_INTENTS = {
    "greet", "goodbye", "thank", "affirm", "deny", "cancel", "repeat", "speak_slower", "human_agent",
    "green_channel", "check_balance", "query_transactions", "credit_card_bill", "credit_card_repayment",
    "report_card_loss", "activate_card", "reset_password", "transfer_money", "branch_locator", "interest_rate",
    "exchange_rate", "complaint", "inform", "out_of_scope", "filler",
}
CONTRACT_INTENTS = set(GATEWAY_ONLY_INTENTS)  # sent as /intent{...}, never spoken (call_contract.py)
ENTITIES = {"card_last4", "amount", "currency", "location", "date_period", "account_type"}
MIN_TRAINING_EXAMPLES = 40
MIN_HELDOUT_EXAMPLES = 6

_ROLE_ENTITY = re.compile(r"\]\(([^)]+)\)")
_JSON_ENTITY = re.compile(r'\]\{[^}]*"entity"\s*:\s*"([^"]+)"')


@pytest.fixture(scope="module")
def training(split_nlu):
    return split_nlu.read_training()


@pytest.fixture(scope="module")
def heldout(split_nlu):
    return split_nlu.read_heldout()


def _count_by_intent(examples) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for ex in examples:
        counts[ex.intent] += 1
    return counts


def test_split_is_up_to_date(split_nlu):
    assert split_nlu.check() == []


def test_intents_are_exactly_the_spoken_ones(training, heldout):
    assert {ex.intent for ex in training} == SPOKEN_INTENTS
    assert {ex.intent for ex in heldout} == SPOKEN_INTENTS


def test_contract_intents_have_no_examples(training, heldout):
    assert not {ex.intent for ex in training + heldout} & CONTRACT_INTENTS


@pytest.mark.parametrize("intent", sorted(SPOKEN_INTENTS))
def test_every_intent_has_enough_examples(intent, training, heldout):
    assert _count_by_intent(training)[intent] >= MIN_TRAINING_EXAMPLES
    assert _count_by_intent(heldout)[intent] >= MIN_HELDOUT_EXAMPLES


def test_heldout_is_about_a_fifth(training, heldout):
    share = len(heldout) / (len(training) + len(heldout))
    assert 0.15 <= share <= 0.25


def test_entity_annotations_use_only_agreed_entities(training, heldout):
    used = set()
    for ex in training + heldout:
        assert ex.text.count("[") == ex.text.count("]"), f"unbalanced brackets: {ex.text}"
        used.update(_ROLE_ENTITY.findall(ex.text), _JSON_ENTITY.findall(ex.text))
    assert used == ENTITIES


def test_no_text_is_labelled_with_two_intents(split_nlu, training, heldout):
    intents_by_text: dict[str, set[str]] = defaultdict(set)
    for ex in training + heldout:
        intents_by_text[split_nlu.plain_text(ex.text)].add(ex.intent)
    conflicts = {text: intents for text, intents in intents_by_text.items() if len(intents) > 1}
    assert conflicts == {}


def test_examples_are_written_as_transcripts(split_nlu, training, heldout):
    """A recognizer emits no punctuation: examples with it would teach the model the wrong surface.
    (The text is checked without its entity markup: a role annotation is JSON, with commas.)"""
    punctuated = [ex.text for ex in training + heldout
                  if re.search(r"[，。？！、,.?!；;：…]", split_nlu.plain_text(ex.text))]
    assert punctuated == []


@pytest.mark.skipif(not EXTERNAL_EVAL.exists(), reason="external evaluation set not present")
def test_external_evaluation_lines_are_not_in_our_data(split_nlu, training, heldout):
    external = {split_nlu.plain_text(ex.text) for ex in split_nlu.read_intent_examples(EXTERNAL_EVAL)}
    ours = {split_nlu.plain_text(ex.text) for ex in training + heldout}
    assert external, "external set parsed to nothing"
    assert ours & external == set()


def test_rasa_yaml_files_parse():
    for path in sorted((REPO_ROOT / "data" / "nlu").glob("*.yml")) + [REPO_ROOT / "tests" / "nlu" / "heldout.yml"]:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert document["version"] == "3.1", path
        assert isinstance(document["nlu"], list) and document["nlu"], path


def _synonyms() -> dict[str, str]:
    document = yaml.safe_load((REPO_ROOT / "data" / "nlu" / "synonyms.yml").read_text(encoding="utf-8"))
    mapping = {}
    for block in document["nlu"]:
        for spoken in block["examples"].split("\n"):
            if spoken.strip():
                mapping[spoken.strip().removeprefix("- ")] = block["synonym"]
    return mapping


def test_currencies_map_to_iso_codes():
    synonyms = _synonyms()
    assert synonyms["美元"] == synonyms["美金"] == "USD"
    assert synonyms["港币"] == "HKD" and synonyms["日元"] == "JPY" and synonyms["欧元"] == "EUR"


def test_account_types_map_to_three_values():
    synonyms = _synonyms()
    assert synonyms["信用卡"] == "credit"
    assert synonyms["储蓄卡"] == synonyms["借记卡"] == "debit"
    assert synonyms["对公"] == "corporate"


def test_every_annotated_currency_has_a_synonym(training, heldout):
    synonyms = _synonyms()
    spoken = set()
    for ex in training + heldout:
        spoken.update(re.findall(r"\[([^\]]+)\]\(currency\)", ex.text))
    assert spoken - synonyms.keys() == set()


def test_jieba_dictionary_is_well_formed_and_has_the_banking_terms():
    words = {}
    for line_no, line in enumerate(JIEBA_DICT.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        assert 2 <= len(parts) <= 3 and parts[1].isdigit(), f"banking.txt:{line_no}: want 'word freq [tag]'"
        words[parts[0]] = int(parts[1])
    for term in ("挂失", "信用卡", "绿色通道", "光银岁月", "人工服务", "手机银行", "余额", "幺"):
        assert words.get(term, 0) > 0, term
    # numeral+unit compounds are removed (freq 0) so an amount can be annotated apart from 元/块
    assert words["五百块"] == 0 and words["一万元"] == 0
