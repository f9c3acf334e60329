"""Media files: probe (duration, audio streams) with PyAV, whose wheels carry FFmpeg's own libraries (core venv).

A probe reads the container the way ffprobe does (libavformat opens it and reads its stream information), so the
durations are ffprobe's. No ffmpeg or ffprobe program is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import BadInput


class MediaError(BadInput, ValueError):
    """The media cannot be used: one line saying why."""


@dataclass(frozen=True)
class Probe:
    duration: float
    audio_streams: int
    format_name: str


def probe(path: Path) -> Probe:
    """Duration and audio streams of a media file, or MediaError with the reason."""
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if not path.is_file():
        raise MediaError(f"{path}: not a regular file")
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise MediaError(f"{path}: not readable ({exc.strerror})") from None
    if size == 0:
        raise MediaError(f"{path}: empty file")
    import av  # loading FFmpeg's libraries takes about 0.4 s: only commands that probe pay it

    try:
        with av.open(str(path)) as container:
            audio = list(container.streams.audio)
            durations = [container.duration / av.time_base if container.duration else None]
            durations += [s.duration * s.time_base for s in audio if s.duration is not None and s.time_base]
            format_name = container.format.name
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: not a media file ffmpeg can read ({exc.strerror or exc})") from None
    if not audio:
        raise MediaError(f"{path}: has no audio stream")
    duration = max((float(d) for d in durations if d is not None), default=0.0)
    if duration <= 0:
        raise MediaError(f"{path}: duration is 0")
    return Probe(duration, len(audio), format_name)
