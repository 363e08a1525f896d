"""The real stack for integration tests: action server, Rasa and gateway on free ports with temporary SQLite DBs.

Started once per session with the same command lines `make run` uses (scripts/stack.py `build_specs`), each
process in its own process group with its output in a log file; every group is killed on teardown.
Nothing is trained here: the model comes from settings.rasa.model_dir (models/rasa, or RASA_MODEL_DIR).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from scripts.stack import build_specs, child_env, find_model
from settings import Settings, get_settings
from scripts.processes import Processes, free_port

PINS = ("135790", "246802", "112233")


@dataclass(kw_only=True)
class Stack(Processes):
    """The running stack, and helpers to talk the call contract."""

    settings: Settings

    @property
    def rasa_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.rasa.port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.gateway.port}"

    def send(self, sender: str, message: str, caller: str = "13800000001", channel: str = "text") -> list[dict]:
        """One message over the REST contract; asserts it is not an HTTP error."""
        payload = {"sender": sender, "message": message, "metadata": {"caller_number": caller, "channel": channel}}
        resp = self.http.post(f"{self.rasa_url}/webhooks/rest/webhook", json=payload, timeout=30)
        assert resp.status_code == 200, f"{message[:40]!r}: HTTP {resp.status_code} {resp.text[:300]}"
        items = resp.json()
        assert isinstance(items, list)
        return items

    def tracker(self, sender: str) -> dict[str, Any]:
        resp = self.http.get(f"{self.rasa_url}/conversations/{sender}/tracker",
                             params={"token": self.settings.rasa.token}, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def healthz(self) -> requests.Response:
        return self.http.get(f"{self.gateway_url}/healthz", timeout=10)

    def wait_healthy(self, timeout_s: float = 60.0) -> requests.Response:
        """/healthz until 200 (the action server seeds the bank store on its first start)."""
        deadline = time.monotonic() + timeout_s
        resp = self.healthz()
        while resp.status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
            resp = self.healthz()
        return resp


def stack_settings(workdir: Path, base: Settings) -> dict[str, str]:
    return {
        "RASA_PORT": str(free_port()), "ACTIONS_PORT": str(free_port()), "GATEWAY_PORT": str(free_port()),
        "SIP_PORT": str(free_port()), "RASA_MODEL_DIR": base.rasa.model_dir,
        "TRACKER_DB_URL": f"sqlite:///{workdir / 'tracker.db'}",
        "BANK_DB_URL": f"sqlite:///{workdir / 'bank.db'}",
        "CALL_RECORDS_DIR": str(workdir / "calls"),
        "RASA_TOKEN": "integration-token",
        "RASA_TIMEOUT_S": "15",
    }


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    base = get_settings()
    if find_model(base.rasa.model_dir) is None:
        pytest.skip(f"no trained Rasa model in {base.rasa.model_dir}: run `make train` first")
    workdir = tmp_path_factory.mktemp("stack")
    (workdir / "logs").mkdir()
    overrides = stack_settings(workdir, base)
    env = {**os.environ, **overrides}
    settings = Settings.from_env(env)
    specs = {spec.name: spec for spec in build_specs(settings, child_env(settings, env))}
    running = Stack(settings=settings, specs=specs, workdir=workdir)
    try:
        for name in ("actions", "rasa", "gateway"):
            running.start(name)
        for name in ("actions", "gateway", "rasa"):
            running.wait_ready(name)
        # A first call runs the actions once, so the bank store exists before any test looks at /healthz.
        running.send("warm-up", "/call_start", caller="13800000001")
        yield running
    finally:
        running.stop_all()


@pytest.fixture
async def stack_voice_calls(stack):
    """Calls through the real voice loop (espeak TTS) on the shared stack's Rasa and action server, closed after the
    test: `make(settings, call_id, caller, *, stt_factory=None, record_writer=None, rasa_timeout_s=15.0)`."""
    from bot.call import CallInfo, VoiceRuntime
    from bot.rasa_client import RasaClient
    from bot.services.espeak.tts import EspeakTTSService
    from tests.bot.voice_doubles import CallHarness

    harnesses: list[CallHarness] = []

    def make(settings: Settings, call_id: str, caller: str, *, stt_factory=None, record_writer=None,
             rasa_timeout_s: float = 15.0) -> CallHarness:
        runtime = VoiceRuntime(
            settings=settings,
            rasa=RasaClient(stack.rasa_url, settings.rasa.token, timeout_s=rasa_timeout_s),
            tts_factory=lambda rate: EspeakTTSService(sample_rate=rate),
            stt_factory=stt_factory,
            record_writer=record_writer,
        )
        harness = CallHarness.attach(runtime, runtime.create_call(CallInfo(call_id, caller, sample_rate=8000)))
        harnesses.append(harness)
        return harness

    yield make
    for harness in harnesses:
        await harness.close()


def pytest_collection_modifyitems(config, items):
    """The PIN-leak check reads what every other test left behind, so it runs last."""
    last = [item for item in items if item.get_closest_marker("after_conversations")]
    items[:] = [item for item in items if item not in last] + last


def pytest_configure(config):
    config.addinivalue_line("markers", "after_conversations: runs after all other integration tests")
