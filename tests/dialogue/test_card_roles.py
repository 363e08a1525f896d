"""CardRoleExtractor (dialogue/card_roles.py): in a transfer request the cards and their roles come from the words,
replacing DIET's card guesses; in other intents DIET's entities are left alone."""

from __future__ import annotations

from rasa.shared.nlu.training_data.message import Message

from dialogue.card_roles import CardRoleExtractor


def message(text: str, intent: str, entities: list[dict]) -> Message:
    return Message(data={"text": text, "intent": {"name": intent, "confidence": 0.9}, "entities": entities})


def diet(value: str, start: int, role: str | None = None, entity: str = "card_last4") -> dict:
    return {"entity": entity, "value": value, "start": start, "end": start + len(value), "extractor": "DIETClassifier",
            **({"role": role} if role else {})}


def test_a_transfer_gets_its_cards_from_the_words_with_their_roles():
    text = "从尾号九八七六转一千五到尾号五四三二"
    # what DIET said about this sentence in the held-out run: the first card cut in three, roles swapped
    guesses = [diet("九", 3, "destination"), diet("八七", 4, "source"), diet("六", 6, "destination"),
               diet("五四三二", 14, "source"), diet("一千五", 8, entity="amount")]
    [out] = CardRoleExtractor({"intents": ["transfer_money"]}).process([message(text, "transfer_money", guesses)])

    cards = [(e["value"], e["role"], e["start"], e["extractor"]) for e in out.get("entities") if e["entity"] == "card_last4"]
    assert cards == [("九八七六", "source", 3, "CardRoleExtractor"), ("五四三二", "destination", 14, "CardRoleExtractor")]
    assert [e["value"] for e in out.get("entities") if e["entity"] == "amount"] == ["一千五"]


def test_other_intents_keep_what_diet_found():
    guesses = [diet("幺二三四", 0)]
    [out] = CardRoleExtractor({"intents": ["transfer_money"]}).process([message("幺二三四", "inform", guesses)])
    assert out.get("entities") == guesses


def test_a_transfer_misheard_as_another_intent_still_gets_its_roles():
    text = "给尾号八八八八的卡转六百"
    [out] = CardRoleExtractor({"intents": ["transfer_money"], "words": ["转"]}).process(
        [message(text, "check_balance", [diet("八八八八", 3)])])
    assert [(e["value"], e["role"]) for e in out.get("entities")] == [("八八八八", "destination")]


def test_a_transfer_without_a_card_loses_diets_false_cards():
    guesses = [diet("3000", 1)]
    [out] = CardRoleExtractor({"intents": ["transfer_money"]}).process([message("转3000", "transfer_money", guesses)])
    assert out.get("entities") == []
