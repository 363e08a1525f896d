"""Per-call detail records (CDR): one JSON line per call, whatever door it came through.

    record = CallDetailRecord.begin(call.id, DOOR_SIP, caller="13800000001", codec="PCMA")
    record.answered(); record.transfer_requested("general", "sip:general@pbx", green_channel=True)
    record.transfer_finished(True, "200 OK", time_to_agent_s=4.2, refer_accepted_s=0.1)
    finish_call(record, "transferred", writer)      # in a `finally`: counted, then written

Lines are appended to `<settings.gateway.call_records_dir>/cdr-YYYYMMDD.jsonl` (UTC day), next to the voice
loop's `calls-*.jsonl`; with CALL_RECORDS_DB_URL set they go to PostgreSQL instead (bot/record_sinks.py).
Fields: call_id, door, peer_call_id (SIP Call-ID / stream id), caller (masked: at most the first 3 and last 4
digits), start/answer/end (ISO 8601 UTC), duration_s, cause, outcome, codec,
packets_in/out/lost, jitter_ms (SIP/RTP only), transfer_queue/uri/result/detail, green_channel,
time_to_agent_s (our answer to the agent answering: the REFER's NOTIFY 200), refer_accepted_s (the handoff to the
queue accepting the REFER: its 202).
A record that cannot be written is logged, never raised: a full disk must not take calls down. Text that came from
a peer (a SIP Call-ID, a reason phrase) may hold bytes that are not UTF-8 (kept as surrogate escapes by the SIP
parser): they are written as `\\xNN`, so such a call still gets its line.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bot import door_metrics as metrics
from bot.call_log import call_logger
from bot.masking import mask_caller_number
from bot.record_sinks import KIND_CDR, JsonlSink, SinkWriter, printable_text

log = logging.getLogger(__name__)

OUTCOME_COMPLETED = "completed"  # answered and ended normally by either side
OUTCOME_TRANSFERRED = "transferred"
OUTCOME_CANCELLED = "cancelled"  # the caller gave up before the answer
OUTCOME_REJECTED = "rejected"  # we declined it (no port, over the limit, ...)
OUTCOME_FAILED = "failed"  # ended by a fault: no media, a protocol error, a voice loop that did not start
FAULT_CAUSES = frozenset({"internal_error", "media_timeout", "media_error", "remote_error", "start_failed",
                          "idle_timeout", "ack_timeout", "no_common_codec"})
MAX_DETAIL_CHARS = 200


@dataclass
class CallDetailRecord:
    call_id: str
    door: str
    caller: str = ""
    peer_call_id: str = ""
    codec: str | None = None
    started_at: float = 0.0
    answered_at: float | None = None
    ended_at: float | None = None
    cause: str | None = None
    outcome: str | None = None
    packets_in: int = 0
    packets_out: int = 0
    packets_lost: int = 0
    jitter_ms: float | None = None
    transfer_queue: str | None = None
    transfer_uri: str | None = None
    transfer_result: str | None = None  # "ok" | "failed"
    transfer_detail: str | None = None
    green_channel: bool = False
    time_to_agent_s: float | None = None
    refer_accepted_s: float | None = None

    @classmethod
    def begin(cls, call_id: str, door: str, *, caller: str = "", peer_call_id: str = "",
              codec: str | None = None) -> "CallDetailRecord":
        """A record for a call that just arrived; the door counts as one more active call until `finish_call`."""
        metrics.call_started(door)
        return cls(call_id=call_id, door=door, caller=caller, peer_call_id=peer_call_id, codec=codec,
                   started_at=time.time())

    def answered(self) -> None:
        if self.answered_at is None:
            self.answered_at = time.time()

    def transfer_requested(self, queue: str, uri: str | None, *, green_channel: bool) -> None:
        self.transfer_queue, self.transfer_uri, self.green_channel = queue, uri, green_channel

    def transfer_finished(self, ok: bool, detail: str, time_to_agent_s: float | None = None,
                          refer_accepted_s: float | None = None) -> None:
        self.transfer_result = "ok" if ok else "failed"
        self.transfer_detail = detail[:MAX_DETAIL_CHARS]
        if ok and time_to_agent_s is not None:
            self.time_to_agent_s = round(time_to_agent_s, 3)
        if ok and refer_accepted_s is not None:
            self.refer_accepted_s = round(refer_accepted_s, 3)

    def media(self, packets_in: int, packets_out: int, packets_lost: int = 0, jitter_ms: float | None = None) -> None:
        self.packets_in, self.packets_out, self.packets_lost, self.jitter_ms = (
            packets_in, packets_out, packets_lost, jitter_ms)

    def finish(self, cause: str) -> None:
        """Idempotent: the first cause wins (a teardown after the real end must not overwrite it)."""
        if self.ended_at is not None:
            return
        self.ended_at = time.time()
        self.cause = cause
        self.outcome = _outcome(self)

    def to_json(self) -> dict[str, Any]:
        data = {name: printable_text(value) if isinstance(value, str) else value for name, value in asdict(self).items()}
        data["caller"] = mask_caller_number(data["caller"])
        for name in ("started_at", "answered_at", "ended_at"):
            data[name] = _iso(data[name])
        data["duration_s"] = round(self.ended_at - self.started_at, 3) if self.ended_at else None
        return data


def handoff_is_green_channel(event: dict[str, Any]) -> bool:
    """The dialogue's handoff event (docs/ARCHITECTURE.md) marks green-channel callers in its context."""
    context = event.get("context") if isinstance(event.get("context"), dict) else {}
    return bool(context.get("green_channel")) or event.get("reason") == "green_channel"


def _outcome(record: CallDetailRecord) -> str:
    if record.transfer_result == "ok":
        return OUTCOME_TRANSFERRED
    if record.answered_at is None:
        return OUTCOME_CANCELLED if record.cause == "cancelled" else OUTCOME_REJECTED
    if (record.cause or "").split(" ")[0] in FAULT_CAUSES:
        return OUTCOME_FAILED
    return OUTCOME_COMPLETED


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CdrWriter(SinkWriter):
    """Hands finished records to its sink (bot/record_sinks.py): in a folder, `<dir>/cdr-YYYYMMDD.jsonl`, one file
    per UTC day."""

    def path_for(self, when: float) -> Path:
        """The day file of a folder-backed writer."""
        if not isinstance(self.sink, JsonlSink):
            raise TypeError("path_for: this writer does not write files")
        return self.sink.path_for(KIND_CDR, when)

    def write(self, record: CallDetailRecord) -> Path | None:
        """The file the record went to; None when not a file, or (logged) when it cannot be written."""
        try:
            return self.sink.write(KIND_CDR, record.to_json(), call_id=record.call_id,
                                   when=record.ended_at or time.time())
        except (OSError, ValueError) as error:
            call_logger(log, record.call_id).error("CDR not written: %s", error)
            return None


def finish_call(record: CallDetailRecord, cause: str, writer: CdrWriter | None) -> None:
    """The end of a call: closes the record, counts it in the metrics, writes its line. Once per record."""
    if record.ended_at is not None:
        return
    record.finish(cause)
    metrics.call_ended(record.door, record.outcome or OUTCOME_COMPLETED, record.packets_lost)
    if writer is not None:
        writer.write(record)
