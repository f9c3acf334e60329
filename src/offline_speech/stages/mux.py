"""mux: the original media with one soft subtitle track per language (subtitle workflow). Core venv, ffmpeg.

Every video, audio and subtitle stream of the original is copied without re-encoding; the job's subtitles (source
language first, then each target in -t order) are added as tracks tagged with their ISO 639-2 code and titled
with the language name. MP4-family inputs (.mp4 .m4v .mov) stay in their container with mov_text tracks; every
other input becomes Matroska (.mkv) with SubRip tracks. Subtitle times are positions in the original media, so a
job made of a clip still lines up.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from .base import Events, StageFailure, for_each_job, main

NAME = "mux"
MP4_FAMILY = (".mp4", ".m4v", ".mov")


def output_name(media: str) -> str:
    """`<stem>.subtitled.<ext>`: the input's own extension for MP4-family inputs, else mkv."""
    path = Path(media)
    ext = path.suffix.lower() if path.suffix.lower() in MP4_FAMILY else ".mkv"
    return f"{path.stem}.subtitled{ext}"


def _subtitle_streams(media: str) -> int:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "s", "-show_entries", "stream=index", "-of", "json", "--", media],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise StageFailure(f"ffprobe cannot read {Path(media).name}: {proc.stderr.strip()[-200:]}")
    return len(json.loads(proc.stdout or "{}").get("streams", []))


def command(media: str, tracks: list[dict], dest: Path, existing: int) -> list[str]:
    """The ffmpeg command: copy every stream of `media`, add `tracks` ({path, iso639_2, title}) after the
    `existing` subtitle streams."""
    mp4 = Path(media).suffix.lower() in MP4_FAMILY  # dest may be a temporary name: decide from the media
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", media]
    for track in tracks:
        cmd += ["-f", "srt", "-i", track["path"]]
    cmd += ["-map", "0:v?", "-map", "0:a?", "-map", "0:s?"]
    for i in range(len(tracks)):
        cmd += ["-map", f"{i + 1}:0"]
    cmd += ["-c", "copy"]
    for i, track in enumerate(tracks):
        n = existing + i
        cmd += [f"-c:s:{n}", "mov_text" if mp4 else "srt", f"-metadata:s:s:{n}", f"language={track['iso639_2']}",
                f"-metadata:s:s:{n}", f"title={track['title']}", f"-disposition:s:{n}", "default" if i == 0 and not existing else "0"]
    cmd += ["-f", "mp4" if mp4 else "matroska", str(dest)]
    return cmd


def run(request: dict, events: Events) -> None:
    def work(job: dict) -> dict:
        media = job["job"]["media"]["path"]
        dest = Path(job["outputs"]["media"])
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        existing = _subtitle_streams(media)
        try:
            proc = subprocess.run(command(media, job["tracks"], tmp, existing), capture_output=True, text=True)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
                raise StageFailure(f"ffmpeg could not mux the subtitles: {last}")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        tags = [t["iso639_2"] for t in job["tracks"]]
        events.log(job["id"], f"{dest.name}: original streams copied, {existing} subtitle tracks kept, added {', '.join(tags)}")
        return {"tracks": tags}

    for_each_job(request, events, work, workers=min(len(request["jobs"]), 4))


if __name__ == "__main__":
    main(run)
