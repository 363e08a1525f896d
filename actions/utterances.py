"""What the caller's words mean beyond the classified intent: a request for a human, a backchannel, an explicit
yes or no, and which card is the source and which the destination.

These read the words themselves because the classifier's mistakes here cost money or trap a caller: 「嗯」 must
never confirm a transfer, and 「…帮我转人工」 must reach a person whatever else the sentence says.
"""

from __future__ import annotations

import re
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
_CARD_WORDS = r"(?:我的|我)?(?:尾号|后四位|卡号后四位|尾数)?(?:是|为)?"
_DIGIT = "[零〇洞幺一二两三四五六七八九拐勾0-9]"
_SOURCE = re.compile(rf"(?:从|用|由)\s*{_CARD_WORDS}\s*({_DIGIT}{{4}})(?!{_DIGIT})")
_DESTINATION = re.compile(rf"(?:到|往|向|给|转进|转入|存进)\s*{_CARD_WORDS}\s*({_DIGIT}{{4}})(?!{_DIGIT})")


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
        role = entity.get("role") if entity.get("role") in ("source", "destination") else "source"
        if digits and role not in found:
            found[role] = digits
    text = message.get("text") or ""
    if isinstance(text, str) and not text.startswith("/"):
        for role, pattern in (("source", _SOURCE), ("destination", _DESTINATION)):
            match = pattern.search(text)
            if match and extract_digits(match.group(1), 4):
                found[role] = extract_digits(match.group(1), 4)  # the words beat a classifier's guess
    if found.get("source") and found.get("source") == found.get("destination"):
        found.pop("source")  # one card said once cannot be both: keep it as the destination the words named
    return found
