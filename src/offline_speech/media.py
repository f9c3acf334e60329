"""Media files: probe with ffprobe (duration, audio streams). Standard library only."""

from __future__ import annotations

import json
import shutil
import subprocess
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
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        raise MediaError("ffprobe not found: install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg)")
    proc = subprocess.run(
        [ffprobe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", "--", str(path)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["unknown format"])[-1]
        raise MediaError(f"{path}: not a media file ffmpeg can read ({reason})")
    info = json.loads(proc.stdout or "{}")
    audio = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not audio:
        raise MediaError(f"{path}: has no audio stream")
    durations = [info.get("format", {}).get("duration")] + [s.get("duration") for s in audio]
    duration = max((float(d) for d in durations if d not in (None, "N/A")), default=0.0)
    if duration <= 0:
        raise MediaError(f"{path}: duration is 0")
    return Probe(duration, len(audio), info.get("format", {}).get("format_name", ""))
