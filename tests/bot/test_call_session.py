"""CallSession: one call's life at any door (bot/call_session.py), with a scripted voice call."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from bot.admission import Admission, AtCapacity
from bot.call_session import CallSession, safe_caller_number
from bot.cdr import CdrWriter
from tests.bot.voice_doubles import QuietCall


class ScriptedCall(QuietCall):
    """A voice-loop call that records what reaches it; `fail_stop` makes its teardown raise."""

    def __init__(self, info, fail_stop: bool = False) -> None:
        super().__init__(info)
        self.keys: list[str] = []
        self.transfer_results: list[tuple[bool, str]] = []
        self.stopped_with: str | None = None
        self.fail_stop = fail_stop

    def feed_dtmf(self, key: str) -> None:
        self.keys.append(key)

    def transfer_result(self, ok: bool, detail: str = "") -> None:
        self.transfer_results.append((ok, detail))

    async def stop(self, cause: str = "remote_hangup") -> None:
        self.stopped_with = cause
        if self.fail_stop:
            raise RuntimeError("pipeline would not stop")


def cdrs(directory) -> list[dict]:
    return [json.loads(line) for path in directory.glob("cdr-*.jsonl") for line in path.read_text().splitlines()]


@pytest.mark.parametrize("raw,expected", [
    ("13800000001", "13800000001"), ("+86 138-0000-0001", "+8613800000001"), ("١٣٨٠٠٠٠٠٠٠١", ""),
    ("138０００", "138"), (None, ""), ("x" * 10 + "1" * 50, "1" * 32),
])
def test_caller_numbers_are_ascii_digits_only(raw, expected):
    assert safe_caller_number(raw) == expected


async def test_keys_reach_the_call_but_never_the_log(tmp_path, caplog):
    made: list[ScriptedCall] = []
    session = CallSession(lambda info: made.append(ScriptedCall(info)) or made[-1], "media_stream",
                          cdr_writer=CdrWriter(tmp_path))
    assert await session.start(on_audio=lambda pcm: None, on_clear=lambda: None)
    with caplog.at_level(logging.DEBUG, logger="bot.call_session"):
        for key in "135790":
            session.feed_dtmf(key)
    assert made[0].keys == list("135790")
    lines = [r.getMessage().replace(session.id, "") for r in caplog.records]
    assert lines and not any(any(ch in line for ch in "135790") for line in lines)
    await session.stop("remote_hangup")


async def test_at_the_limit_the_caller_hears_the_busy_prompt_and_no_slot_is_held(tmp_path):
    admission = Admission(1)
    assert admission.try_admit("sip-other", "sip")

    async def busy_audio(rate: int) -> bytes:
        return b"\x01\x00" * (rate // 10)  # 0.1 s

    def full(info):
        raise AtCapacity(admission.limit, busy_audio)

    session = CallSession(full, "audiosocket", cdr_writer=CdrWriter(tmp_path), admission=admission)
    assert not await session.start(on_audio=lambda pcm: None, on_clear=lambda: None)
    assert session.busy is not None
    frames: list[bytes] = []
    started = asyncio.get_running_loop().time()
    await session.play_busy(frames.append)
    assert b"".join(frames) == b"\x01\x00" * 800 and {len(f) for f in frames} == {320}  # 20 ms frames
    assert asyncio.get_running_loop().time() - started >= 0.08  # paced in real time, not dumped at once
    await session.stop("busy")
    [cdr] = cdrs(tmp_path)
    assert (cdr["cause"], cdr["outcome"]) == ("busy", "rejected") and admission.in_use == 1  # only sip-other


async def test_a_door_without_transfers_declines_the_handoff_back_to_the_dialogue(tmp_path):
    made: list[ScriptedCall] = []
    session = CallSession(lambda info: made.append(ScriptedCall(info)) or made[-1], "media_stream",
                          cdr_writer=CdrWriter(tmp_path))
    await session.start(on_audio=lambda pcm: None, on_clear=lambda: None)
    await made[0].on_handoff({"queue": "general", "reason": "green_channel"})
    await asyncio.sleep(0)
    assert made[0].transfer_results == [(False, "media_stream calls cannot be transferred")]
    await session.stop("remote_hangup")
    [cdr] = cdrs(tmp_path)
    assert (cdr["transfer_queue"], cdr["transfer_result"], cdr["green_channel"]) == ("general", "failed", True)


async def test_teardown_completes_once_even_when_the_voice_loop_fails_to_stop(tmp_path):
    admission = Admission(3)
    closed: list[str] = []
    session = CallSession(lambda info: ScriptedCall(info, fail_stop=True), "sip", cdr_writer=CdrWriter(tmp_path),
                          admission=admission)
    assert session.admit() and admission.in_use == 1
    await session.start(on_audio=lambda pcm: None, on_clear=lambda: None)
    session.before_record = lambda: closed.append("rtp closed")
    await asyncio.gather(session.stop("remote_bye"), session.stop("bridge_closed"))
    assert closed == ["rtp closed"] and admission.in_use == 0
    assert [cdr["cause"] for cdr in cdrs(tmp_path)] == ["remote_bye"]


async def test_a_handoff_leaves_the_agents_screen_pop_and_its_reference_travels_with_the_transfer(tmp_path, caplog):
    from bot.call_records import CallRecord
    from bot.screen_pop import ScreenPopStore, ref_tag

    made: list[ScriptedCall] = []
    transferred: list[dict] = []

    def make(info):
        call = ScriptedCall(info)
        call.record = CallRecord(call_id=info.call_id, caller_number=info.caller_number)
        call.record.add_caller_turn("我要挂失", source="asr", secure=False)
        call.record.add_caller_turn("135790", source="keypad", secure=True)
        made.append(call)
        return call

    async def transfer(session, event):
        transferred.append(event)

    store = ScreenPopStore(600.0)
    session = CallSession(make, "sip", caller="13800000001", cdr_writer=CdrWriter(tmp_path), transfer=transfer,
                          screen_pops=store)
    await session.start(on_audio=lambda pcm: None, on_clear=lambda: None)
    event = {"queue": "elderly_priority", "priority": 9, "reason": "green_channel",
             "context": {"intent": "report_loss", "verified": True, "green_channel": True, "call_id": session.id}}
    with caplog.at_level(logging.DEBUG):
        await made[0].on_handoff(event)
    [sent] = transferred
    assert "context_ref" not in event["context"]  # the dialogue's event is not changed in place
    ref = sent["context"]["context_ref"]
    assert len(ref) >= 22 and sent["context"]["intent"] == "report_loss"
    # the log names the pop by a digest prefix, never by the reference that opens the agent's page
    assert ref not in caplog.text and f"screen-pop {ref_tag(ref)} filed" in caplog.text
    assert len(ref_tag(ref)) == 12
    pop = store.get(ref)
    assert pop["caller"] == "138****0001" and pop["elderly"] and pop["green_channel"] and pop["verified"]
    assert [turn["text"] for turn in pop["transcript"]] == ["我要挂失", "****"]
    # the agent answered: time to agent (and the REFER's 202) into the CDR and the call record
    session.transfer_finished(True, "200 OK", 2.5, 0.01)
    assert made[0].record.time_to_agent_s == 2.5
    await session.stop("transferred")
    [cdr] = cdrs(tmp_path)
    assert (cdr["time_to_agent_s"], cdr["refer_accepted_s"], cdr["outcome"]) == (2.5, 0.01, "transferred")


async def test_without_a_screen_pop_store_the_handoff_event_goes_to_the_door_unchanged(tmp_path):
    made: list[ScriptedCall] = []
    transferred: list[dict] = []

    async def transfer(session, event):
        transferred.append(event)

    session = CallSession(lambda info: made.append(ScriptedCall(info)) or made[-1], "sip", transfer=transfer)
    await session.start(on_audio=lambda pcm: None, on_clear=lambda: None)
    event = {"queue": "general", "context": {"intent": None}}
    await made[0].on_handoff(event)
    assert transferred == [event]
    await session.stop("remote_hangup")
