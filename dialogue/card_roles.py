"""CardRoleExtractor: in a transfer request, which card is paid from and which paid to, read from the words.

A Rasa NLU component, after DIETClassifier in config.yml. DIET learns the card_last4 entity well enough to find
digits, but with a few hundred examples it confuses the two roles (source / destination), and Jieba cuts a run of
Chinese digits into pieces that DIET then tags apart (九/八七/六). Money must never go to the wrong card, so in a
message about moving money (a configured intent, or a configured word such as 转, for when the intent itself was
misheard) this component replaces DIET's card_last4 entities by the cards the sentence names, with the
role its direction words give each (从/用/由/付款… source; 到/往/向/给/收款/转入… destination; unmarked: the
source, or the destination once the source is named). The grammar is actions/card_grammar.py, the one place the
action server also reads it from. Other messages keep DIET's entities: a card said alone, in reply to 「请说卡号后四位」,
has no role, and the form maps it by the slot it asked for.

`rasa test nlu` reports this extractor on its own (CardRoleExtractor_report.json); `make nlu-report` prints its
card_last4 rows by role.
"""

from __future__ import annotations

from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.shared.nlu.constants import ENTITIES, INTENT, INTENT_NAME_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

from actions.card_grammar import card_mentions, transfer_roles

CARD_ENTITY = "card_last4"


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR, is_trainable=False)
class CardRoleExtractor(GraphComponent, EntityExtractorMixin):
    """card_last4 entities with their role, in messages of `intents` or with one of `words`."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"intents": ["transfer_money"], "words": ["转", "汇", "划"]}

    def __init__(self, config: dict[str, Any]) -> None:
        self.intents = frozenset(config.get("intents") or ())
        self.words = tuple(config.get("words") or ())

    @classmethod
    def create(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "CardRoleExtractor":
        return cls(config)

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            if self._moves_money(message):
                others = [e for e in message.get(ENTITIES, []) if e.get("entity") != CARD_ENTITY]
                message.set(ENTITIES, others + self.add_extractor_name(self._cards(message.get(TEXT))),
                            add_to_output=True)
        return messages

    def _moves_money(self, message: Message) -> bool:
        text = message.get(TEXT) or ""
        return (message.get(INTENT) or {}).get(INTENT_NAME_KEY) in self.intents or any(w in text for w in self.words)

    @staticmethod
    def _cards(text: str | None) -> list[dict[str, Any]]:
        # no role when two different cards claimed one: the form asks rather than guess
        return [{"entity": CARD_ENTITY, "start": m.start, "end": m.end, "value": m.spoken, **({"role": m.role} if m.role else {})}
                for m in transfer_roles(card_mentions(text))]
