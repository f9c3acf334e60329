"""The audio every stage after demux reads: 16 kHz mono 16-bit PCM WAV (what Whisper and the aligners expect).

Standard library only at import (numpy is imported by read_wav, in the venvs that have it).
"""

from __future__ import annotations

import wave
from pathlib import Path

from .base import StageFailure

SAMPLE_RATE = 16000
SAMPLE_WIDTH = 2  # bytes per sample (s16le)


def seconds(samples: int) -> float:
    """The duration of `samples` samples at SAMPLE_RATE."""
    return samples / SAMPLE_RATE


def read_wav(path: Path):
    """demux's output as a float32 numpy array in [-1, 1); StageFailure for any other format."""
    import numpy as np

    with wave.open(str(path), "rb") as w:
        if w.getframerate() != SAMPLE_RATE or w.getnchannels() != 1 or w.getsampwidth() != SAMPLE_WIDTH:
            raise StageFailure(f"{Path(path).name}: expected {SAMPLE_RATE // 1000} kHz mono 16-bit audio from demux")
        frames = w.readframes(w.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype("float32") / 32768.0
