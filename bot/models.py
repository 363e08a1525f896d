"""Speech models: download, list and verify them, and find the installed ones (`make models`).

    python -m bot.models download [NAME ...]   # default: the small Mandarin Vosk model and a Piper zh_CN voice
    python -m bot.models list                  # the catalogue and what is installed where
    python -m bot.models verify                # re-hash installed models against models/manifest.json

Files come from their official hosts, or from `MODELS_MIRROR` (a base URL serving the same file names flat),
because bank networks are usually offline. Every download is checked against its size and sha256: a pin from
`MODELS_SHA256` first, else the digest recorded in `models/manifest.json` on the first download. A file that fails
the check is deleted; nothing half-downloaded or unverified is left under `models/`.

Layout: `models/vosk/<name>/` (an unpacked Vosk model), `models/piper/<name>/<name>.onnx` + `.onnx.json`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from settings import Settings, get_settings

MANIFEST_NAME = "manifest.json"
DOWNLOAD_TIMEOUT_S = 15.0
CHUNK_BYTES = 1 << 16

VOSK_BASE_URL = "https://alphacephei.com/vosk/models"
PIPER_BASE_URL = "https://huggingface.co/rhasspy/piper-voices/resolve/v1.0.0"


class ModelsError(RuntimeError):
    """A model could not be fetched, checked or installed; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the catalogue.

    Parameters:
        name: the folder name under models/<kind>/.
        kind: "vosk" (a zip to unpack) or "piper" (an .onnx voice and its .onnx.json config).
        urls: the official URLs of its files; a mirror serves the same file names.
        default: downloaded by a plain `download`.
        approx_mb: for the user's information (the real size is checked against the server and the manifest).
    """

    name: str
    kind: str
    urls: tuple[str, ...]
    default: bool
    approx_mb: int
    description: str

    @property
    def filenames(self) -> list[str]:
        return [url.rsplit("/", 1)[1] for url in self.urls]


CATALOGUE: tuple[ModelSpec, ...] = (
    ModelSpec(
        "vosk-model-small-cn-0.22",
        "vosk",
        (f"{VOSK_BASE_URL}/vosk-model-small-cn-0.22.zip",),
        default=True,
        approx_mb=42,
        description="Vosk Mandarin, small: runtime grammars (digits), low CPU",
    ),
    ModelSpec(
        "vosk-model-cn-0.22",
        "vosk",
        (f"{VOSK_BASE_URL}/vosk-model-cn-0.22.zip",),
        default=False,
        approx_mb=1300,
        description="Vosk Mandarin, large: more accurate, no runtime grammars, needs ~4 GB RAM",
    ),
    ModelSpec(
        "zh_CN-huayan-medium",
        "piper",
        (
            f"{PIPER_BASE_URL}/zh/zh_CN/huayan/medium/zh_CN-huayan-medium.onnx",
            f"{PIPER_BASE_URL}/zh/zh_CN/huayan/medium/zh_CN-huayan-medium.onnx.json",
        ),
        default=True,
        approx_mb=61,
        description="Piper Mandarin female voice, 22050 Hz",
    ),
)

DEFAULT_VOSK_MODEL = "vosk-model-small-cn-0.22"
DEFAULT_PIPER_VOICE = "zh_CN-huayan-medium"


# -- where things are -----------------------------------------------------------------------------------------


def models_dir(settings: Settings) -> Path:
    return Path(settings.voice.models_dir)


def install_dir(spec: ModelSpec, settings: Settings) -> Path:
    return models_dir(settings) / spec.kind / spec.name


def is_vosk_model(path: Path) -> bool:
    return (path / "am" / "final.mdl").is_file() and (path / "conf").is_dir()


def find_vosk_model(settings: Settings) -> Path | None:
    """The Vosk model the runtime uses: `VOSK_MODEL_PATH`, else the default, else any under models/vosk/."""
    if settings.voice.vosk_model_path:
        return Path(settings.voice.vosk_model_path)
    root = models_dir(settings) / "vosk"
    preferred = root / DEFAULT_VOSK_MODEL
    if is_vosk_model(preferred):
        return preferred
    candidates = sorted(p for p in root.glob("*") if p.is_dir() and is_vosk_model(p)) if root.is_dir() else []
    return candidates[0] if candidates else None


def find_piper_voice(settings: Settings) -> Path | None:
    """The Piper voice the runtime uses: `PIPER_VOICE_PATH`, else an installed Mandarin (zh_CN) voice."""
    if settings.voice.piper_voice_path:
        return Path(settings.voice.piper_voice_path)
    root = models_dir(settings) / "piper"
    preferred = root / DEFAULT_PIPER_VOICE / f"{DEFAULT_PIPER_VOICE}.onnx"
    if _is_piper_voice(preferred):
        return preferred
    candidates = sorted(p for p in root.glob("*/zh_CN-*.onnx") if _is_piper_voice(p)) if root.is_dir() else []
    return candidates[0] if candidates else None


def _is_piper_voice(onnx: Path) -> bool:
    return onnx.is_file() and Path(f"{onnx}.json").is_file()


# -- checksums and the manifest -------------------------------------------------------------------------------


def parse_pins(raw: str) -> dict[str, str]:
    """`MODELS_SHA256` ("file=sha256;file=sha256") as a dict; malformed entries are an error, not ignored."""
    pins: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in raw.split(";"))):
        name, sep, digest = entry.partition("=")
        digest = digest.strip().lower()
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ModelsError(f"MODELS_SHA256 entry {entry!r} is not 'file=<64 hex digits>'")
        pins[name.strip()] = digest
    return pins


def load_manifest(settings: Settings) -> dict:
    path = models_dir(settings) / MANIFEST_NAME
    if not path.is_file():
        return {"files": {}, "installed": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelsError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc
    manifest.setdefault("files", {})
    manifest.setdefault("installed", {})
    return manifest


def save_manifest(settings: Settings, manifest: dict) -> None:
    path = models_dir(settings) / MANIFEST_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(root: Path) -> str:
    """One digest over every file of an unpacked model (relative paths and contents), for `verify`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()


# -- downloading ----------------------------------------------------------------------------------------------


def source_url(official_url: str, settings: Settings) -> str:
    """The URL to fetch: the mirror's copy of the file when `MODELS_MIRROR` is set, else the official one."""
    mirror = settings.voice.models_mirror.strip()
    if not mirror:
        return official_url
    return f"{mirror.rstrip('/')}/{official_url.rsplit('/', 1)[1]}"


def offline_help(spec: ModelSpec, settings: Settings) -> str:
    target = install_dir(spec, settings)
    if spec.kind == "vosk":
        place = f"unzip it so that {target}/am/final.mdl exists (the zip's top folder becomes {target.name}/)"
    else:
        place = f"copy both files into {target}/"
    files = "\n".join(f"    {url}" for url in spec.urls)
    return (
        f"On a machine with internet access download:\n{files}\n"
        f"  then {place};\n"
        f"  or put those files in one folder of a local web server and set MODELS_MIRROR=http://<server>/<folder>."
    )


def fetch(url: str, dest: Path, progress: Callable[[int, int | None], None]) -> tuple[int, str]:
    """Download `url` to `dest`; returns (size, sha256). Raises ModelsError if unreachable or cut short."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            expected = int(response.headers.get("Content-Length") or 0) or None
            digest = hashlib.sha256()
            size = 0
            with dest.open("wb") as out:
                while block := response.read(CHUNK_BYTES):
                    out.write(block)
                    digest.update(block)
                    size += len(block)
                    progress(size, expected)
    except urllib.error.HTTPError as exc:
        raise ModelsError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelsError(f"cannot reach {url} ({reason}); this machine looks offline") from exc
    if expected is not None and size != expected:
        raise ModelsError(f"{url}: download cut short ({size} of {expected} bytes)")
    return size, digest.hexdigest()


def check_digest(filename: str, size: int, sha256: str, pins: dict[str, str], manifest: dict) -> None:
    """Refuse a file whose digest differs from its pin or from the one recorded at its first download."""
    if filename in pins and pins[filename] != sha256:
        raise ModelsError(f"{filename}: sha256 {sha256} does not match the pin {pins[filename]} (MODELS_SHA256)")
    recorded = manifest["files"].get(filename)
    if recorded and (recorded["sha256"] != sha256 or recorded["size"] != size):
        raise ModelsError(
            f"{filename}: got {size} bytes sha256 {sha256}, but models/{MANIFEST_NAME} recorded "
            f"{recorded['size']} bytes sha256 {recorded['sha256']}; the file or the mirror is corrupted"
        )


def unpack_zip(archive: Path, dest: Path) -> None:
    """Unpack a model zip into `dest`, dropping its single top folder; refuses paths escaping the folder."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise ModelsError(f"{archive.name} is not a valid zip archive ({exc})") from exc
    with zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        for name in names:
            if name.startswith("/") or ".." in Path(name).parts:
                raise ModelsError(f"{archive.name}: unsafe path {name!r} in archive")
        tops = {Path(n).parts[0] for n in names}
        strip = 1 if len(tops) == 1 and all(len(Path(n).parts) > 1 for n in names) else 0
        for name in names:
            target = dest.joinpath(*Path(name).parts[strip:])
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(name) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)


def download(spec: ModelSpec, settings: Settings, out: TextIO | None = None) -> Path:
    """Fetch, check and install one model; returns its folder. Leaves nothing behind on failure."""
    out = out or sys.stderr
    target = install_dir(spec, settings)
    if target.is_dir() and any(target.iterdir()):
        print(f"{spec.name}: already installed in {target}", file=out)
        return target
    pins = parse_pins(settings.voice.models_sha256)
    manifest = load_manifest(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{spec.name}.", dir=target.parent) as tmp:
        staging = Path(tmp) / "files"
        staging.mkdir()
        for official in spec.urls:
            url = source_url(official, settings)
            filename = official.rsplit("/", 1)[1]
            part = Path(tmp) / filename
            try:
                size, sha256 = fetch(url, part, _progress_printer(filename, out))
            except ModelsError as exc:
                raise ModelsError(f"{spec.name}: {exc}\n{offline_help(spec, settings)}") from exc
            check_digest(filename, size, sha256, pins, manifest)
            manifest["files"].setdefault(filename, {"size": size, "sha256": sha256, "url": official})
            if spec.kind == "vosk":
                unpack_zip(part, staging)
                part.unlink()
            else:
                part.replace(staging / filename)
        if spec.kind == "vosk" and not is_vosk_model(staging):
            raise ModelsError(f"{spec.name}: the archive does not hold a Vosk model (no am/final.mdl, conf/)")
        manifest["installed"][spec.name] = {"kind": spec.kind, "tree_sha256": tree_sha256(staging)}
        if target.exists():
            target.rmdir()  # an empty leftover folder
        staging.replace(target)
    save_manifest(settings, manifest)
    print(f"{spec.name}: installed in {target}", file=out)
    return target


def _progress_printer(label: str, out: TextIO) -> Callable[[int, int | None], None]:
    """Prints `label: 12.3/42.0 MB (29%)` about every megabyte, on one line when `out` is a terminal."""
    state = {"next": 0}
    end = "\r" if getattr(out, "isatty", lambda: False)() else "\n"

    def progress(done: int, total: int | None) -> None:
        finished = total is not None and done >= total
        if done < state["next"] and not finished:
            return
        state["next"] = done + (1 << 20)
        of = f"/{total / 1e6:.1f} MB ({100 * done // total}%)" if total else " MB"
        print(f"  {label}: {done / 1e6:.1f}{of}", end="\n" if finished else end, file=out, flush=True)

    return progress


def verify(settings: Settings, out: TextIO | None = None) -> bool:
    """Re-hash every installed model against the manifest; True when all match."""
    out = out or sys.stdout
    manifest = load_manifest(settings)
    ok = True
    installed = [spec for spec in CATALOGUE if install_dir(spec, settings).is_dir()]
    if not installed:
        print(f"no models installed under {models_dir(settings)}; run `make models`", file=out)
    for spec in installed:
        target = install_dir(spec, settings)
        recorded = manifest["installed"].get(spec.name)
        if recorded is None:
            print(f"{spec.name}: installed by hand, not in the manifest (nothing to check against)", file=out)
            continue
        good = tree_sha256(target) == recorded["tree_sha256"]
        ok &= good
        print(f"{spec.name}: {'ok' if good else 'MODIFIED OR CORRUPTED since download'}", file=out)
    return ok


def list_models(settings: Settings, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    for spec in CATALOGUE:
        target = install_dir(spec, settings)
        state = "installed" if target.is_dir() else ("default" if spec.default else "optional")
        print(f"{spec.name:28} {spec.kind:6} ~{spec.approx_mb:>5} MB  {state:9}  {spec.description}", file=out)
    print(f"runtime ASR model: {find_vosk_model(settings) or 'none (keypad-only)'}", file=out)
    print(f"runtime Piper voice: {find_piper_voice(settings) or 'none (espeak-ng fallback)'}", file=out)


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.models", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    download_cmd = commands.add_parser("download", help="fetch, check and unpack models into models/")
    download_cmd.add_argument("names", nargs="*", help="catalogue names (default: the default models)")
    commands.add_parser("list", help="show the catalogue and what is installed")
    commands.add_parser("verify", help="re-hash installed models against models/manifest.json")
    args = parser.parse_args(argv)
    settings = settings or get_settings()
    try:
        if args.command == "list":
            list_models(settings)
            return 0
        if args.command == "verify":
            return 0 if verify(settings) else 1
        specs = _chosen(args.names)
    except ModelsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return _download_all(specs, settings)


def _download_all(specs: Sequence[ModelSpec], settings: Settings) -> int:
    """Try every model, so that one offline run lists everything there is to copy by hand."""
    failed = 0
    for spec in specs:
        try:
            download(spec, settings)
        except ModelsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _chosen(names: Sequence[str]) -> list[ModelSpec]:
    if not names:
        return [spec for spec in CATALOGUE if spec.default]
    by_name = {spec.name: spec for spec in CATALOGUE}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ModelsError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [by_name[n] for n in names]


if __name__ == "__main__":
    sys.exit(main())
