"""The trainers' loop end to end against a REAL Rasa server: a Cantonese caller asks for the balance three times, the
running model takes each sentence for out of scope, and the dialogue hands the call over after three strikes. The
call record notes each turn's NLU result (with the bridge's own `nlu_note` from the real tracker); `make review`'s
code lists the three turns (from a calls-*.jsonl file), `make label`'s code labels them check_balance, a retrain
learns them, `make swap-model`'s code swaps the model in (PUT /model, after its idle wait, which finds no gateway
here) while a conversation keeps talking, and then the sentences are understood.

Three labelled turns, not one: a single example among ~2.8k does not reliably move DIET, and the three strikes of
one escalated call are what a trainer meets in the review. Each sentence must fall in the training 80%
(scripts/split_nlu.py): a held-out one goes to tests/nlu/heldout.yml and teaches nothing, by design.

On a single host the swap blocks Rasa for the whole load (rasa/server.py loads on its event loop): turns sent during
it wait, longer than the gateway's reply timeout on a busy machine. That is why `make swap-model` waits for no call in
progress first; this test does not claim that no turn is late: it measures how late they were and checks that the
conversation goes on where it was, and that a turn after the swap is answered in time.

Cost (2 cores): one Rasa server of its own (it must not swap the shared stack's model under other tests), and one
retrain with `make train`'s command, in which the graph cache that `make train` filled (.rasa/cache) spares the
dialogue policies: only the NLU pipeline trains (about 3.3 CPU-minutes; `--finetune --epoch-fraction 0.2` measured
no cheaper, as it retrains TEDPolicy too and pays the same TensorFlow start-up; docs/TRAINERS.md).
Everything is written under the test's temporary folder: a copy of the Rasa project, the records, the
models; data/nlu and models/rasa of the repository are never touched.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

import bot.nlu_review as nlu_review
from bot.processors.rasa_bridge import nlu_note, parse_data_of
from call_contract import NOT_UNDERSTOOD_INTENTS, REASON_NLU_FALLBACK
from scripts import split_nlu, swap_model
from settings import REPO_ROOT, get_settings
from tests.rasa_servers import RASA_BIN, free_port, kill_group, start, trained_model, wait_for

pytestmark = pytest.mark.integration

TOKEN = "trainers-loop-token"
# What a Cantonese caller says for "how much is left in my account": the first three that are strikes for the running
# model (nlu_fallback or out_of_scope, what the dialogue's 3-strike count counts; a low-confidence guess of another
# intent is no strike) and that fall in the training 80% are used. None of them is
# in data/, the held-out split or the external evaluation set (the labeller refuses those). If a round of NLU data
# teaches the model Cantonese, write candidates of another kind the model does not yet know.
CANDIDATES = ["我户头仲有几多银纸", "我张卡入面仲有几多银纸", "睇下我仲有几多钱", "帮我睇睇仲剩几多钱",
              "我个户口仲剩几多", "我嘅户口而家有几多钱", "唔该睇下我张卡仲有几多", "我户口仲有几多钱",
              "睇下我户口仲有几多钱", "看下我嘅户口结余", "帮我查下户口结余唔该"]
LABEL = "check_balance"
STRIKES = 3


def _json(url: str, *, method: str = "GET", body: dict | None = None, timeout: float = 30.0) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            raw = answer.read()
            return answer.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, None
    except OSError:  # a timeout: the gateway would have given up on this turn
        return -1, None


@pytest.fixture(scope="module")
def base_model() -> Path:
    model = trained_model()
    if model is None or not model.exists():
        pytest.skip("no trained Rasa model: run `make train` (or set DIALOGUE_TEST_MODEL)")
    return model


@pytest.fixture(scope="module")
def rasa(base_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """A Rasa server of this test's own, on the model `make train` built; no action server (NLU is what is tested,
    and a turn whose action cannot run is still answered)."""
    workdir = tmp_path_factory.mktemp("trainers-rasa")
    port = free_port()
    env = dict(os.environ, RASA_TELEMETRY_ENABLED="false", TRACKER_DB_URL=f"sqlite:///{workdir / 'tracker.db'}",
               ACTION_SERVER_URL=f"http://127.0.0.1:{free_port()}/webhook")
    log = workdir / "rasa.log"
    process = start([str(RASA_BIN), "run", "--enable-api", "--auth-token", TOKEN, "-i", "127.0.0.1", "-p", str(port),
                     "-m", str(base_model), "--endpoints", "endpoints.yml", "--credentials", "credentials.yml"],
                    env, log)
    try:
        wait_for(f"http://127.0.0.1:{port}/webhooks/rest/", process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        kill_group(process)


def project_copy(root: Path) -> Path:
    """What `make train` reads, copied: config.yml, domain/, data/ (without a review.yml), the held-out file."""
    shutil.copy(REPO_ROOT / "config.yml", root / "config.yml")
    shutil.copytree(REPO_ROOT / "domain", root / "domain")
    shutil.copytree(REPO_ROOT / "data", root / "data", ignore=shutil.ignore_patterns("review.yml*"))
    (root / "tests" / "nlu").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "tests" / "nlu" / "heldout.yml", root / "tests" / "nlu" / "heldout.yml")
    return root


def retrain(project: Path, out: Path) -> Path:
    """`make train`'s command on the project copy. cwd is the repository: config.yml's paths (the Jieba dictionary,
    the card-role component) and Rasa's graph cache (.rasa/cache), which `make train` filled: only the NLU pipeline
    is retrained, the dialogue policies come from the cache."""
    log = out.parent / "train.log"
    with log.open("wb") as output:
        done = subprocess.run([str(RASA_BIN), "train", "--config", str(project / "config.yml"),
                               "--domain", str(project / "domain"), "--data", str(project / "data"),
                               "--out", str(out), "--fixed-model-name", "ivr"],
                              cwd=REPO_ROOT, env=dict(os.environ, RASA_TELEMETRY_ENABLED="false"),
                              stdout=output, stderr=subprocess.STDOUT, timeout=1800)
    assert done.returncode == 0 and (out / "ivr.tar.gz").exists(), log.read_text(errors="replace")[-3000:]
    return out / "ivr.tar.gz"


def test_review_label_retrain_swap_round_trip(rasa: str, tmp_path: Path, monkeypatch, capsys):
    settings = get_settings()
    eval_dir = Path(settings.trainer.eval_dir)
    if not eval_dir.is_dir():
        pytest.skip(f"no external evaluation set at {eval_dir} (labels are refused without it)")
    parse = lambda text: _json(f"{rasa}/model/parse?token={TOKEN}", method="POST", body={"text": text})[1]  # noqa: E731

    # 1. A call: three times the caller says something the running model does not understand, and the dialogue hands
    #    the call over (three strikes); the record notes each turn's NLU result as the gateway's bridge does (from
    #    the real tracker).
    def a_strike(text: str) -> bool:
        return parse(text)["intent"]["name"] in NOT_UNDERSTOOD_INTENTS

    said = [text for text in CANDIDATES if not split_nlu.is_heldout(text) and a_strike(text)][:STRIKES]
    assert len(said) == STRIKES, "the running model understands the candidates: write ones it does not"
    call_id = "sip-trainers-loop-1"
    turns, before = [], {}
    for index, text in enumerate(said):
        assert _json(f"{rasa}/webhooks/rest/webhook", method="POST",
                     body={"sender": call_id, "message": text})[0] == 200
        tracker = _json(f"{rasa}/conversations/{call_id}/tracker?token={TOKEN}")[1]
        note = nlu_note(parse_data_of(tracker, text))
        turns.append({"t": 1.0 + 5 * index, "who": "caller", "source": "speech", "text": text, "nlu": note})
        before[text] = f"{note['intent']} {note['confidence']:.3f}"
    record = {"call_id": call_id, "started_at": time.time(), "outcome": "handed_off",
              "handoff_reason": REASON_NLU_FALLBACK, "transcript": turns}

    calls = tmp_path / "calls"
    calls.mkdir()
    (calls / f"calls-{datetime.now(timezone.utc):%Y%m%d}.jsonl").write_text(
        json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")

    # 2. Review (`make review`'s code on the records' folder): the three strikes are listed.
    (tmp_path / "project").mkdir()
    project = project_copy(tmp_path / "project")
    monkeypatch.setattr(nlu_review, "get_settings", lambda: dataclasses.replace(
        settings, trainer=dataclasses.replace(settings.trainer, project_dir=str(project))))
    capsys.readouterr()
    assert nlu_review.main(["--dir", str(calls), "--json"]) == 0
    items = [item for members in json.loads(capsys.readouterr().out).values() for item in members]
    assert sorted(item["text"] for item in items) == sorted(said)
    assert all(nlu_review.REASON_THREE_STRIKES in item["reasons"] for item in items)

    # 3. Label (`make label`'s code), on the copy of the project: each one goes to the training data.
    for item in items:
        assert nlu_review.main(["--dir", str(calls), "label", item["key"], LABEL, "--by", "test"]) == 0
        out = capsys.readouterr().out
        assert f"labelled {LABEL}" in out and "held-out" not in out, out
    review = (project / "data" / "nlu" / "review.yml").read_text(encoding="utf-8")
    assert all(f"- {text}" in review for text in said), review
    assert not (REPO_ROOT / "data" / "nlu" / "review.yml").exists() or \
        not set(said) & set((REPO_ROOT / "data" / "nlu" / "review.yml").read_text(encoding="utf-8").split())

    # 4. Retrain.
    (tmp_path / "models").mkdir()
    started = time.monotonic()
    model = retrain(project, tmp_path / "models")
    trained_s = time.monotonic() - started

    # 5. Swap (`make swap-model`'s code: its idle wait finds no gateway at a closed port), while a conversation in
    #    progress keeps talking with the gateway's reply timeout.
    in_progress = "sip-trainers-loop-2"
    reply_timeout_s = settings.rasa_reply_timeout_s
    webhook = f"{rasa}/webhooks/rest/webhook"
    assert _json(webhook, method="POST", body={"sender": in_progress, "message": "你好"})[0] == 200
    events_before = len(_json(f"{rasa}/conversations/{in_progress}/tracker?token={TOKEN}")[1]["events"])
    statuses: list[int] = []
    swapping = threading.Event()
    waits: list[float] = []

    def keep_talking() -> None:
        while not swapping.is_set():
            sent = time.monotonic()
            statuses.append(_json(webhook, method="POST", timeout=reply_timeout_s,
                                  body={"sender": in_progress, "message": "我想查余额"})[0])
            waits.append(time.monotonic() - sent)

    talker = threading.Thread(target=keep_talking)
    talker.start()
    swap_settings = dataclasses.replace(
        settings, rasa=dataclasses.replace(settings.rasa, token=TOKEN, model_dir=str(tmp_path / "models")),
        gateway=dataclasses.replace(settings.gateway, host="127.0.0.1", port=free_port()))
    monkeypatch.setattr(swap_model, "get_settings", lambda: swap_settings)
    try:
        swapped = swap_model.main(["--url", rasa, "--model", str(model), "--idle-timeout", "5"])
    finally:
        swapping.set()
        talker.join(timeout=reply_timeout_s + 30)
    swap_out = capsys.readouterr().out
    assert swapped == 0 and "no gateway running" in swap_out
    status, answer = _json(f"{rasa}/status?token={TOKEN}")
    assert status == 200 and answer["model_id"] == swap_model.model_fingerprint(model)
    assert statuses and set(statuses) <= {200, -1}  # -1: later than the gateway waits (the swap blocked Rasa)
    sent = time.monotonic()
    assert _json(webhook, method="POST", timeout=reply_timeout_s * 4,
                 body={"sender": in_progress, "message": "我想查余额"})[0] == 200
    after_swap_s = time.monotonic() - sent
    events_after = _json(f"{rasa}/conversations/{in_progress}/tracker?token={TOKEN}")[1]["events"]
    said_in_progress = [event["text"] for event in events_after if event.get("event") == "user"]
    assert len(events_after) > events_before and said_in_progress[0] == "你好"  # it went on where it was

    # 6. The relabelled sentences are now understood.
    after = {text: parse(text)["intent"] for text in said}
    late = sum(1 for status in statuses if status == -1)
    learnt = {text: f"{guess['name']} {guess['confidence']:.3f}" for text, guess in after.items()}
    print(f"trainers' loop: {before} -> {learnt}; "
          f"retrain {trained_s:.0f} s; {swap_out.strip().splitlines()[-1]}; {len(waits)} turns during the swap, "
          f"{late} later than the gateway's {reply_timeout_s:g} s, longest wait {max(waits):.1f} s; "
          f"first turn after the swap {after_swap_s:.1f} s")
    assert all(guess["name"] == LABEL for guess in after.values()), learnt
