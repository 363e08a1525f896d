"""Kaldi's decoder search limits for a Vosk model: the CPU-per-caller knob for capacity planning.

Vosk reads the decoder's search limits (`--max-active`, `--beam`) only from the model folder's `conf/model.conf`
and offers no API to change them. Fewer active tokens and a narrower beam cost less CPU per second of speech and
some accuracy. On the 2-core reference machine, 8 concurrent calls meet the p95 latency target only with
`VOSK_MAX_ACTIVE=1000 VOSK_BEAM=8` on the Korean test model (docs/VOICE.md): check the accuracy cost on the real
Mandarin model with real callers' audio before using such values in production.

`model_view_with_limits` builds a view of the model folder (symlinks to its files, a rewritten `conf/model.conf`)
in a cache folder, so the installed model is never modified and several settings can coexist.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

MAX_ACTIVE_RANGE = (200, 100_000)  # below Vosk's usual --min-active=200 the decoder stops being a search
BEAM_RANGE = (4.0, 30.0)


@dataclass(frozen=True)
class DecoderLimits:
    """Search limits to decode with; None keeps the model's own value.

    Parameters:
        max_active: `--max-active`, the most tokens kept per frame (small Vosk models ship 3000-7000).
        beam: `--beam`, how far below the best path a token may score and survive (models ship 10-13).
    """

    max_active: int | None = None
    beam: float | None = None

    def __post_init__(self) -> None:
        if self.max_active is not None and not MAX_ACTIVE_RANGE[0] <= self.max_active <= MAX_ACTIVE_RANGE[1]:
            raise ValueError(f"VOSK_MAX_ACTIVE must be within {MAX_ACTIVE_RANGE}, got {self.max_active}")
        if self.beam is not None and not BEAM_RANGE[0] <= self.beam <= BEAM_RANGE[1]:
            raise ValueError(f"VOSK_BEAM must be within {BEAM_RANGE}, got {self.beam}")

    @classmethod
    def from_settings(cls, max_active: int, beam: float) -> "DecoderLimits":
        """The settings' convention: 0 means "the model's own value"."""
        return cls(max_active=max_active or None, beam=beam or None)

    @classmethod
    def parse_levels(cls, text: str) -> tuple["DecoderLimits", ...]:
        """`VOSK_LOAD_LEVELS`: "2000/9,1000/8" -> one DecoderLimits per step; each must be no looser than the last."""
        levels: list[DecoderLimits] = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            max_active, sep, beam = item.partition("/")
            try:
                level = cls(max_active=int(max_active), beam=float(beam)) if sep else None
            except ValueError:
                level = None
            if level is None:
                raise ValueError(f"VOSK_LOAD_LEVELS: expected max-active/beam like 1000/8, got {item!r}")
            if levels and (level.max_active > levels[-1].max_active or level.beam > levels[-1].beam):
                raise ValueError(f"VOSK_LOAD_LEVELS: each step must be tighter than the one before, got {text!r}")
            levels.append(level)
        return tuple(levels)

    @classmethod
    def of_model(cls, model_path: Path) -> "DecoderLimits":
        """The limits a model folder (or view) decodes with, as its conf/model.conf says (None where it is silent)."""
        conf = _read_text(Path(model_path) / "conf" / "model.conf")
        found = dict(re.findall(r"^\s*--(max-active|beam)=([0-9.]+)\s*$", conf, flags=re.MULTILINE))
        max_active = found.get("max-active")
        beam = found.get("beam")
        return cls(max_active=int(max_active) if max_active else None, beam=float(beam) if beam else None)

    @property
    def is_default(self) -> bool:
        return self.max_active is None and self.beam is None

    def describe(self) -> str:
        if self.is_default:
            return "model defaults"
        return f"max-active {self.max_active or 'model'}, beam {self.beam or 'model'}"

    def apply_to_conf(self, conf_text: str) -> str:
        """`conf_text` (a Kaldi options file) with these limits set, replacing the model's lines for them."""
        options = {"max-active": self.max_active, "beam": self.beam}
        lines = conf_text.splitlines()
        for name, value in options.items():
            if value is None:
                continue
            pattern = re.compile(rf"^\s*--{re.escape(name)}=")
            lines = [line for line in lines if not pattern.match(line)]
            lines.append(f"--{name}={value}")
        return "\n".join(lines) + "\n"


def model_view_with_limits(model_path: Path, limits: DecoderLimits, cache_dir: Path | None = None) -> Path:
    """The folder to load instead of `model_path` so Vosk decodes with `limits`: `model_path` itself when the
    limits are the model's own, else a view with symlinks to the model's files and its own `conf/model.conf`.

    Built in a scratch folder and renamed into place, so two processes starting together never see half a view.
    """
    if limits.is_default:
        return model_path
    model_path = model_path.resolve()
    cache_dir = cache_dir or Path(tempfile.gettempdir()) / "ivr-vosk-views"
    key = hashlib.sha256(f"{model_path}|{limits.max_active}|{limits.beam}".encode()).hexdigest()[:12]
    view = cache_dir / f"{model_path.name}-{key}"
    conf = limits.apply_to_conf(_read_text(model_path / "conf" / "model.conf"))
    if (view / "conf" / "model.conf").is_file() and _read_text(view / "conf" / "model.conf") == conf:
        return view
    cache_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{view.name}-", dir=cache_dir))
    try:
        _link_model(model_path, scratch)
        (scratch / "conf" / "model.conf").write_text(conf)
        shutil.rmtree(view, ignore_errors=True)
        os.replace(scratch, view)
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)
        if not (view / "conf" / "model.conf").is_file():  # another process won the race: use its view
            raise
    return view


def _link_model(model_path: Path, view: Path) -> None:
    for entry in model_path.iterdir():
        if entry.name != "conf":
            (view / entry.name).symlink_to(entry)
    (view / "conf").mkdir()
    conf_dir = model_path / "conf"
    if conf_dir.is_dir():
        for entry in conf_dir.iterdir():
            if entry.name != "model.conf":
                (view / "conf" / entry.name).symlink_to(entry)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
