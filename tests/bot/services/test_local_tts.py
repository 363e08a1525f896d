"""The text handling shared by the local TTS engines: sentence splitting, rate clamping, unspeakable text."""

from __future__ import annotations

import math

from bot.services.local_tts import (
    MAX_SPEECH_RATE,
    MAX_TEXT_CHARS,
    MIN_SPEECH_RATE,
    clamp_speech_rate,
    speakable_text,
    first_clause_chunks,
    split_sentences,
)


def test_splits_after_chinese_and_western_sentence_ends():
    text = "您好，欢迎致电。请问有什么可以帮您？Please hold! 谢谢；再见"
    assert split_sentences(text) == ["您好，欢迎致电。", "请问有什么可以帮您？", "Please hold!", "谢谢；", "再见"]


def test_numbers_with_a_decimal_point_stay_whole():
    assert split_sentences("年利率是3.5%. 请问还有什么问题") == ["年利率是3.5%.", "请问还有什么问题"]


def test_long_sentences_are_cut_at_commas_then_hard():
    clauses = "，".join(["这是一个很长的分句"] * 30) + "。"
    pieces = split_sentences(clauses, max_chars=40)
    assert all(len(p) <= 40 for p in pieces)
    assert "".join(pieces) == clauses
    assert all(len(p) <= 10 for p in split_sentences("一" * 95, max_chars=10))


def test_a_long_first_sentence_goes_out_as_its_first_clause_then_the_rest():
    text = "您好，请问您要查询哪张卡的余额？请说出卡号后四位。"
    assert first_clause_chunks(text) == ["您好，", "请问您要查询哪张卡的余额？", "请说出卡号后四位。"]
    assert "".join(first_clause_chunks(text)) == "".join(split_sentences(text))  # nothing lost or repeated


def test_short_or_clauseless_first_sentences_are_left_whole():
    assert first_clause_chunks("好的。请稍候，正在查询。") == ["好的。", "请稍候，正在查询。"]  # only the first is cut
    assert first_clause_chunks("请说出您要查询的银行卡号后四位数字。") == ["请说出您要查询的银行卡号后四位数字。"]
    assert first_clause_chunks("请稍候请稍候请稍候，！") == ["请稍候请稍候请稍候，！"]  # nothing to say after the comma
    assert first_clause_chunks("") == []


def test_fragments_without_anything_to_say_are_dropped():
    assert split_sentences("。。……！？  \n") == []
    assert split_sentences("") == []


def test_rate_is_clamped_and_nonsense_reset():
    assert clamp_speech_rate(0.8) == 0.8
    assert clamp_speech_rate(0) == MIN_SPEECH_RATE
    assert clamp_speech_rate(50) == MAX_SPEECH_RATE
    assert clamp_speech_rate(math.nan) == 1.0
    assert clamp_speech_rate("fast") == 1.0  # type: ignore[arg-type]


async def test_speakable_text_drops_punctuation_and_cuts_huge_text():
    assert await speakable_text("……", "text") == ""
    assert await speakable_text("好的。", "text") == "好的。"
    assert len(await speakable_text("好" * (MAX_TEXT_CHARS + 500), "text")) == MAX_TEXT_CHARS
