"""The action server follows the logging convention: every line logged while an action runs names its call.

A real action server (`rasa run actions`, as the stack starts it) on a bank store that cannot open, so the actions
log: the start-up line belongs to no call, and each /webhook's lines belong to the conversation Rasa named.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
import zlib
from pathlib import Path

import pytest

from actions.log_context import sender_of
from call_logging import UNKNOWN_CALL
from tests.rasa_servers import RASA_BIN, free_port, kill_group, start, wait_for

LOOKUP_FAILED = "customer lookup failed at call start"


@pytest.fixture(scope="module")
def action_server(tmp_path_factory: pytest.TempPathFactory):
    """An action server whose bank store cannot be created (its folder would sit under a regular file)."""
    workdir = tmp_path_factory.mktemp("action-server-logs")
    (workdir / "not-a-folder").write_text("")
    port = free_port()
    env = dict(os.environ, BANK_DB_URL=f"sqlite:///{workdir / 'not-a-folder' / 'bank.db'}",
               RASA_TELEMETRY_ENABLED="false", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    log = workdir / "actions.log"
    process = start([str(RASA_BIN), "run", "actions", "--actions", "actions", "-p", str(port)], env, log)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", process, log)
        yield f"http://127.0.0.1:{port}/webhook", log
    finally:
        kill_group(process)


def action_call(sender_id: str, action: str = "action_call_start") -> dict:
    start_message = {"intent": {"name": "call_start"}, "entities": [], "text": "/call_start"}
    return {
        "next_action": action,
        "sender_id": sender_id,
        "version": "3.6.2",
        "domain": {},
        "tracker": {
            "sender_id": sender_id, "slots": {}, "latest_message": start_message, "paused": False,
            "followup_action": None, "active_loop": {}, "latest_action_name": "action_listen",
            "events": [{"event": "user", "text": "/call_start", "parse_data": start_message,
                        "metadata": {"caller_number": "13800000000", "channel": "sip"}}],
        },
    }


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status


def lines_of(log: Path, text: str) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if text in line]


def test_start_up_lines_belong_to_no_call(action_server):
    _, log = action_server
    assert any("call=- " in line for line in lines_of(log, "bank store not ready at start-up"))


def test_each_action_run_logs_with_its_own_call_even_when_runs_overlap(action_server):
    url, log = action_server
    senders = [f"sip-{n:02d}-0f3c9a1e-7b2d-4c55-9e61-2a8d4b7c1f00" for n in range(6)]
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda s=s: statuses.append(post(url, json.dumps(action_call(s)).encode())))
               for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert statuses == [200] * len(senders)  # a dead bank costs the greeting its personal touch, not the call
    for sender in senders:
        assert len([line for line in lines_of(log, LOOKUP_FAILED) if f"call={sender} " in line]) == 1
    # the module's other tests share the server and its log: no lookup line, theirs or these, lost its call
    assert not [line for line in lines_of(log, LOOKUP_FAILED) if "call=- " in line]


def test_a_deflated_action_call_names_its_call_too(action_server):
    url, log = action_server
    body = zlib.compress(json.dumps(action_call("ws-deflated-call")).encode())
    assert post(url, body, {"Content-Encoding": "deflate"}) == 200
    assert [line for line in lines_of(log, LOOKUP_FAILED) if "call=ws-deflated-call " in line]


def test_a_forged_call_id_cannot_forge_a_log_line(action_server):
    url, log = action_server
    forged = "x\n2026-11-29 09:00:00 ERROR actions: transfer approved for 陈晓明"
    assert post(url, json.dumps(action_call(forged)).encode()) == 200
    assert not [line for line in log.read_text(errors="replace").splitlines() if line.startswith("2026-11-29 09:00")]
    assert [line for line in lines_of(log, LOOKUP_FAILED) if "call=x?2026-11-29?09:00:00?ERROR" in line]


def test_the_call_of_a_request_is_read_as_the_webhook_reads_it():
    body = json.dumps({"sender_id": "sip-1", "next_action": "action_call_start"}).encode()
    assert sender_of("/webhook", {}, body) == "sip-1"
    assert sender_of("/webhook", {"Content-Encoding": "deflate"}, zlib.compress(body)) == "sip-1"
    assert sender_of("/health", {}, body) == UNKNOWN_CALL
    for garbage in (b"", b"{not json", b"[1, 2]", b"\xff\xfe", json.dumps({"sender_id": None}).encode(),
                    b"[" * 100_000):  # nested too deep for the JSON parser
        assert sender_of("/webhook", {}, garbage) == UNKNOWN_CALL
    assert sender_of("/webhook", {"Content-Encoding": "deflate"}, b"not deflated") == UNKNOWN_CALL

