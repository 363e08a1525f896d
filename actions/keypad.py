"""The keypad menu: which key selects which task, and the spoken menu.

The human and menu keys are the call contract's (call_contract.py, HUMAN_KEY from settings), so the menu announces
the key the gateway obeys. Menu entries take the other digits in order, 1 to 9 then 0: with the default human key 0
that is 1-9; with HUMAN_KEY=9 the ninth entry moves to 0.

Nine digits are left once the human key is taken, so the menu holds nine entries. 绿色通道 (the elderly priority
line) has one, next to the human key, so a caller who cannot be understood can key it. 投诉建议 gave up its key for
it: a complaint is told in the caller's own words (what, where, when), which no key can give, and callers still
reach it by saying 「投诉」.
"""

from __future__ import annotations

from call_contract import HUMAN_AGENT_INTENT, MENU_KEY, human_key

# (intent, what the menu says for it), in menu order: a key is replayed as its intent, so the rules that answer the
# spoken request answer the key (green_channel: straight to the elderly priority queue)
MENU_ENTRIES: tuple[tuple[str, str], ...] = (
    ("check_balance", "查询余额"),
    ("query_transactions", "查询交易明细"),
    ("credit_card_bill", "信用卡账单"),
    ("credit_card_repayment", "信用卡还款"),
    ("report_card_loss", "挂失"),
    ("transfer_money", "本人账户转账"),
    ("branch_locator", "查询网点"),
    ("interest_rate", "存贷款利率"),
    ("green_channel", "绿色通道"),
)
HUMAN_KEY = human_key()  # read once, as the action server reads its settings once
MENU_KEYS = [key for key in "1234567890" if key != HUMAN_KEY]
# key -> (intent, what the menu says for it)
KEYPAD_MENU: dict[str, tuple[str, str]] = dict(zip(MENU_KEYS, MENU_ENTRIES, strict=True))  # a tenth entry fails here

__all__ = ["HUMAN_KEY", "KEYPAD_MENU", "MENU_KEY", "intent_for_key", "menu_text"]


def menu_text() -> str:
    """The menu as one phone-friendly sentence: 查询余额请按1，……，人工服务请按0。"""
    options = "，".join(f"{label}请按{key}" for key, (_, label) in KEYPAD_MENU.items())
    return f"{options}，人工服务请按{HUMAN_KEY}，重听请按星号键。"


def intent_for_key(key: str) -> str | None:
    """The intent a single key stands for outside a form: a menu entry, or the human agent; None for any other key."""
    if key == HUMAN_KEY:
        return HUMAN_AGENT_INTENT
    entry = KEYPAD_MENU.get(key)
    return entry[0] if entry else None
