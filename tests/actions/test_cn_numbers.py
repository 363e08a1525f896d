"""Mandarin number normalisation: digit strings, amounts, and the spoken forms for the TTS."""

from __future__ import annotations

import pytest

from actions.cn_numbers import (
    amount_cents_from_speech,
    amount_in_context,
    amount_spans,
    digits_from_speech,
    extract_digits,
    find_amount_cents,
    never_amount_spans,
    speak_amount,
    speak_digits,
)

GARBAGE = [
    "", "   ", "abc", "喂", "你好", "我要查余额", "😀😀😀", "一二三四五六七八九十百千万", "%", "' OR 1=1 --",
    "/dtmf{\"digits\":\"1234\"}", None, 1234, 12.5, ["1"], "一" * 10_000,
]


@pytest.mark.parametrize(
    "spoken, digits",
    [
        ("一二三四", "1234"),
        ("幺二三四", "1234"),
        ("幺三五七九洞", "135790"),
        ("一三五七九零", "135790"),
        ("一三五七九〇", "135790"),
        ("1二3四", "1234"),
        ("1234", "1234"),
        ("１２３４", "1234"),  # full-width, as some recognisers write them
        ("1 2 3 4", "1234"),
        ("一 二 三 四", "1234"),
        ("一、二、三、四。", "1234"),
        ("12-34", "1234"),
        ("嗯 一二三四", "1234"),
        ("是幺二三四", "1234"),
        ("那个 一二三四啊", "1234"),
        ("洞洞七", "007"),
        ("零零一二", "0012"),
        ("幺两三四", "1234"),  # radio style 两
        ("拐拐勾", "779"),  # radio style 7 and 9
        ("壹贰叁肆", "1234"),
        ("一千二百三十四", "1234"),  # said as a number
        ("十三万五千七百九十", "135790"),
        ("八", "8"),
    ],
)
def test_digits_from_speech(spoken: str, digits: str) -> None:
    assert digits_from_speech(spoken) == digits


@pytest.mark.parametrize("spoken", GARBAGE + ["后四位一二三四", "一二三四号", "卡号1234", "12.34.x", "三千二百八十块"])
def test_digits_from_speech_rejects_anything_else(spoken) -> None:
    assert digits_from_speech(spoken) is None


@pytest.mark.parametrize(
    "sentence, length, digits",
    [
        ("我的卡尾号是幺二三四", None, "1234"),
        ("后四位是一二三四", 4, "1234"),
        ("后四位是一二三四", None, "1234"),
        ("卡号尾数 1 2 3 4 密码不说", 4, "1234"),
        ("尾号5678的卡", 4, "5678"),
        ("我有两张卡 一张尾号一二三四 一张八八八八", 4, "8888"),  # the last one said
        ("查询尾号一二三四的余额", 4, "1234"),
        ("没有数字", None, None),
        ("尾号一二三", 4, None),
        ("", None, None),
        (None, 4, None),
    ],
)
def test_extract_digits(sentence, length, digits) -> None:
    assert extract_digits(sentence, length) == digits


@pytest.mark.parametrize(
    "spoken, cents",
    [
        # whole yuan
        ("三千二百八十", 328_000),
        ("两万", 2_000_000),
        ("三百二十八块", 32_800),
        ("三千二百八十元", 328_000),
        ("三千二百八十块钱", 328_000),
        ("人民币三千元整", 300_000),
        ("一百块钱", 10_000),
        ("十五块", 1_500),
        ("二十", 2_000),
        ("一百一十", 11_000),
        ("一千零八", 100_800),
        ("一万零五百", 1_050_000),
        ("两千两百", 220_000),
        ("十二万", 12_000_000),
        ("一百二十万", 120_000_000),
        ("壹仟贰佰", 120_000),
        # colloquial shorthand: the digit after the last unit is the next lower unit
        ("一万二", 1_200_000),
        ("一千五", 150_000),
        ("三百八", 38_000),
        ("两万五", 2_500_000),
        ("一亿二", 12_000_000_000),
        # jiao and fen
        ("三千二百八十块五", 328_050),
        ("三千二百八十元五角", 328_050),
        ("三千二百八十块五毛", 328_050),
        ("三千二百八十元五角六分", 328_056),
        ("三块五毛二", 352),
        ("两块五毛二", 252),
        ("三块零五", 305),
        ("三千二百八十元零五分", 328_005),
        ("三元八分", 308),
        ("五毛", 50),
        ("五毛钱", 50),
        ("两毛五", 25),
        ("八分", 8),
        ("零元", 0),
        # Arabic and mixed
        ("3280", 328_000),
        ("3280元", 328_000),
        ("3280.5", 328_050),
        ("3280.50元", 328_050),
        ("3,280.00", 328_000),
        ("¥3,280.00", 328_000),
        ("３２８０元", 328_000),
        ("1.5万", 1_500_000),
        ("1.5万元", 1_500_000),
        ("一点五万", 1_500_000),
        ("三千二百八十点五", 328_050),
        ("2万5千", 2_500_000),
        ("3千", 300_000),
        ("3280块5", 328_050),
        ("三二八零", 328_000),  # said digit by digit
        ("嗯 三千二百八十", 328_000),
        (" 三千 二百 八十 元 ", 328_000),
    ],
)
def test_amount_cents_from_speech(spoken: str, cents: int) -> None:
    assert amount_cents_from_speech(spoken) == cents


@pytest.mark.parametrize(
    "spoken",
    GARBAGE
    + [
        "万", "块", "元", "千百", "二十三百", "三千二百八十八十", "三二百", "一万二万",
        "1.555元",  # fractions of a cent
        "3.5元5角",  # decimal yuan and jiao at once
        "三块五块", "五角五角", "三千二百八十分", "幺二三四块", "全部", "最低还款额", "还三千",
        "九" * 40 + "万亿",  # beyond any real amount
    ],
)
def test_amount_rejects_anything_else(spoken) -> None:
    assert amount_cents_from_speech(spoken) is None


@pytest.mark.parametrize(
    "sentence, cents",
    [
        ("我要还三千二百八十块钱", 328_000),
        ("帮我转两万到信用卡", 2_000_000),
        ("还最低的三百二十八元吧", 32_800),
        ("转1.5万", 1_500_000),
        ("我不知道", None),
        (None, None),
    ],
)
def test_find_amount_cents(sentence, cents) -> None:
    assert find_amount_cents(sentence) == cents


@pytest.mark.parametrize(
    "cents, spoken",
    [
        (328_000, "3280元"),
        (5_234_050, "52340元5角"),
        (32_805, "328元零5分"),
        (328_056, "3280元5角6分"),
        (100, "1元"),
        (50, "5角"),
        (55, "5角5分"),
        (5, "5分"),
        (0, "0元"),
        (-1_050, "负10元5角"),
        (10**12, "10000000000元"),
    ],
)
def test_speak_amount(cents: int, spoken: str) -> None:
    assert speak_amount(cents) == spoken


@pytest.mark.parametrize("cents", [0, 1, 9, 10, 99, 100, 305, 32_805, 328_050, 5_234_050, 123_456_789])
def test_spoken_amounts_read_back_to_the_same_cents(cents: int) -> None:
    assert amount_cents_from_speech(speak_amount(cents)) == cents


@pytest.mark.parametrize("bad", [1.5, "100", None, True])
def test_speak_amount_needs_integer_cents(bad) -> None:
    with pytest.raises(TypeError):
        speak_amount(bad)


@pytest.mark.parametrize(
    "digits, spoken",
    [
        ("1234", "1 2 3 4"),
        ("0012", "0 0 1 2"),
        ("7", "7"),
        ("135790", "1 3 5 7 9 0"),
        ("826112700001", "8 2 6 1，1 2 7 0，0 0 0 1"),
        ("1234567", "1 2 3 4，5 6 7"),
    ],
)
def test_speak_digits(digits: str, spoken: str) -> None:
    assert speak_digits(digits) == spoken


def test_spoken_digits_read_back() -> None:
    assert digits_from_speech(speak_digits("826112700001")) == "826112700001"


@pytest.mark.parametrize("bad", ["", "12a4", "1 2", "１２", None, 1234])
def test_speak_digits_rejects_non_digits(bad) -> None:
    with pytest.raises(ValueError):
        speak_digits(bad)


# ---------------------------------------------------------------- amount expressions inside a sentence

@pytest.mark.parametrize("text, amounts", [
    ("从尾号4321的卡转两百块钱到尾号9999的卡上", ["两百"]),
    ("帮我还三千二百八十块", ["三千二百八十"]),
    ("转个五百给他", ["五百"]),
    ("负五百", ["负五百"]),
    ("-200", ["-200"]),
    ("五毛", ["五"]),
    ("一年定期利率是多少", []),
    ("等一下 你们三个月定期利率多少", []),
    ("我六十八了 能不能优先", []),
    ("还八八八八的账单", []),
    ("一百美元是多少人民币", []),
    ("在海淀那一块", []),
    ("5000", []),  # only a number: the question asked says what it is
    ("x" * 1000, []),
])
def test_amount_spans(text: str, amounts: list[str]) -> None:
    assert [text[start:end] for start, end in amount_spans(text)] == amounts


@pytest.mark.parametrize("text, numbers", [
    ("一年定期利率是多少", ["一年"]),
    ("五八五八二零", ["五八五八二零"]),
    ("尾号四三二一", ["尾号四三二一", "四三二一"]),  # a card number, and a digit string
    ("三千二百八十", []),
    ("4321", []),  # Arabic digits: a card or an amount, the question decides
])
def test_never_amount_spans(text: str, numbers: list[str]) -> None:
    assert [text[start:end] for start, end in never_amount_spans(text)] == numbers


def test_offsets_stay_the_callers_own_when_normalising_would_move_them() -> None:
    text = "㍿转五百块"  # NFKC makes one character four
    assert [text[start:end] for start, end in amount_spans(text)] == ["五百"]


@pytest.mark.parametrize("text, cents", [
    ("这一块五", 150), ("把这一块五毛还了", 150), ("那一块一", 110), ("这一块钱", 100),  # 1.x yuan, not a place
    ("还十一部分", 1100), ("转一百零一部分", 10100),  # the number before 一部分 keeps its last digit
    ("先还一部分一千块", 100000), ("在海淀那一块", None), ("还一部分", None),  # a part, a place: no money
])
def test_amount_in_context_reads_parts_and_places_right(text: str, cents: int | None) -> None:
    assert amount_in_context(text) == cents


@pytest.mark.parametrize("text, amounts", [
    ("138-1234-5678", []), ("2024-05-01", []), ("卡号6222-0212-3456", []),  # hyphens inside numbers are no signs
    ("转账500-1000块", ["500", "1000"]),
    ("负 五百块", ["负 五百"]),
    ("转1,000块", ["1,000"]),
])
def test_amount_spans_signs_and_separators(text: str, amounts: list[str]) -> None:
    assert [text[start:end] for start, end in amount_spans(text)] == amounts


@pytest.mark.parametrize("text, amounts", [
    ("给我老婆打一千五", ["一千五"]), ("往尾号二零六三的卡上打七百", ["七百"]), ("打了两万过去", ["两万"]),
    ("打款三千", ["三千"]), ("打钱五百给他", ["五百"]), ("打500块", ["500"]),  # a unit marks it anyway
    # 打 alone marks a number only with a place unit in it: a phone number is no amount, nor a discount
    ("打110报警", []), ("我打95595打不通", []), ("打一一零", []), ("打九折", []), ("打八五折吗", []),
    ("打了三次电话", []), ("打两个电话", []), ("打了十几次电话没人管", []), ("打了二十多个电话", []),
])
def test_da_before_a_number_marks_money_but_not_a_phone_number_or_a_discount(text: str, amounts: list[str]) -> None:
    assert [text[start:end] for start, end in amount_spans(text)] == amounts


@pytest.mark.parametrize("text, amounts", [
    ("银行卡连着钱包一块丢了", []), ("身份证和卡一块被偷了", []), ("两张卡一块挂失", []), ("一块办了吧", []),
    ("转一块给他", ["一"]), ("还一块钱", ["一"]), ("转一块", ["一"]),  # one yuan
])
def test_yikuai_before_a_verb_means_together_not_one_yuan(text: str, amounts: list[str]) -> None:
    assert [text[start:end] for start, end in amount_spans(text)] == amounts
