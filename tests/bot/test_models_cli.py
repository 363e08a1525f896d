"""`python -m bot.models`: the offline error, and downloads from a mirror (a local HTTP server in the test)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from bot.models import ModelsError, main, parse_pins
from settings import REPO_ROOT, Settings

VOSK_ZIP = "vosk-model-small-cn-0.22.zip"
PIPER_FILES = ("zh_CN-huayan-medium.onnx", "zh_CN-huayan-medium.onnx.json")


def build_vosk_zip(path: Path, extra: bytes = b"") -> Path:
    """A zip laid out like alphacephei's: one top folder holding am/, conf/, graph/."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("vosk-model-small-cn-0.22/am/final.mdl", b"acoustic model bytes" + extra)
        zf.writestr("vosk-model-small-cn-0.22/conf/model.conf", "--min-active=200\n")
        zf.writestr("vosk-model-small-cn-0.22/graph/Gr.fst", b"grammar fst")
    return path


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP mirror serving a fresh directory; yields (directory, base URL). Always shut down."""
    root = tmp_path / "mirror"
    root.mkdir()
    build_vosk_zip(root / VOSK_ZIP)
    (root / PIPER_FILES[0]).write_bytes(b"onnx weights" * 100)
    (root / PIPER_FILES[1]).write_text(json.dumps({"audio": {"sample_rate": 22050}}))
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/models"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def translate_path(self, path: str) -> str:
        return super().translate_path(path.removeprefix("/models"))

    def log_message(self, *args) -> None:
        pass


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_for(models_dir: Path, **env: str) -> Settings:
    return Settings.from_env({"MODELS_DIR": str(models_dir), **env})


def leftovers(models_dir: Path) -> list[Path]:
    """Whatever a failed download left under models/, besides the kind folders and the manifest."""
    expected = {models_dir / "vosk", models_dir / "piper", models_dir / "manifest.json"}
    return [p for p in models_dir.rglob("*") if p not in expected] if models_dir.exists() else []


def test_offline_fails_fast_saying_what_to_copy_where(tmp_path):
    models_dir = tmp_path / "models"
    env = {"MODELS_DIR": str(models_dir), "MODELS_MIRROR": f"http://127.0.0.1:{closed_port()}", "PATH": "/usr/bin:/bin"}

    done = subprocess.run(
        [sys.executable, "-m", "bot.models", "download"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert "offline" in done.stderr
    assert "https://alphacephei.com/vosk/models/vosk-model-small-cn-0.22.zip" in done.stderr
    assert str(models_dir / "vosk" / "vosk-model-small-cn-0.22") in done.stderr
    assert (
        "https://huggingface.co/rhasspy/piper-voices/resolve/v1.0.0/zh/zh_CN/huayan/medium/zh_CN-huayan-medium.onnx"
        in done.stderr
    )
    assert str(models_dir / "piper" / "zh_CN-huayan-medium") in done.stderr
    assert "MODELS_MIRROR" in done.stderr
    assert leftovers(models_dir) == []


def test_mirror_download_unpacks_and_records_checksums(tmp_path, mirror, capsys):
    root, url = mirror
    models_dir = tmp_path / "models"
    settings = settings_for(models_dir, MODELS_MIRROR=url)

    assert main(["download"], settings) == 0

    vosk = models_dir / "vosk" / "vosk-model-small-cn-0.22"
    assert (vosk / "am" / "final.mdl").read_bytes() == b"acoustic model bytes"
    assert (vosk / "conf" / "model.conf").is_file()
    piper = models_dir / "piper" / "zh_CN-huayan-medium"
    assert sorted(p.name for p in piper.iterdir()) == sorted(PIPER_FILES)
    manifest = json.loads((models_dir / "manifest.json").read_text())
    zip_bytes = (root / VOSK_ZIP).read_bytes()
    assert manifest["files"][VOSK_ZIP] == {
        "size": len(zip_bytes),
        "sha256": hashlib.sha256(zip_bytes).hexdigest(),
        "url": "https://alphacephei.com/vosk/models/vosk-model-small-cn-0.22.zip",
    }
    assert "%" in capsys.readouterr().err  # progress was shown
    assert main(["verify"], settings) == 0


def test_corrupted_file_is_rejected_and_not_left_in_models(tmp_path, mirror):
    root, url = mirror
    models_dir = tmp_path / "models"
    settings = settings_for(models_dir, MODELS_MIRROR=url)
    assert main(["download", "vosk-model-small-cn-0.22"], settings) == 0
    vosk = models_dir / "vosk" / "vosk-model-small-cn-0.22"
    for path in sorted(vosk.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    vosk.rmdir()
    build_vosk_zip(root / VOSK_ZIP, extra=b"tampered")  # the mirror now serves different bytes

    assert main(["download", "vosk-model-small-cn-0.22"], settings) == 1

    assert leftovers(models_dir) == []


def test_pinned_checksum_mismatch_is_rejected(tmp_path, mirror, capsys):
    _, url = mirror
    models_dir = tmp_path / "models"
    settings = settings_for(models_dir, MODELS_MIRROR=url, MODELS_SHA256=f"{VOSK_ZIP}={'0' * 64}")

    assert main(["download", "vosk-model-small-cn-0.22"], settings) == 1

    assert "does not match the pin" in capsys.readouterr().err
    assert not (models_dir / "vosk" / "vosk-model-small-cn-0.22").exists()
    assert not (models_dir / "manifest.json").exists()


def test_archive_escaping_its_folder_is_refused(tmp_path, mirror):
    root, url = mirror
    with zipfile.ZipFile(root / VOSK_ZIP, "w") as zf:
        zf.writestr("../../evil.sh", b"#!/bin/sh\n")
    models_dir = tmp_path / "models"

    assert main(["download", "vosk-model-small-cn-0.22"], settings_for(models_dir, MODELS_MIRROR=url)) == 1

    assert not (tmp_path / "evil.sh").exists() and not (models_dir / "evil.sh").exists()
    assert leftovers(models_dir) == []


def test_file_that_is_not_a_zip_is_refused(tmp_path, mirror, capsys):
    root, url = mirror
    (root / VOSK_ZIP).write_bytes(b"<html>captive portal login</html>")

    assert main(["download", "vosk-model-small-cn-0.22"], settings_for(tmp_path / "models", MODELS_MIRROR=url)) == 1

    assert "not a valid zip" in capsys.readouterr().err
    assert leftovers(tmp_path / "models") == []


def test_verify_notices_a_modified_model(tmp_path, mirror):
    _, url = mirror
    models_dir = tmp_path / "models"
    settings = settings_for(models_dir, MODELS_MIRROR=url)
    assert main(["download", "zh_CN-huayan-medium"], settings) == 0

    (models_dir / "piper" / "zh_CN-huayan-medium" / PIPER_FILES[0]).write_bytes(b"swapped weights")

    assert main(["verify"], settings) == 1


def test_missing_file_on_the_mirror_is_a_clear_error(tmp_path, mirror, capsys):
    root, url = mirror
    (root / PIPER_FILES[1]).unlink()

    assert main(["download", "zh_CN-huayan-medium"], settings_for(tmp_path / "models", MODELS_MIRROR=url)) == 1

    assert "HTTP 404" in capsys.readouterr().err
    assert not (tmp_path / "models" / "piper" / "zh_CN-huayan-medium").exists()


def test_list_and_unknown_names(tmp_path, capsys):
    settings = settings_for(tmp_path / "models")
    assert main(["list"], settings) == 0
    listing = capsys.readouterr().out
    assert "vosk-model-small-cn-0.22" in listing and "none (keypad-only)" in listing
    assert main(["download", "no-such-model"], settings) == 1


def test_malformed_pins_are_an_error_not_ignored():
    assert parse_pins(f"a.zip={'A' * 64}") == {"a.zip": "a" * 64}
    with pytest.raises(ModelsError):
        parse_pins("a.zip=deadbeef")
