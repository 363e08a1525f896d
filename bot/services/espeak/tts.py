"""espeak-ng TTS through its command line: the Mandarin (`cmn`) fallback when no Piper voice is installed.

Frames in:  TextFrame / TTSSpeakFrame, TTSUpdateSettingsFrame(delta=EspeakTTSService.Settings(speech_rate=...)).
Frames out: TTSStartedFrame, TTSAudioRawFrame chunks as espeak-ng writes them (22050 Hz resampled to the
            transport's output rate), TTSStoppedFrame.

One `espeak-ng --stdout` process per sentence, started with asyncio.create_subprocess_exec (never a shell); the
text goes in on stdin, so nothing in it can be read as an option or interpreted by a shell.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import subprocess
from collections.abc import AsyncIterator

from bot.services.local_tts import LocalTTSService

log = logging.getLogger(__name__)

ESPEAK_DEFAULT_WPM = 175
ESPEAK_MIN_WPM = 80
ESPEAK_MAX_WPM = 450
WAV_HEADER_BYTES = 44
READ_CHUNK_BYTES = 8820  # 200 ms at 22050 Hz
SENTENCE_TIMEOUT_S = 15.0


class EspeakUnavailableError(RuntimeError):
    """espeak-ng or the requested voice is not installed (apt-get install espeak-ng)."""


def words_per_minute(rate: float, base_wpm: int = ESPEAK_DEFAULT_WPM) -> int:
    """espeak-ng's `-s` speed for a speech rate, within the range espeak-ng accepts."""
    return max(ESPEAK_MIN_WPM, min(ESPEAK_MAX_WPM, round(base_wpm * rate)))


def parse_wav_header(header: bytes) -> int:
    """The sample rate of espeak-ng's 16-bit mono WAV header (whose size fields are placeholders when streaming)."""
    if len(header) < WAV_HEADER_BYTES or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not write a WAV header")
    channels = int.from_bytes(header[22:24], "little")
    bits = int.from_bytes(header[34:36], "little")
    if channels != 1 or bits != 16:
        raise ValueError(f"espeak-ng wrote {channels} channel(s) of {bits}-bit audio, expected mono 16-bit")
    return int.from_bytes(header[24:28], "little")


def find_espeak(executable: str = "espeak-ng") -> str:
    """The espeak-ng binary's path. Raises EspeakUnavailableError if it is not installed."""
    found = shutil.which(executable)
    if found is None:
        raise EspeakUnavailableError(f"{executable} not found on PATH; install it: apt-get install espeak-ng")
    return found


@functools.lru_cache(maxsize=4)
def installed_voices(executable: str) -> frozenset[str]:
    """The voice names espeak-ng accepts for `-v`: language codes and voice file names (`cmn`, `sit/cmn`)."""
    listing = subprocess.run([executable, "--voices"], capture_output=True, text=True, timeout=10, check=True)
    names: set[str] = set()
    for line in listing.stdout.splitlines()[1:]:  # columns: Pty Language Age/Gender VoiceName File Other
        columns = line.split()
        if len(columns) >= 5:
            names.update((columns[1], columns[3], columns[4], columns[4].rsplit("/", 1)[-1]))
    return frozenset(names)


def check_voice(voice: str, executable: str) -> None:
    """espeak-ng silently speaks English for an unknown voice; refuse it up front instead."""
    if voice not in installed_voices(executable):
        raise EspeakUnavailableError(f"espeak-ng has no voice {voice!r} (see `espeak-ng --voices`)")


class EspeakTTSService(LocalTTSService):
    """espeak-ng TTS with sentence streaming and speech-rate control (words per minute scaled by the rate)."""

    def __init__(
        self,
        *,
        voice: str = "cmn",
        base_wpm: int = ESPEAK_DEFAULT_WPM,
        executable: str = "espeak-ng",
        speech_rate: float = 1.0,
        **kwargs,
    ):
        """Args:
        voice: espeak-ng voice (`cmn` is Mandarin).
        base_wpm: words per minute at rate 1.0.
        executable: the espeak-ng binary, looked up on PATH.
        speech_rate: initial rate, 1.0 normal.
        **kwargs: passed to LocalTTSService / pipecat's TTSService (e.g. `sample_rate=8000`).

        Raises:
            EspeakUnavailableError: espeak-ng or the voice is not installed.
        """
        self._executable = find_espeak(executable)
        check_voice(voice, self._executable)
        self._espeak_voice = voice
        self._base_wpm = base_wpm
        super().__init__(voice=voice, speech_rate=speech_rate, **kwargs)

    async def synthesize_sentence(self, sentence: str, speech_rate: float) -> AsyncIterator[tuple[bytes, int]]:
        """Stream one sentence's PCM from an espeak-ng process; the process is killed if the caller barges in."""
        process = await asyncio.create_subprocess_exec(
            self._executable,
            "-v",
            self._espeak_voice,
            "-s",
            str(words_per_minute(speech_rate, self._base_wpm)),
            "--stdout",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            # One line of text: a newline inside would only be a pause, and stdin ends the input.
            process.stdin.write(" ".join(sentence.split()).encode("utf-8"))
            process.stdin.close()
            async with asyncio.timeout(SENTENCE_TIMEOUT_S):
                sample_rate = parse_wav_header(await process.stdout.readexactly(WAV_HEADER_BYTES))
                async for pcm in self._read_pcm(process.stdout):
                    yield pcm, sample_rate
                await self._check_exit(process)
        except asyncio.IncompleteReadError as exc:
            await self._check_exit(process)
            raise RuntimeError(f"espeak-ng ended without audio ({len(exc.partial)} bytes)") from exc
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    @staticmethod
    async def _read_pcm(stdout: asyncio.StreamReader) -> AsyncIterator[bytes]:
        """PCM chunks of even length (whole 16-bit samples) until espeak-ng closes its output."""
        leftover = b""
        while chunk := await stdout.read(READ_CHUNK_BYTES):
            data = leftover + chunk
            even = len(data) & ~1
            leftover = data[even:]
            if even:
                yield data[:even]

    async def _check_exit(self, process: asyncio.subprocess.Process) -> None:
        stderr = await process.stderr.read()
        code = await process.wait()
        if code != 0:
            raise RuntimeError(f"espeak-ng exited with {code}: {stderr.decode(errors='replace').strip()[:200]}")
        if stderr.strip():
            log.debug("%s: espeak-ng: %s", self, stderr.decode(errors="replace").strip()[:200])
