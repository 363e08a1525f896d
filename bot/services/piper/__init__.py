"""Piper neural text-to-speech, in process (the project is GPL-3.0, like piper-tts)."""
