"""AmountExtractor (dialogue/amounts.py): DIET's amount guesses checked against the amount grammar the dialogue uses
(actions/cn_numbers.py): marked amounts are added, numbers that are never money dropped, bare numbers left to DIET."""

from __future__ import annotations

from rasa.shared.nlu.training_data.message import Message

from dialogue.amounts import AmountExtractor, checked_amounts


def extracted(text: str, guesses: list[dict]) -> list[tuple[str, str, str | None]]:
    message = Message(data={"text": text, "intent": {"name": "transfer_money", "confidence": 0.9}, "entities": guesses})
    [out] = AmountExtractor().process([message])
    return [(e["entity"], e["value"], e.get("extractor")) for e in out.get("entities")]


def diet(text: str, value: str, entity: str = "amount") -> dict:
    start = text.index(value)
    return {"entity": entity, "value": value, "start": start, "end": start + len(value), "extractor": "DIETClassifier"}


def test_a_marked_amount_diet_missed_is_added_and_other_entities_are_kept():
    text = "嗯 从4321转100块到9999"
    guesses = [diet(text, "4321", "card_last4"), diet(text, "9999", "card_last4")]
    assert extracted(text, guesses) == [("card_last4", "4321", "DIETClassifier"), ("card_last4", "9999", "DIETClassifier"),
                                        ("amount", "100", "AmountExtractor")]


def test_numbers_that_are_never_money_lose_diets_amount():
    for text, guess in [("一年定期利率是多少", "一"), ("五八五八二零", "五八五八二零"), ("尾号四三二一的卡", "四三二一"),
                        ("我68岁了", "68"), ("在海淀那一块", "一")]:
        assert extracted(text, [diet(text, guess)]) == [], text


def test_a_sign_belongs_to_the_amount():
    assert extracted("减三百", [diet("减三百", "三百")]) == [("amount", "减三百", "AmountExtractor")]
    assert extracted("负五百", []) == [("amount", "负五百", "AmountExtractor")]
    assert extracted("-200", []) == [("amount", "-200", "AmountExtractor")]


def test_the_grammar_span_wins_over_an_overlapping_guess():
    text = "帮我还三千二百八十块钱"
    assert checked_amounts(text, [(3, 6)]) == [(3, 9)]


def test_a_bare_number_is_diets_call():
    assert checked_amounts("5000", [(0, 4)]) == [(0, 4)]
    assert checked_amounts("5000", []) == []
    assert checked_amounts("", []) == []


def test_a_minus_inside_a_number_is_no_sign():
    text = "电话138-1234-5678"
    guess = (text.index("1234"), text.index("1234") + 4)
    assert checked_amounts(text, [guess]) == [guess]
    assert checked_amounts("退款-200", [(3, 6)]) == [(2, 6)]
