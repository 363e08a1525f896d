"""Which cards a sentence names by their last four digits, and which is paid from (source) or into (destination).

Money must never go to the wrong card, so the rules lean to asking: a number that could be something else (an
amount, a date, a phone tail, a code, part of a full card number) is not a card, a card said in a negation
(「不要从四三二一转」) is not a card, and two different cards claiming one role leave that role open, so the form asks.

A run of exactly four digits is a card when the words around it say so: a card word before it (尾号, 后四位, 卡号…)
or after it (的卡, 那张), or a direction word before it. The direction words give the role:
    source       从 由 用 自 把 付款 转出 扣款         从尾号四三二一… / 付款账户尾号…
    destination  到 往 向 给 进 收款 转入 转进 存进 对方  …到后四位九九九九 / 收款人尾号…
and 转入 / 转出 right after the digits (幺二三四转入). An unmarked card is the source, or the destination once the
source is named. The NLU (dialogue/card_roles.py) and the actions (`cards_by_role`) both read cards this way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from actions.cn_numbers import DIGIT_CHARS, extract_digits
from actions.utterances import PUNCTUATION_CLASS

SOURCE, DESTINATION = "source", "destination"

SOURCE_MARKERS = ("从", "由", "用", "自", "把", "付款", "转出", "扣款")
DESTINATION_MARKERS = ("到", "往", "向", "给", "进", "收款", "转入", "转进", "存进", "对方")
# Said right after a direction word: 收款[用|卡|账户|人][是]尾号…
MARKER_NOUNS = ("用", "卡", "账户", "账号", "卡号", "人", "方")
SOURCE_AFTER = ("转出", "扣款", "付款")
DESTINATION_AFTER = ("转入", "转进", "收款")
NEGATIONS = ("不要", "不用", "不是", "别", "甭", "不")
# Four digits after these are not a card's: 手机尾号五六七八, 验证码1234.
NOT_CARD_WORDS = ("手机", "电话", "号码", "手机号", "验证码", "密码", "身份证", "工号", "车牌", "房间", "门牌")

_FULL_WIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")  # one to one: spans stay where they were
_DIGIT = f"[{DIGIT_CHARS}]"
_FOUR_DIGITS = re.compile(rf"(?<!{_DIGIT}){_DIGIT}{{4}}(?!{_DIGIT})")
_CLAUSE_BREAK = re.compile(PUNCTUATION_CLASS)
_CARD_NOUN_BEFORE = re.compile(r"(?:的|我的|我|那张|这张)?(?:卡号后四位|后四位|末四位|末尾四个数|尾号|尾数|卡号)(?:是|为)?$")
_FILLER_BEFORE = re.compile(r"(?:的|我的|我|那张|这张|卡)?(?:是|为)?$")
_CARD_WORD_AFTER = re.compile(r"^(?:的卡|那张|这张|卡|账户|的账户|里)")
# After the digits: units make an amount or a date (3000块, 2025年, 5号), a decimal point an amount (1234.5元).
_NOT_A_CARD_AFTER = re.compile(rf"^(?:块|元|圆|万|千|百|十|年|月|号|日|点|分|秒|岁|笔|次|个|%|％|rmb|RMB|[.点]{_DIGIT})")
# Before the digits: a number unit makes it part of a longer number (1万2000).
_NOT_A_CARD_BEFORE = re.compile(r"[十百千万亿]$")
# Three or more digit groups in a row are a whole card (or phone) number, read out in groups: 6222 0212 3456 4321.
_DIGIT_GROUPS = re.compile(rf"{_DIGIT}+(?:\s+{_DIGIT}+){{2,}}")
WINDOW = 16  # characters looked at around a run: the card words and markers are short, long texts stay linear


@dataclass(frozen=True)
class CardMention:
    """A card's last four digits as said, where, and the role the words give it (None: unmarked or ambiguous)."""

    start: int
    end: int
    spoken: str
    role: str | None

    @property
    def digits(self) -> str | None:
        return extract_digits(self.spoken, 4)


def card_mentions(text: str | None) -> list[CardMention]:
    """The cards a sentence names, in order, each with the role its words mark (None when unmarked)."""
    if not isinstance(text, str) or text.startswith("/"):
        return []
    said, text = text, text.translate(_FULL_WIDTH_DIGITS)
    whole_numbers = [m.span() for m in _DIGIT_GROUPS.finditer(text)]
    mentions = []
    for match in _FOUR_DIGITS.finditer(text):
        before = text[max(0, match.start() - WINDOW):match.start()]
        after = text[match.end():match.end() + WINDOW]
        if (_NOT_A_CARD_AFTER.match(after) or _NOT_A_CARD_BEFORE.search(before)
                or any(start <= match.start() < end for start, end in whole_numbers)):
            continue
        is_card, role = _read_words_around(_CLAUSE_BREAK.split(before)[-1], after)
        if is_card:
            mentions.append(CardMention(match.start(), match.end(), said[match.start():match.end()], role))
    return mentions


def transfer_roles(mentions: list[CardMention]) -> list[CardMention]:
    """Roles as a transfer request means them: an unmarked card is the source (「尾号一二三四的卡转五百」 pays from
    it), or the destination once the words named the source. Two different cards in one role leave it open."""
    taken = {m.role for m in mentions if m.role}
    resolved = []
    for mention in mentions:
        if mention.role is None:
            mention = replace(mention, role=SOURCE if SOURCE not in taken else DESTINATION)
            taken.add(mention.role)
        resolved.append(mention)
    ambiguous = {role for role in (SOURCE, DESTINATION)
                 if len({m.digits for m in resolved if m.role == role}) > 1}
    return [replace(m, role=None) if m.role in ambiguous else m for m in resolved]


def cards_by_role(message: dict[str, Any]) -> dict[str, str]:
    """{"source": "4321", "destination": "9999"} as far as the message tells them apart.

    The words decide when they name a card (card_mentions); otherwise the classifier's entities do, an entity
    without a role being the source. One card said once cannot be both: it stays the destination.
    """
    mentions = transfer_roles(card_mentions(message.get("text")))
    if mentions:
        found = {m.role: m.digits for m in mentions if m.role and m.digits}
    else:
        found = {}
        for entity in message.get("entities") or []:
            digits = extract_digits(str(entity.get("value") or ""), 4) if entity.get("entity") == "card_last4" else None
            role = entity.get("role") if entity.get("role") in (SOURCE, DESTINATION) else SOURCE
            if digits:
                found.setdefault(role, digits)
    if found.get(SOURCE) and found.get(SOURCE) == found.get(DESTINATION):
        found.pop(SOURCE)
    return found


def _read_words_around(clause: str, after: str) -> tuple[bool, str | None]:
    """Whether the words make a four-digit run a card (not in a negation), and the role they give it (None:
    unmarked). `clause`: the words before the run in its clause; `after`: the words after it."""
    card_noun = _CARD_NOUN_BEFORE.search(clause)
    rest = clause[:card_noun.start()] if card_noun else _FILLER_BEFORE.sub("", clause, count=1)
    if rest.endswith(NOT_CARD_WORDS):
        return False, None
    marker, role = _direction_before(rest)
    if rest[:len(rest) - len(marker)].endswith(NEGATIONS):
        return False, None  # 「不要从四三二一转」「别往八八八八转」「不是八八八八」
    card_word_after = _CARD_WORD_AFTER.match(after)
    if role is None:
        role = _direction_after(after[card_word_after.end():] if card_word_after else after)
    # a bare number is as likely an amount as a card (转账1000到…): not a card, so the form asks
    return bool(card_noun or card_word_after or marker or role), role


def _direction_before(rest: str) -> tuple[str, str | None]:
    """The direction word `rest` ends with, with its role ("", None when none). The longest wins: 收款用 is a
    destination whatever 用 alone would say."""
    best = ("", None)
    for markers, role in ((SOURCE_MARKERS, SOURCE), (DESTINATION_MARKERS, DESTINATION)):
        for marker in markers:
            for said in (marker + noun + copula for noun in ("", *MARKER_NOUNS) for copula in ("", "是", "为")):
                if rest.endswith(said) and len(said) > len(best[0]):
                    best = (said, role)
    return best


def _direction_after(after: str) -> str | None:
    if after.startswith(DESTINATION_AFTER):
        return DESTINATION
    return SOURCE if after.startswith(SOURCE_AFTER) else None
