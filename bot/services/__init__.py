"""The voice engines of the per-call pipeline, written as pipecat services.

- `bot.services.vosk.stt.VoskSTTService`: streaming Vosk ASR (one model per process, one recognizer per call).
- `bot.services.piper.tts.PiperTTSService`: in-process Piper TTS.
- `bot.services.espeak.tts.EspeakTTSService`: espeak-ng subprocess TTS, the Mandarin fallback.
- `bot.services.factory`: `load_stt(settings)` / `load_tts(settings)` choose what is installed, once per process.

Submodules are imported explicitly so that loading one engine never imports the others.
"""
