"""What the caller's words mean beyond the classified intent: a request for a human, a backchannel, an explicit
yes or no, and which card is the source and which the destination.

These read the words themselves because the classifier's mistakes here cost money or trap a caller: 「嗯」 must
never confirm a transfer, and 「…帮我转人工」 must reach a person whatever else the sentence says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from actions.cn_numbers import extract_digits

HUMAN_AGENT = "human_agent"
GREEN_CHANNEL = "green_channel"
# 人公 is how ASR often writes 人工; 客服 covers 找客服 / 转客服.
HUMAN_WORDS = ("人工", "人公", "客服", "真人", "接线员")
GREEN_WORDS = ("绿色通道",)
# Backchannels and hesitations: alone, an utterance made of these says nothing.
FILLER_WORDS = ("那个", "这个", "就是", "嗯", "哦", "啊", "呃", "额", "唔", "噢", "喔", "哎", "唉", "呀", "嘿", "哼", "呣", "呐")
_PUNCTUATION = re.compile(r"[\s,.;:!?…~、，。；：！？～]+")
# Explicit yes words (issue 8): 是 / 对 / 确认 / 可以 / 没问题 / 好的, and their plain variants.
YES_WORDS = ("是", "对", "确认", "确定", "可以", "没问题", "好的", "好", "行", "没错", "同意", "办吧", "ok", "OK")
_NEGATED = re.compile(r"(?:不|别|甭)(?:是|对|确认|确定|可以|行|好|同意|要|用|办|转)|没有|算了|取消|否")
_DIGIT = "[零〇洞幺一二两三四五六七八九拐勾0-9]"
# Four digits, no more, no fewer: a card's last four (a PIN or an ID tail is longer, an amount has units).
_FOUR_DIGITS = re.compile(rf"(?<!{_DIGIT}){_DIGIT}{{4}}(?!{_DIGIT})")
# Words between a direction marker and the digits: 从[我的卡号后四位是]4321, 到[尾号为]9999, 往[末四位]5310.
_CARD_WORDS_BEFORE = re.compile(r"(?:我的|我|那张|这张|的)?(?:卡号后四位|后四位|末四位|尾号|尾数|末尾四个数|卡号|卡)?(?:是|为)?$")
_CARD_WORDS_AFTER = re.compile(r"^(?:的卡|那张|这张|卡|的钱|里)")
_CARD_WORD_BEFORE = re.compile(r"(?:后四位|末四位|尾号|尾数|末尾四个数|卡号)(?:是|为)?$")
_UNITS_AFTER = re.compile(r"^(?:块|元|圆|万|千|百|rmb|RMB)")
# What marks a card as the one paid from, or paid to. Longer words first: 转入 must not read as 入 or 转.
SOURCE_MARKERS = ("付款", "转出", "扣款", "从", "由", "用", "自", "把")
DESTINATION_MARKERS = ("收款", "转入", "转进", "存进", "到", "往", "向", "给", "进")
SOURCE, DESTINATION = "source", "destination"


@dataclass(frozen=True)
class CardMention:
    """A card's last four digits as said, where, and the role the words around it give it (None: unmarked)."""

    start: int
    end: int
    spoken: str
    role: str | None


def human_request(text: str | None) -> str | None:
    """"green_channel" or "human_agent" when the words ask for a person (「不记得密码了帮我转人工」), else None."""
    if not isinstance(text, str) or text.startswith("/"):
        return None
    text = _PUNCTUATION.sub("", text)  # the recogniser writes 「绿色 通道」 with a space
    if any(word in text for word in GREEN_WORDS):
        return GREEN_CHANNEL
    return HUMAN_AGENT if any(word in text for word in HUMAN_WORDS) else None


def is_filler(text: str | None) -> bool:
    """True when the utterance is only backchannels and hesitations (「嗯」「哦哦」「那个…」)."""
    if not isinstance(text, str):
        return False
    rest = _PUNCTUATION.sub("", text)
    if not rest:
        return False
    for word in FILLER_WORDS:
        rest = rest.replace(word, "")
    return rest == ""


def explicit_answer(text: str | None) -> bool | None:
    """True for an explicit yes (是/对/确认/可以/没问题/好的…), False for a no (不/不是/算了/取消…), else None."""
    if not isinstance(text, str):
        return None
    words = _PUNCTUATION.sub("", text)
    if not words or is_filler(words):
        return None
    if _NEGATED.search(words.replace("没问题", "").replace("没错", "")) or words.startswith(("不", "别")):
        return False
    return True if any(word in words for word in YES_WORDS) else None


def card_mentions(text: str | None) -> list[CardMention]:
    """The cards a sentence names by their last four digits, in order, each with the role its words mark.

    A run of exactly four digits is a card when a card word or a direction marker comes before it (尾号四三二一,
    从4321, 到五六七八) or a card word after it (四三二一那张卡). A bare run followed by a unit is an amount
    (转3000块); a bare run after 转 alone is an amount too (转3000), since nobody says a card that way.
    """
    if not isinstance(text, str) or text.startswith("/"):
        return []
    mentions = []
    for match in _FOUR_DIGITS.finditer(text):
        before, after = text[:match.start()], text[match.end():]
        if _UNITS_AFTER.match(after):
            continue
        role = _marked_role(before)
        card_word = _CARD_WORD_BEFORE.search(before) is not None or _CARD_WORDS_AFTER.match(after) is not None
        if role is None and not card_word and before.rstrip().endswith("转"):
            continue
        mentions.append(CardMention(match.start(), match.end(), match.group(), role))
    return mentions


def transfer_roles(mentions: list[CardMention]) -> list[CardMention]:
    """Roles in a transfer request: an unmarked card is the source (「尾号一二三四的卡转五百」 pays from it) unless
    the words already named the source, then it is the destination."""
    taken = {m.role for m in mentions if m.role}
    resolved = []
    for mention in mentions:
        if mention.role is None:
            role = SOURCE if SOURCE not in taken else DESTINATION
            taken.add(role)
            mention = replace(mention, role=role)
        resolved.append(mention)
    return resolved


def _marked_role(before: str) -> str | None:
    """The role a direction marker right before the card words gives (从[尾号]…, 到[后四位是]…, 收款[卡是]…).
    The longest marker wins: 收款用 is a destination, whatever 用 alone would say."""
    rest = re.split(r"[\s,.;:!?，。；：！？、]", before)[-1]
    while (shorter := _CARD_WORDS_BEFORE.sub("", rest, count=1)) != rest:
        rest = shorter
    found = [(len(marker) + len(trailing), role)
             for trailing in ("", "用", "卡")  # 收款用尾号… / 付款卡是…
             for markers, role in ((SOURCE_MARKERS, SOURCE), (DESTINATION_MARKERS, DESTINATION))
             for marker in markers if rest.endswith(marker + trailing)]
    if found:
        return max(found)[1]
    return None


def cards_by_role(message: dict[str, Any]) -> dict[str, str]:
    """{"source": "4321", "destination": "9999"} as far as the message tells them apart.

    The classifier's entity roles come first; the sentence's own markers (从…, 到/往/向/给…) fill what it missed.
    An unmarked card is the source: in 「尾号一二三四的卡转五百」 the card named is the one paid from.
    """
    found: dict[str, str] = {}
    for entity in message.get("entities") or []:
        if entity.get("entity") != "card_last4":
            continue
        digits = extract_digits(str(entity.get("value") or ""), 4)
        role = entity.get("role") if entity.get("role") in (SOURCE, DESTINATION) else SOURCE
        if digits and role not in found:
            found[role] = digits
    for mention in card_mentions(message.get("text")):
        if mention.role and extract_digits(mention.spoken, 4):
            found[mention.role] = extract_digits(mention.spoken, 4)  # the words beat a classifier's guess
    if found.get(SOURCE) and found.get(SOURCE) == found.get(DESTINATION):
        found.pop(SOURCE)  # one card said once cannot be both: keep it as the destination the words named
    return found
