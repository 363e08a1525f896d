"""espeak-ng text-to-speech through its command line: the fallback voice when no Piper voice is installed."""
