"""demux: the job's clip as 16 kHz mono 16-bit WAV (what every ASR backend and aligner reads). Core venv, ffmpeg."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from .audio import SAMPLE_RATE
from .base import Events, StageFailure, for_each_job, main

NAME = "demux"
_OUT_TIME = re.compile(r"^out_time_us=(\d+)$")


def extract(media: str, start: float, end: float, dest: Path, on_progress=None) -> None:
    """Decode [start, end) of the first audio stream of `media` into `dest` (atomically)."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp.wav")
    cmd = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-ss", f"{start:.3f}", "-t", f"{end - start:.3f}", "-i", media,
        "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le",
        "-progress", "pipe:1", "-nostats", "-f", "wav", str(tmp),
    ]  # fmt: skip
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise StageFailure("ffmpeg is not installed (apt-get install ffmpeg)") from None
    try:
        for line in proc.stdout:
            m = _OUT_TIME.match(line.strip())
            if m and on_progress:
                on_progress(min(int(m[1]) / 1e6, end - start))
        err = proc.stderr.read()
        if proc.wait() != 0:
            raise StageFailure(f"ffmpeg could not decode the audio: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")
        if tmp.stat().st_size <= 44:
            raise StageFailure("ffmpeg produced no audio for the clip")
        os.replace(tmp, dest)
    finally:
        if proc.poll() is None:
            proc.kill()
        tmp.unlink(missing_ok=True)


def run(request: dict, events: Events) -> None:
    def work(job: dict) -> dict:
        clip = job["job"]["clip"]
        dest = Path(job["outputs"]["audio"])
        extract(job["job"]["media"]["path"], clip["start"], clip["end"], dest, lambda s: events.progress(job["id"], s))
        seconds = (dest.stat().st_size - 44) / (2 * SAMPLE_RATE)
        events.log(job["id"], f"decoded {seconds:.3f} s of audio at {SAMPLE_RATE} Hz mono into {dest.name}")
        return {"audio_seconds": round(seconds, 3)}

    # ffmpeg processes are independent and mostly wait on I/O and decoding: run a few side by side
    for_each_job(request, events, work, workers=min(len(request["jobs"]), max(2, os.cpu_count() or 1), 8))


if __name__ == "__main__":
    main(run)
