"""AmountExtractor: the `amount` entities of a message, DIET's guesses checked against the amount grammar.

A Rasa NLU component, after DIETClassifier in config.yml. DIET finds most amounts, but it also tags numbers that are
not money (an age, 「五八五八二零」 said digit by digit, 一年) and misses some that plainly are (「转100块」). The
dialogue never takes an amount from this entity: it reads the sentence with the same grammar (actions/cn_numbers.py,
`amount_in_context`). This component makes the NLU agree with it, so that `make nlu-report`'s amount F1 measures the
amounts the dialogue would understand:
- an amount expression, a number the words mark as money (两百块, 还三千, 负五百), is an amount, with its sign;
- a number the grammar says is never money (time, dates, rates, counts, card numbers, digit strings) is not;
- any other number keeps DIET's guess: a message that is only a number (「5000」) is an amount or a card depending on
  the question asked, which the dialogue knows and the sentence does not.

`rasa test nlu` reports this extractor on its own (AmountExtractor_report.json); `make nlu-report` prints its amount
row and gates on it.
"""

from __future__ import annotations

from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.shared.nlu.constants import ENTITIES, TEXT
from rasa.shared.nlu.training_data.message import Message

from actions.cn_numbers import amount_spans, never_amount_spans, start_with_sign

AMOUNT_ENTITY = "amount"
Span = tuple[int, int]


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR, is_trainable=False)
class AmountExtractor(GraphComponent, EntityExtractorMixin):
    """`amount` entities: the grammar's amount expressions, and DIET's other guesses unless they are never money."""

    @classmethod
    def create(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "AmountExtractor":
        return cls()

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            text = message.get(TEXT) or ""
            entities = message.get(ENTITIES, [])
            guessed = [(e["start"], e["end"]) for e in entities if e.get("entity") == AMOUNT_ENTITY]
            others = [e for e in entities if e.get("entity") != AMOUNT_ENTITY]
            amounts = [{"entity": AMOUNT_ENTITY, "start": start, "end": end, "value": text[start:end]}
                       for start, end in checked_amounts(text, guessed)]
            message.set(ENTITIES, others + self.add_extractor_name(amounts), add_to_output=True)
        return messages


def checked_amounts(text: str, guessed: list[Span]) -> list[Span]:
    """The amounts of `text`: its amount expressions, then the `guessed` spans that overlap none of them and no
    number that is never money (a sign just before one joins it: 「减三百」 is a negative amount)."""
    marked = amount_spans(text)
    never = never_amount_spans(text)
    kept = [_with_sign(text, span) for span in guessed
            if not any(_overlap(span, other) for other in marked + never)]
    return sorted(set(marked + kept))


def _overlap(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _with_sign(text: str, span: Span) -> Span:
    start, end = span
    return start_with_sign(text, start), end
