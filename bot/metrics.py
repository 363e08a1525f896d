"""Prometheus metrics of the voice loop, in the default registry (the gateway renders it at `/metrics`).

Per turn: end of caller speech → final transcript, Rasa round trip, TTS time to first audio, voice-to-voice
(end of caller speech → first bot audio out). Per call: the greeting's time to first audio and the outcome.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.7, 0.85, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

STT_FINAL_SECONDS = Histogram(
    "ivr_voice_stt_final_seconds", "End of caller speech to final transcript", buckets=_LATENCY_BUCKETS)
RASA_ROUND_TRIP_SECONDS = Histogram(
    "ivr_voice_rasa_round_trip_seconds", "Caller turn sent to Rasa until its reply came back", buckets=_LATENCY_BUCKETS)
TTS_FIRST_AUDIO_SECONDS = Histogram(
    "ivr_voice_tts_first_audio_seconds", "Reply text handed to TTS until its first audio", buckets=_LATENCY_BUCKETS)
VOICE_TO_VOICE_SECONDS = Histogram(
    "ivr_voice_voice_to_voice_seconds", "End of caller speech to first bot audio out", buckets=_LATENCY_BUCKETS)
GREETING_FIRST_AUDIO_SECONDS = Histogram(
    "ivr_voice_greeting_first_audio_seconds", "Call start to first greeting audio out", buckets=_LATENCY_BUCKETS)
CALL_OUTCOMES = Counter(
    "ivr_voice_call_outcomes_total", "Finished calls by outcome and handoff reason", ["outcome", "reason"])
# Read by `make swap-model` (scripts/swap_model.py) to wait for a moment with no call in progress.
ACTIVE_CALLS_METRIC = "ivr_voice_active_calls"
ACTIVE_CALLS = Gauge(ACTIVE_CALLS_METRIC, "Calls with a running voice pipeline")
BARGE_INS = Counter("ivr_voice_barge_ins_total", "Bot prompts interrupted by the caller")
# A turn Rasa did not answer is a lost turn: the caller heard the apology instead (bench/cluster_failover.py).
RASA_UNAVAILABLE_TURNS = Counter("ivr_voice_rasa_unavailable_turns_total", "Caller turns Rasa did not answer")


@dataclass
class TurnMetrics:
    """One turn's latencies in milliseconds (None: not measured, e.g. a keypad turn has no STT time)."""

    stt_ms: float | None = None
    rasa_ms: float | None = None
    tts_first_audio_ms: float | None = None
    voice_to_voice_ms: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {k: (round(v, 1) if v is not None else None) for k, v in asdict(self).items()}


def observe_turn(metrics: TurnMetrics) -> None:
    """Adds one finished turn to the histograms."""
    pairs = (
        (STT_FINAL_SECONDS, metrics.stt_ms),
        (RASA_ROUND_TRIP_SECONDS, metrics.rasa_ms),
        (TTS_FIRST_AUDIO_SECONDS, metrics.tts_first_audio_ms),
        (VOICE_TO_VOICE_SECONDS, metrics.voice_to_voice_ms),
    )
    for histogram, value_ms in pairs:
        if value_ms is not None and value_ms >= 0:
            histogram.observe(value_ms / 1000.0)


def observe_call_outcome(outcome: str, reason: str | None) -> None:
    CALL_OUTCOMES.labels(outcome=outcome, reason=reason or "").inc()
