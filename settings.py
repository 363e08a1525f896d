"""The one typed settings object for every process of the IVR.

Each field reads one environment variable (named in its metadata) and falls back to a default.
Stdlib only, so it loads in both venvs (.venv-rasa on Python 3.10, .venv on 3.11).

Sections belong to layers: add a field to the section of the layer that uses it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent
# Time for the dialogue's reply (or its apology at the turn budget) to reach the gateway.
RASA_REPLY_MARGIN_S = 1.0


def env(name: str, default: Any) -> Any:
    """A dataclass field read from environment variable `name`, parsed to the type of `default`."""
    return field(default=default, metadata={"env": name})


@dataclass(frozen=True)
class RasaSettings:
    url: str = env("RASA_URL", "http://127.0.0.1:5005")
    port: int = env("RASA_PORT", 5005)
    token: str = env("RASA_TOKEN", "ivr-local-token")
    model_dir: str = env("RASA_MODEL_DIR", str(REPO_ROOT / "models" / "rasa"))
    tracker_db_url: str = env("TRACKER_DB_URL", f"sqlite:///{REPO_ROOT / 'var' / 'tracker.db'}")
    # Rasa's lock store. Empty host: the in-memory lock store, right for one Rasa server only. With several servers
    # (`make cluster`) every one uses the Redis lock store at this address (deploy/rasa/endpoints.cluster.yml), so
    # any server can take any conversation's next message.
    redis_host: str = env("REDIS_HOST", "")
    redis_port: int = env("REDIS_PORT", 6379)
    # After this long without a reply the voice loop says 「请稍候」; it keeps waiting (Settings.rasa_reply_timeout_s).
    timeout_s: float = env("RASA_TIMEOUT_S", 3.0)


@dataclass(frozen=True)
class ActionSettings:
    port: int = env("ACTIONS_PORT", 5055)
    url: str = env("ACTION_SERVER_URL", "http://127.0.0.1:5055/webhook")
    timeout_s: float = env("ACTION_TIMEOUT_S", 3.0)
    # The post-call satisfaction survey (actions/survey.py): asked at the dialogue's goodbye of a sampled share of
    # calls (0..1, decided once per call from its id, so a retried turn never changes it).
    survey_enabled: bool = env("SURVEY_ENABLED", True)
    survey_sample_rate: float = env("SURVEY_SAMPLE_RATE", 1.0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.survey_sample_rate <= 1.0:  # NaN fails too
            raise ValueError(f"SURVEY_SAMPLE_RATE={self.survey_sample_rate!r}: a share of calls, from 0 to 1")

    @property
    def turn_budget_s(self) -> float:
        """The dialogue's budget for a whole turn: a form validation and a task action, each within timeout_s."""
        return self.timeout_s * 2


@dataclass(frozen=True)
class BankSettings:
    db_url: str = env("BANK_DB_URL", f"sqlite:///{REPO_ROOT / 'var' / 'bank.db'}")
    pin_salt_rounds: int = env("BANK_PIN_HASH_ITERATIONS", 200_000)
    max_pin_attempts: int = env("BANK_MAX_PIN_ATTEMPTS", 3)
    # wrong PINs and unknown cards from one calling number per bank day, whatever the cards
    max_pin_failures_per_caller: int = env("BANK_MAX_PIN_FAILURES_PER_CALLER", 5)
    daily_transfer_limit_cents: int = env("BANK_DAILY_TRANSFER_LIMIT_CENTS", 5_000_000)
    elderly_age: int = env("BANK_ELDERLY_AGE", 65)


@dataclass(frozen=True)
class GatewaySettings:
    host: str = env("GATEWAY_HOST", "127.0.0.1")
    port: int = env("GATEWAY_PORT", 8080)
    media_ws_token: str = env("MEDIA_WS_TOKEN", "change-me-media-token")
    call_records_dir: str = env("CALL_RECORDS_DIR", str(REPO_ROOT / "var" / "calls"))
    # Call records and CDRs in a database shared by every gateway (`make cluster`), e.g.
    # postgresql+psycopg://ivr@127.0.0.1:5432/ivr. Empty: JSON Lines files under call_records_dir (one host).
    call_records_db_url: str = env("CALL_RECORDS_DB_URL", "")
    health_timeout_s: float = env("HEALTH_TIMEOUT_S", 2.0)  # per part checked by /healthz
    console_max_chars: int = env("CONSOLE_MAX_CHARS", 2000)  # longest text the console forwards to Rasa
    stack_ready_timeout_s: float = env("STACK_READY_TIMEOUT_S", 180.0)  # Rasa loads TensorFlow: be patient
    stack_stop_grace_s: float = env("STACK_STOP_GRACE_S", 10.0)  # SIGTERM, then SIGKILL after this
    # media doors (telephony/websocket): the /media WebSocket and Asterisk AudioSocket
    media_ws_max_message_bytes: int = env("MEDIA_WS_MAX_MESSAGE_BYTES", 65536)  # larger frames close with 1009
    media_idle_timeout_s: float = env("MEDIA_IDLE_TIMEOUT_S", 15.0)  # no message this long ends the call
    audiosocket_host: str = env("AUDIOSOCKET_HOST", "127.0.0.1")
    audiosocket_port: int = env("AUDIOSOCKET_PORT", 9092)
    # who may connect to AudioSocket (comma-separated CIDRs); anyone else is closed at once and counted
    audiosocket_allow_cidrs: str = env("AUDIOSOCKET_ALLOW_CIDRS", "127.0.0.0/8,::1/128")
    # consoles (/console, /voice): required, long and not a default when GATEWAY_HOST is not loopback
    console_token: str = env("CONSOLE_TOKEN", "")
    # extra origins (comma-separated, e.g. https://ivr.bank.example) whose pages may use the consoles
    console_allowed_origins: str = env("CONSOLE_ALLOWED_ORIGINS", "")
    # The key of the call records' `caller_key` (HMAC-SHA256 of the caller number: repeat calls match without the
    # number being stored). Every gateway of a cluster needs the same one; at least 16 characters (shorter: the
    # gateway does not start). Empty: a random key made once and kept in CALLER_KEY_FILE (one host), which must not
    # be under CALL_RECORDS_DIR (it would travel with the records it protects). bot/caller_keys.py
    caller_key_secret: str = env("CALLER_KEY_SECRET", "")
    caller_key_file: str = env("CALLER_KEY_FILE", str(REPO_ROOT / "var" / "secrets" / "caller-key"))


@dataclass(frozen=True)
class VoiceSettings:
    models_dir: str = env("MODELS_DIR", str(REPO_ROOT / "models"))
    vosk_model_path: str = env("VOSK_MODEL_PATH", "")
    # Decoder search limits (0: the model's own): lower = less CPU per caller, some accuracy lost.
    # bot/services/vosk/limits.py; docs/VOICE.md has the 8-call figures with 1000 / 8.
    vosk_max_active: int = env("VOSK_MAX_ACTIVE", 0)
    vosk_beam: float = env("VOSK_BEAM", 0.0)
    # Load-adaptive recognition (bot/services/vosk/load.py): while speech waits to be decoded (the backlog, summed
    # over calls) above ASR_TIGHTEN_ABOVE_S, new utterances step to tighter search limits, "max-active/beam" per
    # step, tightest (the floor) last; below ASR_RELAX_BELOW_S they step back. Empty: never tighten.
    vosk_load_levels: str = env("VOSK_LOAD_LEVELS", "2000/9,1000/8")
    asr_tighten_above_s: float = env("ASR_TIGHTEN_ABOVE_S", 0.5)
    asr_relax_below_s: float = env("ASR_RELAX_BELOW_S", 0.15)
    asr_decode_threads: int = env("ASR_DECODE_THREADS", 0)  # 0: one per core
    # Warm Vosk recognizers kept from ended calls for new ones (bot/services/vosk/pool.py): a new recognizer spends
    # seconds of CPU on its first speech. -1: two per admitted call; 0: off (every call makes its own).
    asr_recognizer_pool: int = env("ASR_RECOGNIZER_POOL", -1)
    piper_voice_path: str = env("PIPER_VOICE_PATH", "")
    # `make models`: base URL of a local mirror holding the model files (banks run offline)
    models_mirror: str = env("MODELS_MIRROR", "")
    # pinned checksums "file=sha256;file=sha256", checked before models/manifest.json
    models_sha256: str = env("MODELS_SHA256", "")
    espeak_voice: str = env("ESPEAK_VOICE", "cmn")
    no_input_s: float = env("NO_INPUT_S", 7.0)
    no_input_elderly_s: float = env("NO_INPUT_ELDERLY_S", 12.0)
    third_silence_action: str = env("THIRD_SILENCE_ACTION", "handoff")  # or "hangup"
    human_key: str = env("HUMAN_KEY", "0")
    interdigit_timeout_s: float = env("INTERDIGIT_TIMEOUT_S", 3.0)
    # extra silence after a speech pause before the turn ends when Smart Turn says the caller is not done
    end_of_turn_s: float = env("END_OF_TURN_S", 0.3)  # 0.6 cost ~300 ms per turn (bench/voice_latency.py)
    end_of_turn_elderly_s: float = env("END_OF_TURN_ELDERLY_S", 1.2)
    # the gateway's default thread pool: every call's Vosk decoding hops to it per 100 ms of speech
    worker_threads: int = env("VOICE_WORKER_THREADS", 32)
    # Admission limit across all doors (bot/admission.py): 0 sizes it from the cores as
    # floor(cores * VOICE_CPU_SHARE / VOICE_CORE_PER_CALLER); beyond it SIP answers 503, the other doors say busy.
    max_calls: int = env("VOICE_MAX_CALLS", 0)
    cpu_share: float = env("VOICE_CPU_SHARE", 0.75)  # the rest is for Rasa, the action server, the OS
    # CPU cores one admitted caller may cost for p95 voice-to-voice to stay within 1 s: measured with
    # `bench/voice_latency.py --calls 16 --admission` (docs/VOICE.md, "Admission"); 0.6 gives 2 calls on 2 cores.
    core_per_speaking_caller: float = env("VOICE_CORE_PER_CALLER", 0.6)


@dataclass(frozen=True)
class SipSettings:
    host: str = env("SIP_HOST", "127.0.0.1")
    port: int = env("SIP_PORT", 5060)
    allow_cidrs: str = env("SIP_ALLOW_CIDRS", "127.0.0.0/8,::1/128")
    # The address put in our Via, Contact and SDP (c=/o=) when it differs from the bound one: a gateway bound to
    # 0.0.0.0, or behind a proxy or NAT. Empty: the bound address, which must then not be a wildcard.
    advertised_host: str = env("SIP_ADVERTISED_HOST", "")
    # SIP proxies (comma-separated CIDRs, e.g. the Kamailio front) whose P-Asserted-Identity (RFC 3325) names the
    # caller. From anyone else that header is ignored and the From URI is the caller.
    trusted_proxies: str = env("SIP_TRUSTED_PROXIES", "")
    max_calls: int = env("SIP_MAX_CALLS", 300)
    max_call_s: float = env("SIP_MAX_CALL_S", 3600.0)
    max_message_bytes: int = env("SIP_MAX_MESSAGE_BYTES", 8192)
    rate_limit_per_s: float = env("SIP_RATE_LIMIT_PER_S", 200.0)
    rtp_port_min: int = env("RTP_PORT_MIN", 20000)
    rtp_port_max: int = env("RTP_PORT_MAX", 30000)
    media_timeout_s: float = env("RTP_MEDIA_TIMEOUT_S", 30.0)
    # queue -> SIP URI the REFER points at; "queue=uri;queue=uri"
    routing: str = env(
        "SIP_ROUTING",
        "general=sip:general@127.0.0.1:5070;elderly_priority=sip:elderly@127.0.0.1:5070;"
        "complaint=sip:complaint@127.0.0.1:5070;card_services=sip:cards@127.0.0.1:5070",
    )
    refer_timeout_s: float = env("SIP_REFER_TIMEOUT_S", 30.0)  # no final NOTIFY by then -> transfer failed
    # How long the agent's screen-pop (GET /agent/{ref}, the REFER's X-IVR-Context-Ref) can be opened after a handoff
    agent_context_ttl_s: float = env("SIP_AGENT_CONTEXT_TTL_S", 1800.0)
    # Also carry that reference as RFC 7433 User-to-User (ISDN package) embedded in the Refer-To URI, so the INVITE
    # that reaches the agent has it, for a PBX or agent desktop that reads UUI (telephony/sip/uui.py). Off by
    # default: the party that acts on our REFER must copy the URI's headers into its INVITE (RFC 3261 §19.1.5),
    # and simple phones do not; baresip 1.0 puts them in the Request-URI and the agent refuses the call (400).
    # Turn it on where an SBC or PBX handles the REFER (Asterisk, FreeSWITCH and most carriers' SBCs do).
    refer_uui: bool = env("SIP_REFER_UUI", False)
    retry_after_s: int = env("SIP_RETRY_AFTER_S", 10)  # Retry-After on every 503 (calls, ports, voice loop full)
    # Digest auth (RFC 8760 MD5) for peers outside allow_cidrs; empty password = CIDR allow-list only.
    digest_realm: str = env("SIP_DIGEST_REALM", "ivr")
    digest_user: str = env("SIP_DIGEST_USER", "")
    digest_password: str = env("SIP_DIGEST_PASSWORD", "")
    user_agent: str = env("SIP_USER_AGENT", "yinling-ivr")
    # Flood bounds (issue 7 §4): the rate limiter's table of sources, and TCP. Over the total cap the connection
    # idle longest is closed to make room; a source over its own cap has its new connection refused.
    rate_limit_max_sources: int = env("SIP_RATE_LIMIT_MAX_SOURCES", 10_000)
    tcp_idle_timeout_s: float = env("SIP_TCP_IDLE_TIMEOUT_S", 300.0)  # no byte received this long: closed
    tcp_message_timeout_s: float = env("SIP_TCP_MESSAGE_TIMEOUT_S", 10.0)  # a message begun must be complete by then
    tcp_max_connections: int = env("SIP_TCP_MAX_CONNECTIONS", 512)
    tcp_max_connections_per_source: int = env("SIP_TCP_MAX_CONNECTIONS_PER_SOURCE", 32)


@dataclass(frozen=True)
class ClusterSettings:
    """`make cluster` (scripts/cluster): how many of each part. Front ports are the single-host ones (Kamailio on
    SIP_PORT, HAProxy on RASA_PORT and ACTIONS_PORT); the instances behind them take the ports just above."""

    gateways: int = env("CLUSTER_GATEWAYS", 2)
    rasa_servers: int = env("CLUSTER_RASA_SERVERS", 2)
    action_servers: int = env("CLUSTER_ACTION_SERVERS", 2)
    postgres_port: int = env("CLUSTER_POSTGRES_PORT", 5433)  # not 5432: leave a system PostgreSQL alone
    workdir: str = env("CLUSTER_DIR", str(REPO_ROOT / "var" / "cluster"))
    # Kamailio's OPTIONS probe interval: a dead gateway is skipped after ds_probing_threshold missed probes.
    probe_interval_s: int = env("CLUSTER_PROBE_INTERVAL_S", 2)


@dataclass(frozen=True)
class TrainerSettings:
    """The trainers' loop (docs/TRAINERS.md, "Learning from real calls"): review, label, retrain, swap."""

    # The Rasa project the labels go to (its data/nlu/review.yml; its tests/nlu/heldout.yml and domain/ are read).
    project_dir: str = env("NLU_PROJECT_DIR", str(REPO_ROOT))
    # The external evaluation set (every *.yml under it): a sentence found there is never labelled into data/.
    eval_dir: str = env("NLU_EVAL_DIR", str(REPO_ROOT.parent / "shared" / "eval"))
    # A caller turn understood below this confidence is listed for review (turns below config.yml's
    # FallbackClassifier threshold are nlu_fallback, listed anyway). Between 0 and 1.
    low_confidence: float = env("NLU_REVIEW_LOW_CONFIDENCE", 0.6)
    # The review list covers the calls of this many days (today's included): bounded reads in the gateway.
    review_days: int = env("NLU_REVIEW_DAYS", 7)
    # At most this many items (identical sentences merged) on the page / in `make review`: the most said first.
    max_listed: int = env("NLU_REVIEW_MAX_LISTED", 300)
    # How long `make swap-model` waits for one Rasa server to load the new model (TensorFlow: tens of seconds).
    swap_timeout_s: float = env("NLU_SWAP_TIMEOUT_S", 300.0)
    # A single Rasa answers nothing while it loads a model: the swap waits this long for no call in progress.
    swap_idle_wait_s: float = env("NLU_SWAP_IDLE_WAIT_S", 600.0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_confidence <= 1.0:  # NaN fails too: it would list nothing
            raise ValueError(f"NLU_REVIEW_LOW_CONFIDENCE={self.low_confidence!r}: a confidence, from 0 to 1")
        if not 1 <= self.review_days <= 366 or not 1 <= self.max_listed <= 10_000:
            raise ValueError(f"NLU_REVIEW_DAYS={self.review_days!r} (1..366) / NLU_REVIEW_MAX_LISTED="
                             f"{self.max_listed!r} (1..10000): bounded reads for the gateway's /trainer")
        waits = (("NLU_SWAP_TIMEOUT_S", self.swap_timeout_s), ("NLU_SWAP_IDLE_WAIT_S", self.swap_idle_wait_s))
        for name, value in waits:
            if not 0.0 < value < 86_400.0:  # NaN fails too
                raise ValueError(f"{name}={value!r}: seconds, more than 0 and less than a day")


@dataclass(frozen=True)
class Settings:
    rasa: RasaSettings = field(default_factory=RasaSettings)
    actions: ActionSettings = field(default_factory=ActionSettings)
    bank: BankSettings = field(default_factory=BankSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    voice: VoiceSettings = field(default_factory=VoiceSettings)
    sip: SipSettings = field(default_factory=SipSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    trainer: TrainerSettings = field(default_factory=TrainerSettings)

    @property
    def rasa_reply_timeout_s(self) -> float:
        """How long the gateway waits for Rasa's reply: longer than the dialogue's turn budget, so the caller always
        hears the turn's real outcome (a money movement, or the dialogue's own apology), never a gateway apology
        for a turn that then completes."""
        return max(self.rasa.timeout_s, self.actions.turn_budget_s + RASA_REPLY_MARGIN_S)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        environ = dict(os.environ if environ is None else environ)
        sections = {f.name: _load_section(f.default_factory, environ) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**sections)


def _load_section(section_cls: Any, environ: dict[str, str]) -> Any:
    values = {}
    for f in dataclasses.fields(section_cls):
        name = f.metadata.get("env")
        if name and name in environ:
            values[f.name] = _parse(environ[name], type(f.default), name)
    return section_cls(**values)


def _parse(raw: str, kind: type, name: str) -> Any:
    try:
        if kind is bool:
            return raw.strip().lower() in ("1", "true", "yes", "on")
        return kind(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r} is not a valid {kind.__name__}") from exc


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings.from_env()
