"""What the caller's words mean beyond the classified intent: a request for a human, a backchannel, an explicit
yes or no. (Which card is the source and which the destination: actions/card_grammar.py.)

These read the words themselves because the classifier's mistakes here cost money or trap a caller: 「嗯」 must
never confirm a transfer, and 「…帮我转人工」 must reach a person whatever else the sentence says.
"""

from __future__ import annotations

import re

HUMAN_AGENT = "human_agent"
GREEN_CHANNEL = "green_channel"
# 人公 is how ASR often writes 人工; 客服 covers 找客服 / 转客服.
HUMAN_WORDS = ("人工", "人公", "客服", "真人", "接线员")
GREEN_WORDS = ("绿色通道",)
# Backchannels and hesitations: alone, an utterance made of these says nothing.
FILLER_WORDS = ("那个", "这个", "就是", "嗯", "哦", "啊", "呃", "额", "唔", "噢", "喔", "哎", "唉", "呀", "嘿", "哼", "呣", "呐")
PUNCTUATION_CLASS = r"[\s,.;:!?…~、，。；：！？～]"  # what the recogniser and typists put between words
_PUNCTUATION = re.compile(PUNCTUATION_CLASS + "+")
# Explicit yes words (issue 8): 是 / 对 / 确认 / 可以 / 没问题 / 好的, and their plain variants.
YES_WORDS = ("是", "对", "确认", "确定", "可以", "没问题", "好的", "好", "行", "没错", "同意", "办吧", "ok", "OK")
_NEGATED = re.compile(r"(?:不|别|甭)(?:是|对|确认|确定|可以|行|好|同意|要|用|办|转)|没有|算了|取消|否")


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
    return bool(rest) and _without_fillers(rest).strip() == ""


def _without_fillers(words: str) -> str:
    """The words with every backchannel replaced by a space, so no yes word is read across or inside one (是 in 就是)."""
    for word in FILLER_WORDS:
        words = words.replace(word, " ")
    return words


def explicit_answer(text: str | None) -> bool | None:
    """True for an explicit yes (是/对/确认/可以/没问题/好的…), False for a no (不/不是/算了/取消…), else None."""
    if not isinstance(text, str):
        return None
    words = _PUNCTUATION.sub("", text)
    if not words or is_filler(words):
        return None
    if _NEGATED.search(words.replace("没问题", "").replace("没错", "")) or words.startswith(("不", "别")):
        return False
    meant = _without_fillers(words)
    return True if any(word in meant for word in YES_WORDS) else None
