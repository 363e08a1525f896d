"""Trainers' labels (bot/nlu_labels.py) on a temporary copy of the Rasa project: valid Rasa NLU YAML with provenance,
nothing from the external evaluation set, idempotent, safe with concurrent writers, odd Unicode and YAML injection."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from bot.nlu_labels import LabelRefused, Labeller, clean_sentence, comparable, read_entries
from scripts import split_nlu
from settings import REPO_ROOT, get_settings

CALL = "3f2a9c0d1e2b4a5f"
EVAL_LINE = "帮我查询一下银行卡余额"  # a line of our own fake evaluation set in these tests
TRAIN_SPLIT = "钱匣子还剩几个子儿"  # split_nlu puts it in training
HELDOUT_SPLIT = "我那个钱匣子里头还剩多少个子儿"  # ... and this one in the held-out 20%


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what labelling reads and writes: data/nlu, the held-out file, the domain."""
    root = tmp_path / "project"
    shutil.copytree(REPO_ROOT / "data" / "nlu", root / "data" / "nlu", ignore=shutil.ignore_patterns("review.yml*"))
    shutil.copytree(REPO_ROOT / "domain", root / "domain")
    (root / "tests" / "nlu").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "tests" / "nlu" / "heldout.yml", root / "tests" / "nlu" / "heldout.yml")
    return root


@pytest.fixture
def eval_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "external.yml").write_text(
        f'version: "3.1"\nnlu:\n- intent: check_balance\n  examples: |\n    - {EVAL_LINE}\n    - 查余额\n',
        encoding="utf-8")
    (folder / "README.md").write_text("never train on these\n", encoding="utf-8")
    return folder


@pytest.fixture
def labeller(project: Path, eval_dir: Path) -> Labeller:
    return Labeller(project, eval_dir)


def rasa_examples(path: Path) -> list[tuple[str, str]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [(item["intent"], line[2:]) for item in data["nlu"] for line in item["examples"].splitlines()]


def test_a_label_is_a_rasa_nlu_block_with_its_provenance(labeller: Labeller):
    result = labeller.label(TRAIN_SPLIT, "check_balance", call=CALL, by="wang.li", now=1_795_000_000)
    assert result.status == "added"
    text = labeller.review_file.read_text(encoding="utf-8")
    assert f"# review: call={CALL} at=2026-11-18T" in text and "by=wang.li" in text
    assert rasa_examples(labeller.review_file) == [("check_balance", TRAIN_SPLIT)]
    assert split_nlu.check(labeller.nlu_dir, labeller.heldout_file) == []


def test_labelling_twice_changes_nothing_and_a_new_intent_replaces_the_old(labeller: Labeller):
    labeller.label(TRAIN_SPLIT, "check_balance", call=CALL, by="a")
    before = labeller.review_file.read_bytes()
    assert labeller.label(f" {TRAIN_SPLIT}！ ", "check_balance", call=CALL, by="b").status == "unchanged"
    assert labeller.review_file.read_bytes() == before
    assert labeller.label(TRAIN_SPLIT, "query_transactions", call=CALL, by="c").status == "relabelled"
    assert rasa_examples(labeller.review_file) == [("query_transactions", TRAIN_SPLIT)]


@pytest.mark.parametrize("variant", [
    EVAL_LINE, f"{EVAL_LINE}？", "帮我 查询一下，银行卡余额。", EVAL_LINE.replace("银行卡", "银行\u200b卡"),
    "帮我查询一下银行卡余额ＡＢ"[:-2] + "!!", f"\u3000{EVAL_LINE}\t\n",
    "帮我查询一下银行卡的余额",  # one character more: a near copy
    EVAL_LINE.replace("余", "余\u0301"), EVAL_LINE.replace("余", "余\ufe00"),  # a combining mark, a variation selector
    "查余额吧",  # holds the short eval line 「查余额」
])
def test_a_sentence_of_the_external_evaluation_set_never_enters(labeller: Labeller, variant: str):
    with pytest.raises(LabelRefused, match="external evaluation set"):
        labeller.label(variant, "check_balance", call=CALL, by="a")
    assert not labeller.review_file.exists()


def test_the_real_external_set_is_found_where_the_settings_say(project: Path):
    eval_dir = Path(get_settings().trainer.eval_dir)
    if not eval_dir.is_dir():
        pytest.skip(f"no external evaluation set at {eval_dir}")
    with pytest.raises(LabelRefused, match="external evaluation set"):
        Labeller(project, eval_dir).label("帮我查询一下银行卡余额 ？", "check_balance", call=CALL, by="a")


def test_without_the_evaluation_set_nothing_is_labelled(project: Path, tmp_path: Path):
    with pytest.raises(LabelRefused, match="missing"):
        Labeller(project, tmp_path / "nowhere").label(TRAIN_SPLIT, "check_balance", call=CALL, by="a")


@pytest.mark.parametrize("files", [
    {},  # an empty folder
    {"README.md": "x"},
    {"external.json": '{"nlu": []}', "external.yml": 'nlu:\n- intent: greet\n  examples: |\n    - 你好呀\n'},
    {"lines.txt": EVAL_LINE},
    {"external.yml": "just: [a, mapping]\n"},  # YAML of another shape
    {"external.yml": 'nlu:\n- intent: greet\n  examples: |\n    - 你好呀\n', "more.yaml": "- a list\n"},
])
def test_an_evaluation_set_that_cannot_be_fully_read_refuses_every_label(project: Path, tmp_path: Path, files):
    folder = tmp_path / "odd-eval"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    labeller = Labeller(project, folder)
    with pytest.raises(LabelRefused, match="evaluation set"):
        labeller.label(TRAIN_SPLIT, "check_balance", call=CALL, by="a")
    assert not labeller.review_file.exists()


def test_a_different_sentence_is_not_mistaken_for_a_near_copy(labeller: Labeller):
    assert labeller.label("我想知道卡里还剩多少钱呢", "check_balance", call=CALL, by="a").status in ("added", "heldout")


@pytest.mark.parametrize("text", ["尾号1234的卡", "尾号１２３４", "卡号尾号幺二三四", "转五三二八块"])
def test_digits_never_reach_the_git_tracked_file(labeller: Labeller, text: str):
    with pytest.raises(LabelRefused, match="digits"):
        labeller.label(text, "check_balance", call=CALL, by="a")


def test_a_held_out_split_sentence_joins_the_held_out_file_and_the_split_still_checks(labeller: Labeller):
    assert split_nlu.is_heldout(HELDOUT_SPLIT) and not split_nlu.is_heldout(TRAIN_SPLIT)
    assert labeller.label(HELDOUT_SPLIT, "check_balance", call=CALL, by="a").status == "heldout"
    assert labeller.label(HELDOUT_SPLIT, "check_balance", call=CALL, by="a").status == "unchanged"
    assert rasa_examples(labeller.review_file) == []  # only its provenance, as a comment
    assert f"# held out: call={CALL} at=" in labeller.review_file.read_text(encoding="utf-8")
    assert split_nlu.check(labeller.nlu_dir, labeller.heldout_file) == []
    held = split_nlu.read_heldout(labeller.heldout_file)
    assert [e.intent for e in held if e.text == HELDOUT_SPLIT] == ["check_balance"]


def test_a_label_that_went_to_the_held_out_file_can_be_corrected(labeller: Labeller):
    labeller.label(HELDOUT_SPLIT, "check_balance", call=CALL, by="a")
    result = labeller.label(HELDOUT_SPLIT, "query_transactions", call=CALL, by="b")
    assert result.status == "relabelled"
    held = split_nlu.read_heldout(labeller.heldout_file)
    assert [e.intent for e in held if e.text == HELDOUT_SPLIT] == ["query_transactions"]
    notes = labeller.review_file.read_text(encoding="utf-8")
    assert notes.count("# held out:") == 1 and "by=b intent=query_transactions" in notes
    assert split_nlu.check(labeller.nlu_dir, labeller.heldout_file) == []


def test_writing_the_held_out_file_is_atomic(labeller: Labeller, monkeypatch):
    before = labeller.heldout_file.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", crash)
    with pytest.raises(OSError):
        split_nlu.write_heldout({"greet": ["你好"]}, labeller.heldout_file)
    assert labeller.heldout_file.read_bytes() == before
    assert [p.name for p in labeller.heldout_file.parent.iterdir()] == ["heldout.yml"]


@pytest.mark.parametrize("text,reason", [
    ("我的卡号是****", "masked"), ("  。！ ", "empty"), ("查[余额](amount)", "brackets"), ("字" * 201, "longer"),
    ("# 注释", "starts with"),
])
def test_what_cannot_teach_the_bot_is_refused(labeller: Labeller, text: str, reason: str):
    with pytest.raises(LabelRefused, match=reason):
        labeller.label(text, "check_balance", call=CALL, by="a")


@pytest.mark.parametrize("intent", ["call_start", "dtmf", "nlu_fallback", "survey_no_answer", "transfer_failed",
                                    "no_such_intent", "check_balance\n- x"])
def test_only_spoken_intents_of_the_domain_are_labels(labeller: Labeller, intent: str):
    with pytest.raises(LabelRefused, match="not an intent"):
        labeller.label(TRAIN_SPLIT, intent, call=CALL, by="a")


def test_a_contradiction_with_the_training_data_is_refused_and_a_duplicate_is_a_no_op(labeller: Labeller):
    existing = next(e for e in split_nlu.read_training(labeller.nlu_dir) if e.intent == "check_balance"
                    and "[" not in e.text)
    assert labeller.label(existing.text, "check_balance", call=CALL, by="a").status == "unchanged"
    with pytest.raises(LabelRefused, match="settle"):
        labeller.label(existing.text, "complaint", call=CALL, by="a")


def test_yaml_injection_and_odd_unicode_stay_one_example(labeller: Labeller):
    nasty = ("钱匣子\n- intent: greet\n  examples: |\n    - 你好\n# x: \"y\" &a *a !!python/object \u202e还剩"
             "\u200b几个\x00子儿\ud800")
    with pytest.raises(LabelRefused, match="damaged"):  # a lone surrogate is damage: refused, not written
        labeller.label(nasty, "check_balance", call=CALL, by="a")
    nasty = next(nasty[:-1] + tail for tail in "一二三四五六七八九十"  # one that split_nlu keeps for training
                 if not split_nlu.is_heldout(clean_sentence(nasty[:-1] + tail)))
    result = labeller.label(nasty, "check_balance", call="not-hex\n- intent: x", by="王\n- intent: greet #")
    assert result.status == "added"
    examples = rasa_examples(labeller.review_file)
    assert len(examples) == 1 and examples[0][0] == "check_balance"
    assert "\n" not in examples[0][1] and "\u202e" not in examples[0][1] and "\x00" not in examples[0][1]
    comment = next(line for line in labeller.review_file.read_text(encoding="utf-8").splitlines()
                   if line.startswith("# review:"))
    assert comment.startswith("# review: call=unknown at=") and comment.endswith("by=王_-_intent_greet")
    assert read_entries(labeller.review_file)[0].text == examples[0][1]


def test_concurrent_writers_lose_no_label(labeller: Labeller):
    sentences = [f"存折上还剩几个大子儿{chr(0x4e00 + i)}" for i in range(12)]
    sentences = [s for s in sentences if not split_nlu.is_heldout(s)]
    errors: list[BaseException] = []

    def write(text: str) -> None:
        try:
            Labeller(labeller.project_dir, labeller.eval_dir).label(text, "check_balance", call=CALL, by="t")
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(s,)) for s in sentences]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(t for _, t in rasa_examples(labeller.review_file)) == sorted(sentences)


def test_concurrent_processes_lose_no_label(labeller: Labeller):
    """Two processes (the gateway's /trainer and a terminal) share only the lock file."""
    script = ("import sys; from pathlib import Path; from bot.nlu_labels import Labeller\n"
              "l = Labeller(Path(sys.argv[1]), Path(sys.argv[2]))\n"
              "for i in range(5): l.label(sys.argv[3] + '甲乙丙丁戊'[i], 'check_balance', call='ab', by='p')\n")
    stems = ["钱袋子里还有几个钱", "柜子里的存折还有几块"]
    runs = [subprocess.Popen([sys.executable, "-c", script, str(labeller.project_dir), str(labeller.eval_dir), stem],
                             cwd=REPO_ROOT) for stem in stems]
    assert [run.wait(timeout=60) for run in runs] == [0, 0]
    written = {t for _, t in rasa_examples(labeller.review_file)}
    expected = {f"{stem}{tail}" for stem in stems for tail in "甲乙丙丁戊"}
    assert {t for t in expected if not split_nlu.is_heldout(t)} <= written


def test_comparable_folds_width_case_spaces_punctuation_and_invisible_marks():
    assert comparable("ＡＢＣ， 查\u200b余额？") == comparable("abc查余额")


def test_a_review_file_edited_into_another_shape_is_not_rewritten(labeller: Labeller):
    labeller.label(TRAIN_SPLIT, "check_balance", call=CALL, by="a")
    edited = labeller.review_file.read_text(encoding="utf-8") + "- intent: greet\n  examples: |\n    - 手写的\n"
    labeller.review_file.write_text(edited, encoding="utf-8")
    with pytest.raises(LabelRefused, match="edited"):
        labeller.label("钱袋子里还有几个钱", "check_balance", call=CALL, by="a")
    assert labeller.review_file.read_text(encoding="utf-8") == edited


def test_a_held_out_sentence_with_entity_markup_is_recognised_without_it(labeller: Labeller):
    marked = next(e for e in split_nlu.read_heldout(labeller.heldout_file) if "](" in e.text)
    with pytest.raises(LabelRefused, match="held-out split"):
        labeller.label(split_nlu.plain_text(marked.text), "out_of_scope" if marked.intent != "out_of_scope"
                       else "greet", call=CALL, by="a")
