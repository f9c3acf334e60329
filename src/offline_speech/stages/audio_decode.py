"""Decode any audio file PyAV can open (wav, m4a, mp3, flac, ogg, a video's first audio stream) to 16 kHz mono
float32 samples in [-1, 1]. Used for enrolled voice samples, which come as users record them, not as the demux
stage's wav. Needs `av` and numpy (venv/whisperx has both); imported only inside stages that run there.
"""

from __future__ import annotations

from pathlib import Path

from .base import StageFailure

SAMPLE_RATE = 16000


def decode_audio(path: Path, sample_rate: int = SAMPLE_RATE):
    """The first audio stream of `path` as a 1-d float32 numpy array at `sample_rate`, mono (channels averaged by
    the resampler). StageFailure names the file when it is not audio PyAV can decode."""
    import av
    import numpy as np

    chunks = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise StageFailure(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):  # flush what the resampler still holds
                chunks.append(out.to_ndarray().reshape(-1))
    except StageFailure:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise StageFailure(
            f"{path}: not audio that can be decoded ({type(exc).__name__}: {exc})".splitlines()[0]
        ) from None
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
