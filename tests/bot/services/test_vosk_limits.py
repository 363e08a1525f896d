"""Decoder search limits (VOSK_MAX_ACTIVE / VOSK_BEAM): a view of the model folder with its own conf/model.conf,
loaded by the real Vosk on the real Korean model; the installed model is never touched."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from bot.services.factory import load_stt
from bot.services.vosk.limits import DecoderLimits, model_view_with_limits
from bot.services.vosk.stt import VoskSTTService
from settings import Settings
from tests.bot.services.test_vosk_stt import transcribe, utterance

KOREAN_CONF = """--min-active=200
--max-active=3000
--beam=10.0
--lattice-beam=2.0
--frame-subsampling-factor=3
"""


@pytest.fixture
def fake_model(tmp_path) -> Path:
    model = tmp_path / "vosk-model-x"
    (model / "am").mkdir(parents=True)
    (model / "am" / "final.mdl").write_bytes(b"am")
    (model / "conf").mkdir()
    (model / "conf" / "model.conf").write_text(KOREAN_CONF)
    (model / "conf" / "mfcc.conf").write_text("--use-energy=false\n")
    return model


def test_limits_replace_the_models_own_lines_and_keep_the_rest():
    conf = DecoderLimits(max_active=1000, beam=8.0).apply_to_conf(KOREAN_CONF)

    lines = conf.splitlines()
    assert "--max-active=1000" in lines and "--beam=8.0" in lines
    assert "--max-active=3000" not in lines and "--beam=10.0" not in lines
    assert "--lattice-beam=2.0" in lines and "--min-active=200" in lines  # not a prefix match on --beam


def test_only_the_limits_given_are_changed():
    conf = DecoderLimits(max_active=1500).apply_to_conf(KOREAN_CONF)
    assert "--max-active=1500" in conf.splitlines() and "--beam=10.0" in conf.splitlines()


@pytest.mark.parametrize("values", [{"max_active": 10}, {"max_active": 10**7}, {"beam": 0.5}, {"beam": 99.0}])
def test_nonsense_limits_are_refused(values):
    with pytest.raises(ValueError, match="VOSK_"):
        DecoderLimits(**values)


def test_zero_in_settings_means_the_models_own_and_the_model_is_used_as_is(fake_model, tmp_path):
    limits = DecoderLimits.from_settings(0, 0.0)
    assert limits.is_default
    assert model_view_with_limits(fake_model, limits, tmp_path / "cache") == fake_model
    assert not (tmp_path / "cache").exists()


def test_view_links_the_model_and_carries_its_own_conf(fake_model, tmp_path):
    view = model_view_with_limits(fake_model, DecoderLimits(max_active=1000, beam=8.0), tmp_path / "cache")

    assert view != fake_model and (view / "am").is_symlink()
    assert (view / "am" / "final.mdl").read_bytes() == b"am"
    assert (view / "conf" / "mfcc.conf").is_symlink()
    assert "--max-active=1000" in (view / "conf" / "model.conf").read_text()
    assert (fake_model / "conf" / "model.conf").read_text() == KOREAN_CONF  # the installed model is untouched


def test_view_is_reused_and_other_limits_get_their_own(fake_model, tmp_path):
    cache = tmp_path / "cache"
    first = model_view_with_limits(fake_model, DecoderLimits(max_active=1000), cache)
    marker = first / "conf" / "model.conf"
    before = marker.stat().st_mtime_ns

    assert model_view_with_limits(fake_model, DecoderLimits(max_active=1000), cache) == first
    assert marker.stat().st_mtime_ns == before
    other = model_view_with_limits(fake_model, DecoderLimits(max_active=2000), cache)
    assert other != first and "--max-active=2000" in (other / "conf" / "model.conf").read_text()


async def test_real_model_decodes_through_a_view(korean_model_path, korean_16k, tmp_path):
    view = model_view_with_limits(korean_model_path, DecoderLimits(max_active=1000, beam=8.0), tmp_path / "cache")

    finals, _ = await transcribe(VoskSTTService(model_path=view), utterance(korean_16k, 16000), 16000)

    assert len(finals) == 1 and len(finals[0].split()) >= 3


def test_gateway_loads_the_view_from_settings(korean_model_path, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the views' cache lives in the temp folder
    settings = Settings.from_env({"MODELS_DIR": str(tmp_path), "VOSK_MODEL_PATH": str(korean_model_path),
                                  "VOSK_MAX_ACTIVE": "1000", "VOSK_BEAM": "8"})
    engine = load_stt(settings)
    assert engine is not None and engine.name == korean_model_path.name  # logs and metrics name the real model
    assert engine.model_path.parent == tmp_path / "ivr-vosk-views"
    assert "--max-active=1000" in (engine.model_path / "conf" / "model.conf").read_text()


def test_bad_limits_in_settings_mean_keypad_only_not_a_crash(korean_model_path, tmp_path):
    settings = Settings.from_env({"MODELS_DIR": str(tmp_path), "VOSK_MODEL_PATH": str(korean_model_path),
                                  "VOSK_BEAM": "0.1"})
    assert load_stt(settings) is None


def test_load_levels_are_parsed_in_order_and_must_tighten():
    assert DecoderLimits.parse_levels(" 2000/9 , 1000/8 ") == (DecoderLimits(2000, 9.0), DecoderLimits(1000, 8.0))
    assert DecoderLimits.parse_levels("") == ()
    for nonsense in ("1000", "abc/8", "1000/8,2000/9", "1000/8;500/7", "50/8"):
        with pytest.raises(ValueError):
            DecoderLimits.parse_levels(nonsense)


def test_a_models_own_limits_are_read_from_its_conf(fake_model, tmp_path):
    assert DecoderLimits.of_model(fake_model) == DecoderLimits(max_active=3000, beam=10.0)
    assert DecoderLimits.of_model(tmp_path) == DecoderLimits()  # no conf: nothing stated
