"""What the caller's words mean beyond the intent (actions/utterances.py): issue 8's money-safety rules."""

from __future__ import annotations

import pytest

from actions.cn_numbers import amount_in_context
from actions.utterances import explicit_answer, human_request, is_filler


@pytest.mark.parametrize("text", ["嗯", "哦", "啊", "那个", "嗯嗯", "呃…那个", "哦，", "嗯 这个"])
def test_backchannels_are_fillers_and_never_a_yes(text):
    assert is_filler(text) and explicit_answer(text) is None


@pytest.mark.parametrize("text", ["是", "是的", "对", "确认", "可以", "没问题", "好的", "嗯 对", "没错", "是啊", "那个 是的",
                                  "对 就是这样", "就是 是的"])
def test_explicit_yes_words(text):
    assert explicit_answer(text) is True and not is_filler(text)


@pytest.mark.parametrize("text", ["就是 就是那个啥", "就是那个啥", "那啥", "那个啥 就是", "就是这个"])
def test_the_yes_inside_a_filler_is_no_yes(text):
    # 是 in 就是 is a hesitation, not an answer: at a read-back it must re-ask, never move the money (review r3).
    assert explicit_answer(text) is None


@pytest.mark.parametrize("text", ["不", "不是", "不对", "算了", "取消", "不用了", "没有", "不可以"])
def test_no_means_no(text):
    assert explicit_answer(text) is False


@pytest.mark.parametrize(("text", "wanted"), [
    ("我不记得密码了帮我转人工", "human_agent"), ("找客服", "human_agent"), ("人工", "human_agent"),
    ("绿色 通道", "green_channel"), ("我要走绿色通道", "green_channel"), ("一二三四", None), ("/dtmf", None),
])
def test_a_request_for_a_human_is_read_from_the_words(text, wanted):
    assert human_request(text) == wanted


@pytest.mark.parametrize(("text", "cents"), [
    ("等一下，你们现在一年定期利率是多少", None), ("三个月定期", None), ("从尾号4321的卡转两百块钱到尾号9999的卡上", 20000),
    ("两百块", 20000), ("5号转三百", 30000), ("四三二一那张卡转三千", 300000), ("百分之二", None), ("一块钱", 100),
])
def test_amounts_come_only_from_amount_expressions(text, cents):
    assert amount_in_context(text) == cents
