"""Cleaning of the free-form values that reach the bank from callers: phone numbers, card digits, place names."""

from __future__ import annotations

import re

MAX_QUERY_CHARS = 64

# Words callers wrap around a place when asking for a branch; removed before matching.
_BRANCH_QUERY_NOISE = (
    "请问", "我想", "我要", "帮我", "查一下", "查询", "查查", "找一下", "找", "一下", "那个", "嗯", "呃", "啊",
    "附近", "周边", "最近", "离", "近", "的", "有没有", "有", "在哪里", "在哪儿", "在哪", "哪里", "哪儿", "哪",
    "网点", "营业厅", "营业网点", "支行", "分行", "银行", "光银", "北京市", "北京", "这边", "那边", "一带", "吗", "呢",
)
_ROAD = re.compile(r"[\u4e00-\u9fff]{1,8}?(?:大街|胡同|路|街|道|桥|里)")
_NON_WORD = re.compile(r"[\W_]+")  # also removes LIKE wildcards (% and _), so terms are safe in LIKE patterns

CURRENCY_ALIASES = {
    "美金": "USD", "美圆": "USD", "欧": "EUR", "日币": "JPY", "日圆": "JPY", "港元": "HKD", "港纸": "HKD",
    "英磅": "GBP", "澳元": "AUD", "加元": "CAD", "新币": "SGD",
}


def normalise_phone(phone: str | None) -> str | None:
    """Caller numbers as the bank stores them: digits only, without +86 / 0086 / a trunk 0 before a mobile."""
    if not isinstance(phone, str):
        return None
    digits = re.sub(r"\D", "", phone)[:32]
    for prefix in ("0086", "86", "0"):
        rest = digits[len(prefix):]
        if digits.startswith(prefix) and len(rest) == 11 and rest.startswith("1"):
            return rest
    return digits or None


def clean_last4(last4: object) -> str | None:
    """The four digits of a card's last-4, or None when the value is anything else."""
    if isinstance(last4, str) and re.fullmatch(r"[0-9]{4}", last4.strip()):
        return last4.strip()
    return None


def branch_search_terms(query: str, districts: list[str]) -> list[str]:
    """What to look for in the branch table: known districts named in the query, roads, and the rest as a whole.

    "朝阳区建国路附近的网点" -> ["朝阳区", "建国路"]; "海淀" -> ["海淀区", "海淀"].
    """
    if not isinstance(query, str):
        return []
    rest = _NON_WORD.sub("", query)[: MAX_QUERY_CHARS * 2]
    for noise in sorted(_BRANCH_QUERY_NOISE, key=len, reverse=True):
        rest = rest.replace(noise, "")
    rest = rest[:MAX_QUERY_CHARS]
    terms: list[str] = []
    for district in districts:
        short = district.removesuffix("区")
        for spoken in (district, short):
            if len(spoken) >= 2 and spoken in rest:
                terms.append(district)
                rest = rest.replace(spoken, "", 1)
                break
    terms.extend(_ROAD.findall(rest))
    if len(rest) >= 2 and rest not in terms:
        terms.append(rest)
    return list(dict.fromkeys(terms))


def required_text(value: object, name: str, max_chars: int) -> str:
    """A non-empty string, trimmed and cut to `max_chars`; ValueError naming `name` for anything else."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value.strip()[:max_chars]


def optional_text(value: object, max_chars: int) -> str | None:
    """None, or a non-empty string trimmed and cut to `max_chars`."""
    if value is None:
        return None
    return required_text(value, "value", max_chars)
