"""offline-speech: provision speech models once, then transcribe, align, translate and subtitle offline."""

__version__ = "0.1.0"
