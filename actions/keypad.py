"""The keypad menu: which key selects which task, and the spoken menu."""

from __future__ import annotations

# key -> (intent, what the menu says for it)
KEYPAD_MENU: dict[str, tuple[str, str]] = {
    "1": ("check_balance", "查询余额"),
    "2": ("query_transactions", "查询交易明细"),
    "3": ("credit_card_bill", "信用卡账单"),
    "4": ("credit_card_repayment", "信用卡还款"),
    "5": ("report_card_loss", "挂失"),
    "6": ("transfer_money", "本人账户转账"),
    "7": ("branch_locator", "查询网点"),
    "8": ("interest_rate", "存贷款利率"),
    "9": ("complaint", "投诉建议"),
}
HUMAN_KEY = "0"
MENU_KEY = "*"


def menu_text() -> str:
    """The menu as one phone-friendly sentence: 查询余额请按1，……，人工服务请按0。"""
    options = "，".join(f"{label}请按{key}" for key, (_, label) in KEYPAD_MENU.items())
    return f"{options}，人工服务请按{HUMAN_KEY}，重听请按星号键。"


def intent_for_key(key: str) -> str | None:
    entry = KEYPAD_MENU.get(key)
    return entry[0] if entry else None
