"""load_stt / load_tts: what the runtime picks from what is installed, and the one start-up line that says so."""

from __future__ import annotations

from pathlib import Path

from bot.services.espeak.tts import EspeakTTSService
from bot.services.factory import load_stt, load_tts
from bot.services.piper.tts import PiperTTSService
from bot.services.vosk.stt import VoskSTTService
from settings import Settings


def settings_for(models_dir: Path, **env: str) -> Settings:
    return Settings.from_env({"MODELS_DIR": str(models_dir), **env})


def test_no_asr_model_means_keypad_only(tmp_path, log_lines):
    assert load_stt(settings_for(tmp_path)) is None
    assert [line for line in log_lines if "KEYPAD-ONLY" in line] != []


def test_vosk_model_is_auto_discovered_under_models_dir(tmp_path, korean_model_path, korean_model, log_lines):
    (tmp_path / "vosk").mkdir()
    (tmp_path / "vosk" / "vosk-model-small-ko").symlink_to(korean_model_path, target_is_directory=True)

    engine = load_stt(settings_for(tmp_path))

    assert engine is not None and engine.name == "vosk-model-small-ko"
    assert isinstance(engine.create_service(), VoskSTTService)
    assert any("ASR: Vosk model vosk-model-small-ko" in line for line in log_lines)


def test_configured_vosk_path_wins(tmp_path, korean_model_path, korean_model):
    engine = load_stt(settings_for(tmp_path, VOSK_MODEL_PATH=str(korean_model_path)))
    assert engine is not None and engine.model_path == korean_model_path


def test_broken_vosk_path_falls_back_to_keypad_only(tmp_path, log_lines):
    assert load_stt(settings_for(tmp_path, VOSK_MODEL_PATH=str(tmp_path / "nothing"))) is None
    assert any("KEYPAD-ONLY" in line and "ERROR" in line for line in log_lines)


def test_no_piper_voice_falls_back_to_espeak_with_one_clear_line(tmp_path, log_lines):
    engine = load_tts(settings_for(tmp_path))

    assert engine.kind == "espeak" and engine.espeak_voice == "cmn"
    assert isinstance(engine.create_service(sample_rate=8000), EspeakTTSService)
    fallback_lines = [line for line in log_lines if "TTS:" in line]
    assert len(fallback_lines) == 1 and "espeak-ng voice 'cmn'" in fallback_lines[0]


def test_installed_mandarin_piper_voice_is_preferred(tmp_path, joe_voice_path, log_lines):
    # Any real Piper voice laid out as models/piper/<name>/<name>.onnx is found; the name marks it Mandarin.
    voice_dir = tmp_path / "piper" / "zh_CN-test-medium"
    voice_dir.mkdir(parents=True)
    (voice_dir / "zh_CN-test-medium.onnx").symlink_to(joe_voice_path)
    (voice_dir / "zh_CN-test-medium.onnx.json").symlink_to(f"{joe_voice_path}.json")

    engine = load_tts(settings_for(tmp_path))

    assert engine.kind == "piper" and engine.name == "zh_CN-test-medium"
    service = engine.create_service(sample_rate=8000, speech_rate=0.8)
    assert isinstance(service, PiperTTSService) and service.speech_rate == 0.8
    assert [line for line in log_lines if "TTS:" in line] == [
        "INFO bot.services.factory: call=- TTS: Piper voice zh_CN-test-medium "
        f"({voice_dir / 'zh_CN-test-medium.onnx'})"
    ]


def test_non_mandarin_piper_voices_are_not_picked_by_discovery(tmp_path, joe_voice_path):
    voice_dir = tmp_path / "piper" / "en_US-joe-medium"
    voice_dir.mkdir(parents=True)
    (voice_dir / "en_US-joe-medium.onnx").symlink_to(joe_voice_path)
    (voice_dir / "en_US-joe-medium.onnx.json").symlink_to(f"{joe_voice_path}.json")

    assert load_tts(settings_for(tmp_path)).kind == "espeak"


def test_broken_piper_voice_falls_back_to_espeak(tmp_path, log_lines):
    broken = tmp_path / "zh_CN-broken.onnx"
    broken.write_bytes(b"garbage")
    (tmp_path / "zh_CN-broken.onnx.json").write_text("{}")

    engine = load_tts(settings_for(tmp_path, PIPER_VOICE_PATH=str(broken)))

    assert engine.kind == "espeak"
    assert any("FALLING BACK" in line and "ERROR" in line for line in log_lines)


def test_load_levels_tighter_than_the_model_become_views_and_scheduler_levels(tmp_path, korean_model_path, log_lines):
    engine = load_stt(settings_for(tmp_path, VOSK_MODEL_PATH=str(korean_model_path),
                                   VOSK_LOAD_LEVELS="4000/12,3000/10,2000/9,1000/8"))

    assert engine is not None
    levels = [limits.describe() for limits in engine.scheduler.level_limits]
    # 4000/12 is looser than the model's own 3000/10 and 3000/10 is the same: neither is a step.
    assert levels == ["max-active 3000, beam 10.0", "max-active 2000, beam 9.0", "max-active 1000, beam 8.0"]
    assert [(p / "conf" / "model.conf").read_text().count("--max-active=") for p in engine.tighter_model_paths] == [1, 1]
    assert "--max-active=1000" in (engine.tighter_model_paths[-1] / "conf" / "model.conf").read_text()
    assert any("under load max-active 2000, beam 9.0 -> max-active 1000, beam 8.0" in line for line in log_lines)


def test_no_load_levels_means_never_tightened(tmp_path, korean_model_path):
    engine = load_stt(settings_for(tmp_path, VOSK_MODEL_PATH=str(korean_model_path), VOSK_LOAD_LEVELS=""))

    assert engine is not None and engine.tighter_model_paths == () and len(engine.scheduler.level_limits) == 1


def test_load_levels_that_loosen_step_by_step_mean_keypad_only_not_a_crash(tmp_path, korean_model_path, log_lines):
    assert load_stt(settings_for(tmp_path, VOSK_MODEL_PATH=str(korean_model_path),
                                 VOSK_LOAD_LEVELS="1000/8,2000/9")) is None
    assert any("VOSK_LOAD_LEVELS" in line and "KEYPAD-ONLY" in line for line in log_lines)
