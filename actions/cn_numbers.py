"""Mandarin numbers as callers say them and speech recognisers write them, and back again for the TTS.

Reading (caller -> bank):
- `digits_from_speech`: a whole utterance that is a digit string -> "1234". 一二三四, 幺二三四 (幺 = 1),
  洞/零/〇 = 0, radio style 两 = 2, 拐 = 7, 勾 = 9, Arabic or full-width digits, mixed and spaced;
  a number said as a cardinal (一千二百三十四) is accepted too.
- `extract_digits`: the digit run inside a longer sentence ("尾号是幺二三四" -> "1234").
- `amount_cents_from_speech`: an amount -> integer cents. 三千二百八十 (yuan), 两万, 一万二 (= 12000),
  三千二百八十块五 (5 jiao), 三块零五 (5 fen), 五毛, 元/块/圆, 角/毛, 分, 点 and Arabic decimals, 1.5万, 3,280.00.
- `find_amount_cents`: the amount inside a longer sentence ("帮我还三千二百八十块" -> 328000).
- `amount_in_context`: the same, but numbers of time, dates, rates and card numbers are never money (一年, 尾号四三二一).
Anything that is not clearly a number gives None, never an exception and never a guess.

Speaking (bank -> caller), the form is documented on each function:
- `speak_amount(328000)` -> "3280元"; 5234050 -> "52340元5角"; 32805 -> "328元零5分".
  Arabic numerals with the units 元/角/分: Mandarin TTS front ends (espeak-ng cmn, Piper zh voices) read an
  Arabic integer as a cardinal (3280 -> 三千二百八十), and the 零 keeps "328元零5分" from sounding like 328.5.
- `speak_digits("1234")` -> "1 2 3 4": digit by digit, for card and ticket numbers.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

MAX_INPUT_CHARS = 64  # a spoken number longer than this is not a number but noise
MAX_AMOUNT_CENTS = 10**14  # one trillion yuan: anything above is a misrecognition

_DIGIT_VALUES = {
    "零": 0, "〇": 0, "○": 0, "洞": 0,
    "一": 1, "幺": 1, "壹": 1,
    "二": 2, "两": 2, "贰": 2,
    "三": 3, "叁": 3,
    "四": 4, "肆": 4,
    "五": 5, "伍": 5,
    "六": 6, "陆": 6,
    "七": 7, "柒": 7, "拐": 7,
    "八": 8, "捌": 8,
    "九": 9, "玖": 9, "勾": 9,
    **{str(d): d for d in range(10)},
}
# Radio-style names only make sense in digit strings, never in amounts.
_RADIO_ONLY = {"洞", "拐", "勾", "幺"}
_SMALL_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_BIG_UNITS = {"万": 10**4, "萬": 10**4, "亿": 10**8, "億": 10**8}
_FILLERS = ("那个", "就是", "嗯", "啊", "呃", "额", "哦", "噢", "喂", "是", "呀", "吧", "了")
_SEPARATORS = re.compile(r"[\s,.;:!?'\"\-_/·、，。；：！？“”‘’（）()]+")
DIGIT_CHARS = "".join(_DIGIT_VALUES)  # every way a single digit is written: 一 幺 壹 洞 拐 勾 ... 0-9
_DIGIT_CLASS = DIGIT_CHARS
_DIGIT_RUN = re.compile(rf"[{_DIGIT_CLASS}](?:[\s,，、\-]*[{_DIGIT_CLASS}])*")

_AMOUNT_NOISE = ("人民币", "RMB", "CNY", "¥", "钱", "整")
_AMOUNT_UNIT_SPELLINGS = {"块": "元", "圆": "元", "毛": "角", "两": "二"}
_AMOUNT_CHARS = re.compile(
    r"[0-9.,，零〇一二两三四五六七八九十百千万亿点元块圆角毛分壹贰叁肆伍陆柒捌玖拾佰仟萬億]+"
)
_D = "[0-9零一二三四五六七八九]"
_SUB_YUAN_PATTERNS = (
    re.compile(rf"(?P<jiao>{_D})角?(?:(?P<fen>{_D})分?)?"),  # 五 | 五角 | 五角二 | 五角二分 | 零五 | 五二
    re.compile(rf"零?(?P<fen>{_D})分"),  # 八分 | 零八分
)
_DECIMAL = re.compile(rf"(?P<whole>[^点.]*)[点.](?P<fraction>{_D}+)(?P<multiplier>[十百千万亿]*)")


# ---------------------------------------------------------------- digit strings


def digits_from_speech(text: str) -> str | None:
    """The digits an utterance consists of ("幺二三四" -> "1234"), or None if it is anything but a number.

    Separators, spaces and fillers (嗯, 那个, 是 ...) are ignored; any other word makes it None, so
    "后四位一二三四" is None here (use `extract_digits` for digits inside a sentence).
    """
    cleaned = _clean(text)
    if not cleaned:
        return None
    if all(char in _DIGIT_VALUES for char in cleaned):
        return "".join(str(_DIGIT_VALUES[char]) for char in cleaned)
    value = _parse_integer(cleaned)  # a number said as a cardinal: 一千二百三十四
    return str(value) if value is not None else None


def extract_digits(text: str, length: int | None = None) -> str | None:
    """The digit run inside a sentence: of exactly `length` digits if given (the last such), else the longest.

    "我的卡尾号是幺二三四" -> "1234"; with length=4, "后四位是一二三四" -> "1234" (the 四 of 四位 is too short).
    """
    if not isinstance(text, str) or len(text) > MAX_INPUT_CHARS * 4:
        return None
    runs = ["".join(str(_DIGIT_VALUES[c]) for c in run if c in _DIGIT_VALUES)
            for run in _DIGIT_RUN.findall(unicodedata.normalize("NFKC", text))]
    if length is not None:
        runs = [run for run in runs if len(run) == length]
        return runs[-1] if runs else None
    return max(reversed(runs), key=len) if runs else None


def speak_digits(digits: str) -> str:
    """Digits for the TTS to read one by one: "1234" -> "1 2 3 4".

    Numbers longer than 6 digits are grouped by four with a pause (，) between groups, the way Chinese
    agents read out numbers: "826112700001" -> "8 2 6 1，1 2 7 0，0 0 0 1".
    """
    if not isinstance(digits, str) or not re.fullmatch(r"[0-9]+", digits):
        raise ValueError(f"speak_digits needs a string of digits, got {digits!r}")
    if len(digits) <= 6:
        return " ".join(digits)
    groups = [digits[i:i + 4] for i in range(0, len(digits), 4)]
    return "，".join(" ".join(group) for group in groups)


# ---------------------------------------------------------------- amounts


def amount_cents_from_speech(text: str) -> int | None:
    """An amount of money as integer cents, or None if the text is not clearly one.

    Without a unit the number is yuan: "三千二百八十" -> 328000. After 元/块 a lone digit is jiao and 零 plus a
    digit is fen: "三千二百八十块五" -> 328050, "三块零五" -> 305. Fractions of a cent give None.
    """
    cleaned = _clean_amount(text)
    if not cleaned:
        return None
    yuan_text, _, sub_yuan = cleaned.partition("元")
    if "元" in sub_yuan:
        return None
    if "元" not in cleaned and ("角" in cleaned or "分" in cleaned):
        yuan_text, sub_yuan = "", cleaned  # 五毛, 八分: no yuan at all
    if not yuan_text and not sub_yuan:
        return None
    yuan = _parse_number(yuan_text) if yuan_text else Decimal(0)
    sub_cents = _parse_sub_yuan(sub_yuan)
    if yuan is None or sub_cents is None or (sub_yuan and yuan != yuan.to_integral_value()):
        return None
    cents = yuan * 100 + sub_cents
    if cents != cents.to_integral_value() or cents > MAX_AMOUNT_CENTS:
        return None
    return int(cents)


# Words or signs that make the amount after them negative: 「负五百」「-500」「减五百」.
_NEGATIVE_AMOUNT = re.compile(r"(?:负|减|[-−－﹣])\s*[0-9零〇一二两三四五六七八九十百千万壹贰叁肆伍陆柒捌玖拾佰仟]")


def says_negative_amount(text: str) -> bool:
    """True when the text puts a minus sign or 负 before a number: such an amount is refused, never made positive."""
    return isinstance(text, str) and bool(_NEGATIVE_AMOUNT.search(unicodedata.normalize("NFKC", text)))


def find_amount_cents(text: str) -> int | None:
    """The amount inside a sentence: "我要还三千二百八十块钱" -> 328000 (the longest part that is an amount)."""
    if not isinstance(text, str) or len(text) > MAX_INPUT_CHARS * 4:
        return None
    candidates = sorted(_AMOUNT_CHARS.findall(unicodedata.normalize("NFKC", text)), key=len, reverse=True)
    for candidate in candidates:
        cents = amount_cents_from_speech(candidate)
        if cents is not None:
            return cents
    return None


# Numbers that are not money: 等一下, 一年, 三个月, 5号, 十点, 百分之二, 尾号四三二一, 四三二一那张卡. They are blanked out
# before an amount is looked for, so 「一年定期利率是多少」 holds no amount at all.
_N = "[0-9零〇一二两三四五六七八九十百千万点.]"
_NOT_AMOUNTS = re.compile(
    rf"(?:尾号|后四位|卡号|尾数|第|周|星期|百分之|年利率)[是为]?{_N}+"
    r"|一(?:下|些|会|直|起|样|般|定|共|切|边|点儿|块儿)"  # 等一下, 一直: words, not the number one
    r"|一块(?=[丢掉被办挂冻注补])"  # 连着钱包一块丢了: together; 转一块给他 is one yuan
    rf"|(?<!{_N})一部分"  # 还一部分: a part, not one; but 还十一 部分 keeps its 十一
    rf"|[这那]一块(?!{_N}|[毛角分钱元])"  # 在海淀那一块: a place; 这一块五 is 1.5 yuan
    rf"|{_N}+\s*(?:个月|个小时|年|月|周|天|日|号|小时|分钟|点钟|点半|岁|期|笔|条|次|张|位|倍|分之|折|[%％]|的卡|那张|这张|张卡)"
)


def amount_in_context(text: str) -> int | None:
    """The amount in a sentence, read only from amount expressions: numbers of time, dates, rates, card numbers and
    counts are not money (「一年定期利率是多少」 -> None; 「从尾号4321的卡转两百块钱」 -> 20000)."""
    if not isinstance(text, str) or len(text) > MAX_INPUT_CHARS * 4:
        return None
    return find_amount_cents(_NOT_AMOUNTS.sub("，", unicodedata.normalize("NFKC", text)))


def speak_amount(cents: int) -> str:
    """Cents as text a Mandarin TTS reads right: Arabic yuan with 元, then 角 and 分 only when not zero.

    328000 -> "3280元"; 5234050 -> "52340元5角"; 328056 -> "3280元5角6分"; 32805 -> "328元零5分";
    50 -> "5角"; 5 -> "5分"; 0 -> "0元"; negative amounts start with 负.
    """
    if not isinstance(cents, int) or isinstance(cents, bool):
        raise TypeError(f"speak_amount needs integer cents, got {cents!r}")
    sign = "负" if cents < 0 else ""
    yuan, rest = divmod(abs(cents), 100)
    jiao, fen = divmod(rest, 10)
    if rest == 0:
        return f"{sign}{yuan}元"
    parts = [f"{yuan}元"] if yuan else []
    if jiao:
        parts.append(f"{jiao}角")
    elif yuan:
        parts.append("零")  # 328元零5分, so the 5 is not heard as 5 jiao
    if fen:
        parts.append(f"{fen}分")
    return sign + "".join(parts)


# ---------------------------------------------------------------- parsing internals


def _clean(text: object) -> str:
    """NFKC (full-width digits become ASCII), without separators and fillers; "" for non-text or huge input."""
    if not isinstance(text, str) or len(text) > MAX_INPUT_CHARS * 4:
        return ""
    cleaned = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text))
    for filler in _FILLERS:
        cleaned = cleaned.replace(filler, "")
    return cleaned if len(cleaned) <= MAX_INPUT_CHARS else ""


def _clean_amount(text: object) -> str:
    if not isinstance(text, str) or len(text) > MAX_INPUT_CHARS * 4:
        return ""
    cleaned = unicodedata.normalize("NFKC", text)
    cleaned = re.sub(r"(?<=\d)[,，](?=\d{3})", "", cleaned)  # thousands separators: 3,280.00
    cleaned = _clean(cleaned.replace(".", "点"))  # keep the decimal point through separator removal
    for noise in _AMOUNT_NOISE:
        cleaned = cleaned.replace(noise, "")
    for spelling, unit in _AMOUNT_UNIT_SPELLINGS.items():
        cleaned = cleaned.replace(spelling, unit)
    if any(char in _RADIO_ONLY for char in cleaned):
        return ""
    return cleaned


def _parse_number(text: str) -> Decimal | None:
    """A yuan figure with an optional decimal part and multiplier: 3280 | 三千二百八十 | 1点5万 | 十二点五."""
    match = _DECIMAL.fullmatch(text)
    if match is None:
        value = _parse_integer(text)
        return Decimal(value) if value is not None else None
    whole = _parse_integer(match["whole"]) if match["whole"] else 0
    if whole is None:
        return None
    fraction = "".join(str(_DIGIT_VALUES[c]) for c in match["fraction"])
    multiplier = 1
    for unit in match["multiplier"]:
        multiplier *= _SMALL_UNITS.get(unit) or _BIG_UNITS[unit]
    return Decimal(f"{whole}.{fraction}") * multiplier


def _parse_integer(text: str) -> int | None:
    """A whole number: a digit string (三二八零, 3280) or a cardinal (三千二百八十, 一万二, 一千零八)."""
    tokens = _tokens(text)
    if not tokens:
        return None
    if all(kind == "digit" for kind, _ in tokens):
        return int("".join(str(value) for _, value in tokens))  # a digit string such as 三二八零
    return _parse_cardinal(tokens)


def _tokens(text: str) -> list[tuple[str, int]] | None:
    """("digit", value) for Arabic runs and Chinese digits, ("zero", 0) for 零 between units, ("small"|"big", unit)."""
    tokens: list[tuple[str, int]] = []
    for match in re.finditer(r"[0-9]+|.", text):
        piece = match.group()
        if piece.isdigit() and piece.isascii():
            tokens.append(("digit", int(piece)))
        elif piece in _DIGIT_VALUES:
            tokens.append(("digit", _DIGIT_VALUES[piece]))
        elif piece in _SMALL_UNITS:
            tokens.append(("small", _SMALL_UNITS[piece]))
        elif piece in _BIG_UNITS:
            tokens.append(("big", _BIG_UNITS[piece]))
        else:
            return None
    if any(kind != "digit" for kind, _ in tokens):
        # inside a cardinal, 零 only marks a gap (一千零八); it is not a digit that needs a unit
        tokens = [("zero", 0) if (kind, value) == ("digit", 0) else (kind, value) for kind, value in tokens]
    return tokens


def _parse_cardinal(tokens: list[tuple[str, int]]) -> int | None:
    total = 0  # value of completed 万 / 亿 sections
    section = 0  # value below the next big unit
    pending: int | None = None  # a digit waiting for its unit
    last_unit: int | None = None  # most recent unit, for shorthand such as 一万二 (= 12000)
    last_small: int | None = None  # units inside a section must fall: 千 > 百 > 十
    last_big: int | None = None
    zero_gap = False  # 零 after the last unit: the final digit is units, 一千零八 = 1008
    for kind, value in tokens:
        if kind == "digit":
            if pending is not None:
                return None
            pending = value
        elif kind == "zero":
            if pending is not None:
                return None
            zero_gap = True
        elif kind == "small":
            if pending is None:
                if value != 10:
                    return None
                pending = 1  # 十五 = 15, 一百十 = 110
            if last_small is not None and last_small <= value:
                return None
            section += pending * value
            pending, last_unit, last_small, zero_gap = None, value, value, False
        else:  # big unit
            amount = section + (pending or 0)
            if amount == 0 and not (total and value == 10**8):
                return None
            if last_big is not None and value <= last_big and value != 10**8:
                return None
            total = (total + amount) * value if value == 10**8 else total + amount * value
            section, pending, last_unit, last_small, last_big, zero_gap = 0, None, value, None, value, False
    if pending is not None:
        if last_unit is None or zero_gap or last_unit == 10:
            section += pending
        else:
            section += pending * (last_unit // 10)  # 一千五 = 1500, 三百八 = 380, 一万二 = 12000
    return total + section


def _parse_sub_yuan(text: str) -> Decimal | None:
    """Cents below one yuan: 五 | 五角 | 五角二分 | 零五 | 八分 -> 50 | 50 | 52 | 5 | 8."""
    if not text:
        return Decimal(0)
    for pattern in _SUB_YUAN_PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            jiao = _DIGIT_VALUES[match["jiao"]] if "jiao" in match.groupdict() and match["jiao"] else 0
            fen = _DIGIT_VALUES[match["fen"]] if match["fen"] else 0
            return Decimal(jiao * 10 + fen)
    return None


# ---------------------------------------------------------------- amount expressions inside a sentence

# An amount expression is a number marked as money by the words around it (the rule: amounts come only from
# amount expressions): a money unit after it (两百块, 3280元, 五毛), or a verb or noun of paying before it (转五百,
# 还三千, 金额一万), or a sign (负五百, -200), which belongs to the expression: the dialogue refuses it.
_NUMBER_CHARS = "0-9零〇一二两三四五六七八九十百千万亿点.壹贰叁肆伍陆柒捌玖拾佰仟萬億"
# A sign is 负 or 减, or a minus that no digit comes right before: 138-1234-5678, 2024-05-01 and 500-1000 hold no
# negative number. A number may carry thousands separators (1,000).
_SIGN = r"(?:[负减]|(?<![0-9])[−－﹣-])\s*"
_SIGNED_NUMBER = re.compile(rf"(?P<sign>{_SIGN})?(?P<number>[{_NUMBER_CHARS}]+(?:[,，][0-9]{{3}}(?![0-9]))*)")
_SIGN_BEFORE = re.compile(rf"{_SIGN}$")
# Only yuan: 「一百美元是多少人民币」 asks for a rate, it moves no money.
_MONEY_UNIT_AFTER = re.compile(r"\s*(?:块(?!儿)|元|圆|毛|角)")
_BEFORE_THE_NUMBER = r"(?:了|个|上|给我|给他|给她)?\s*$"  # 转了五百, 转个五百, 转给我五百
_MONEY_WORD_BEFORE = re.compile(
    r"(?:转账?|汇款?|划|还款?|存|取|付款?|支付|充值?|交|打款|打钱|金额(?:是|为)?|转账金额(?:是|为)?)" + _BEFORE_THE_NUMBER)
# 打 alone (打一千五过去) marks money only before a number with a place unit, and no count after it: 打110 and
# 打95595 are calls, 打了十几次 and 打了二十多个 are counts.
_DA_BEFORE = re.compile("打" + _BEFORE_THE_NUMBER)
_COUNT_AFTER = re.compile(r"\s*[几多来余个次遍通回趟]")


def amount_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each amount expression in `text`, in its own character offsets.

    「从尾号4321的卡转两百块钱到尾号9999的卡上」 -> the span of 两百; 「一年定期利率是多少」 -> none (a number of time);
    「我六十八了」 -> none (nothing marks it as money); 「负五百块」 -> 负五百. A message that is only a number (the answer
    to 「请说金额」 or to 「请说卡号后四位」) has no marks either: what it is depends on the question, which the dialogue
    knows and the sentence does not.
    """
    if not isinstance(text, str) or len(text) > MAX_INPUT_CHARS * 4:
        return []
    normal = _normal_in_place(text)
    masked = _NOT_AMOUNTS.sub(lambda match: "，" * len(match.group()), normal)
    spans = []
    for match in _SIGNED_NUMBER.finditer(masked):
        number, start = match["number"], match.start("number")
        start = start_with_sign(normal, start)  # the sign as the caller said it: 卡号6222-0212 has none
        marked = (start < match.start("number")  # a card or a PIN is never negative
                  or _MONEY_UNIT_AFTER.match(masked, match.end()) or _MONEY_WORD_BEFORE.search(masked, 0, start)
                  or (_DA_BEFORE.search(masked, 0, start) and _PLACE_UNITS.search(number)
                      and not _COUNT_AFTER.match(masked, match.end())))
        if marked and not digit_string(number) and amount_cents_from_speech(number) is not None:
            spans.append((start, match.end()))
    return spans


_PLACE_UNITS = re.compile(r"[十拾百佰千仟万萬亿億点.]")


def digit_string(number: str) -> bool:
    """A number said digit by digit in Chinese (八八八八, 五八五八二零): a card, a PIN or a phone, never an amount."""
    chinese_digits = sum(1 for char in number if char in DIGIT_CHARS and not char.isdigit())
    return chinese_digits >= 3 and not _PLACE_UNITS.search(number)


def never_amount_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the numbers in `text` that are not money: time, dates, rates, counts, card numbers
    (`_NOT_AMOUNTS`) and digit strings. An NLU guess of an amount there is dropped."""
    if not isinstance(text, str) or len(text) > MAX_INPUT_CHARS * 4:
        return []
    normal = _normal_in_place(text)
    spans = [match.span() for match in _NOT_AMOUNTS.finditer(normal)]
    spans += [match.span("number") for match in _SIGNED_NUMBER.finditer(normal) if digit_string(match["number"])]
    return spans


def _normal_in_place(text: str) -> str:
    """NFKC (full-width digits become ASCII) when it keeps every character where it was, else the text as it is:
    spans found in it must be the caller's own offsets."""
    normal = unicodedata.normalize("NFKC", text)
    return normal if len(normal) == len(text) else text


def start_with_sign(text: str, start: int) -> int:
    """Where a number starting at `start` starts once the sign before it is counted (负五百 -> the 负), if any."""
    sign = _SIGN_BEFORE.search(_normal_in_place(text)[:start]) if 0 < start <= len(text) else None
    return sign.start() if sign else start
