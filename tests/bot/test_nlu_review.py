"""The trainers' review list (bot/nlu_review.py): which caller turns of the call records are listed, how they are
grouped, and that secure, keypad and masked input stays as the records keep it."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from bot.nlu_review import call_digest, find_item, grouped, main, review_items, terminal_json

LOW = 0.6
STARTED = 1_700_000_000.0


def key_of(call_id: str, index: int, started: float = STARTED) -> str:
    return f"{datetime.fromtimestamp(started, timezone.utc):%Y%m%d}-{call_digest(call_id)}-{index}"


def turn(text: str, intent: str, confidence: float | None, *, fallback: bool = False, source: str = "speech",
         t: float = 1.0) -> dict:
    return {"t": t, "who": "caller", "source": source, "text": text,
            "nlu": {"intent": intent, "confidence": confidence, "fallback": fallback}}


def record(call_id: str, turns: list[dict], **extra) -> dict:
    transcript = []
    for caller_turn in turns:
        transcript += [caller_turn, {"t": 2.0, "who": "bot", "text": "好的。"}]
    return {"call_id": call_id, "started_at": STARTED, "transcript": transcript, **extra}


def test_fallbacks_and_low_confidence_turns_are_listed_and_the_rest_are_not():
    records = [record("call-1", [turn("我想查余额", "check_balance", 0.97),
                                 turn("钱匣子还剩几个子儿", "check_balance", 0.49, fallback=True),
                                 turn("那个流水吧", "query_transactions", 0.55)])]
    items = list(review_items(records, low_confidence=LOW))
    assert [(i.text, i.intent, i.reasons) for i in items] == [
        ("钱匣子还剩几个子儿", "check_balance", ("nlu_fallback",)),
        ("那个流水吧", "query_transactions", ("low_confidence",))]
    assert items[0].key == key_of("call-1", 2) and "call-1" not in json.dumps([i.as_json() for i in items])


def test_the_turns_of_a_three_strike_escalation_are_marked_even_an_out_of_scope_one_said_confidently():
    turns = [turn("查余额", "check_balance", 0.95), turn("嗯那个啥", "inform", 0.3, fallback=True),
             turn("天气怎么样", "out_of_scope", 0.92), turn("你听不懂吗", "complaint", 0.35, fallback=True)]
    escalated = record("call-2", turns, outcome="handoff", handoff_reason="nlu_fallback")
    reasons = {i.text: i.reasons for i in review_items([escalated], low_confidence=LOW)}
    assert reasons == {"嗯那个啥": ("nlu_fallback", "three_strikes"), "天气怎么样": ("three_strikes",),
                       "你听不懂吗": ("nlu_fallback", "three_strikes")}
    # the same turns in a call handed over because the caller asked: no strikes
    asked = record("call-3", turns, outcome="handoff", handoff_reason="human_agent")
    assert {i.text for i in review_items([asked], low_confidence=LOW)} == {"嗯那个啥", "你听不懂吗"}


def test_secure_keypad_unnoted_and_damaged_turns_are_never_listed():
    secure = {"t": 1.0, "who": "caller", "source": "keypad", "text": "****"}
    records = [record("c", [secure, turn("****", "inform", 0.1, fallback=True),
                            turn("/dtmf", "dtmf", 0.1, source="keypad"),
                            {"who": "caller", "source": "speech", "text": "没有 nlu 的旧记录"},
                            turn("我的卡号是****", "inform", 0.2, fallback=True)]),
               {"call_id": "x", "transcript": "not a list"}, "not a record", {"transcript": [None, 3]}]
    items = list(review_items(records, low_confidence=LOW))
    assert [i.text for i in items] == ["我的卡号是****"]  # masked digits stay masked; listed, not labelable


def test_groups_are_by_predicted_intent_largest_first():
    records = [record("a", [turn("一", "check_balance", 0.3, fallback=True, t=1),
                            turn("二", "complaint", 0.5), turn("三", "check_balance", 0.2, fallback=True, t=9)])]
    groups = grouped(review_items(records, low_confidence=LOW))
    assert list(groups) == ["check_balance", "complaint"]
    assert [i.text for i in groups["check_balance"]] == ["三", "一"]  # newest first


def test_find_item_names_only_listed_turns():
    records = [record("a", [turn("查余额", "check_balance", 0.99), turn("钱匣子", "check_balance", 0.3, fallback=True)])]
    assert find_item(records, key_of("a", 2), low_confidence=LOW).text == "钱匣子"
    assert find_item(records, key_of("a", 0), low_confidence=LOW) is None  # understood: not for labelling


def test_the_same_sentence_said_in_many_calls_is_one_item_with_its_count_and_the_list_is_bounded():
    records = [record(f"c{i}", [turn("钱匣子还剩几个子儿", "check_balance", 0.3, fallback=True, t=i)])
               for i in range(50)] + [record(f"d{i}", [turn(f"别的话{chr(0x4e00 + i)}", "complaint", 0.3,
                                                             fallback=True)]) for i in range(30)]
    groups = grouped(review_items(records, low_confidence=LOW), limit=10)
    assert sum(len(members) for members in groups.values()) == 10
    assert groups["check_balance"][0].count == 50 and groups["check_balance"][0].key == key_of("c49", 0)


def test_the_developers_test_calls_are_left_out_unless_asked():
    said = turn("钱匣子还剩几个子儿", "check_balance", 0.3, fallback=True)
    records = [record("web-" + "a" * 32, [said]), record("console-" + "b" * 32, [said]),
               record("x", [said], channel="web"), record("sip-" + "c" * 32, [said], channel="sip")]
    listed = list(review_items(records, low_confidence=LOW))
    assert [item.call for item in listed] == [call_digest("sip-" + "c" * 32)]
    assert len(list(review_items(records, low_confidence=LOW, include_developers=True))) == 4


def test_make_review_reads_only_the_window_of_days(tmp_path, capsys):
    now = time.time()
    old = record("old", [turn("很久以前说的话", "check_balance", 0.3, fallback=True)])
    old["started_at"] = now - 40 * 86400
    new = record("new", [turn("今天说的话", "check_balance", 0.3, fallback=True)])
    new["started_at"] = now - 60
    for item in (old, new):
        day = datetime.fromtimestamp(item["started_at"], timezone.utc)
        (tmp_path / f"calls-{day:%Y%m%d}.jsonl").write_text(json.dumps(item, ensure_ascii=False) + "\n",
                                                            encoding="utf-8")
    assert main(["--dir", str(tmp_path), "--days", "7"]) == 0
    out = capsys.readouterr().out
    assert "今天说的话" in out and "很久以前说的话" not in out
    assert main(["--dir", str(tmp_path), "--days", "60"]) == 0 and "很久以前说的话" in capsys.readouterr().out


def test_review_json_escapes_controls_and_bidirectional_marks():
    out = terminal_json({"text": "查余额\u202e\x85\x1b[2J"})
    assert "\u202e" not in out and "\x85" not in out and "\x1b" not in out and "\\u202e" in out
    assert json.loads(out) == {"text": "查余额\u202e\x85\x1b[2J"}


def test_make_review_prints_the_groups_from_the_record_files(tmp_path, capsys):
    records = [record("a", [turn("钱匣子还剩几个子儿\x1b[2J", "check_balance", 0.3, fallback=True)])]
    records[0]["started_at"] = time.time()
    (tmp_path / f"calls-{datetime.now(timezone.utc):%Y%m%d}.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n{damaged\n", encoding="utf-8")
    assert main(["--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "== check_balance (1)" in out and "钱匣子还剩几个子儿" in out and "\x1b" not in out
    assert main(["--dir", str(tmp_path / "none")]) == 1


def test_make_label_writes_the_listed_turns_own_words(tmp_path, capsys, monkeypatch):
    import dataclasses
    import shutil

    import bot.nlu_review as review
    from settings import REPO_ROOT, Settings

    project = tmp_path / "project"
    shutil.copytree(REPO_ROOT / "data" / "nlu", project / "data" / "nlu", ignore=shutil.ignore_patterns("review.yml*"))
    shutil.copytree(REPO_ROOT / "domain", project / "domain")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "external.yml").write_text(  # a real line: an empty folder would refuse every label
        'nlu:\n- intent: check_balance\n  examples: |\n    - 帮我查询一下银行卡余额\n', encoding="utf-8")
    base = Settings()
    monkeypatch.setattr(review, "get_settings", lambda: dataclasses.replace(
        base, trainer=dataclasses.replace(base.trainer, project_dir=str(project), eval_dir=str(tmp_path / "eval"))))
    calls = tmp_path / "calls"
    calls.mkdir()
    said = "钱匣子还剩几个子儿"
    made = record("a", [turn(said, "check_balance", 0.3, fallback=True)])
    made["started_at"] = STARTED
    (calls / "calls-20231114.jsonl").write_text(json.dumps(made, ensure_ascii=False) + "\n", encoding="utf-8")
    key = key_of("a", 0)
    assert main(["--dir", str(calls), "label", key, "check_balance", "--by", "li"]) == 0
    assert main(["--dir", str(calls), "label", key, "--out-of-scope"]) == 0
    assert main(["--dir", str(calls), "label", "nope-1", "check_balance"]) == 1
    assert main(["--dir", str(calls), "label", key]) == 2
    written = (project / "data" / "nlu" / "review.yml").read_text(encoding="utf-8")
    assert f"- intent: out_of_scope\n  examples: |\n    - {said}\n" in written and "check_balance" not in written
    assert "relabelled check_balance → out_of_scope" in capsys.readouterr().out


def test_the_three_strikes_are_counted_on_the_dialogues_own_not_understood_set():
    """actions/service.py hands over after 3 turns of call_contract.NOT_UNDERSTOOD_INTENTS; the review marks those."""
    from pathlib import Path

    import bot.nlu_review as review
    import call_contract

    assert review.NOT_UNDERSTOOD is call_contract.NOT_UNDERSTOOD_INTENTS
    actions = Path(call_contract.__file__).parent / "actions"
    service = (actions / "service.py").read_text(encoding="utf-8")
    assert "from call_contract import NOT_UNDERSTOOD_INTENTS, REASON_NLU_FALLBACK" in service
    assert '"nlu_fallback"' not in service and '"out_of_scope"' not in (actions / "common.py").read_text("utf-8")
    assert {"call_start", "dtmf", "transfer_failed", "survey_no_answer"} == call_contract.GATEWAY_ONLY_INTENTS
