"""Vosk (Kaldi) streaming speech recognition."""
