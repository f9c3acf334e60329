#!/usr/bin/env python3
"""Demux through PyAV against the ffmpeg CLI, per container: time to make the job's 16 kHz mono WAV, and timing.

    venv/core/bin/python scripts/bench_media.py            # 10 minutes of speech per container, median of 3 rounds
    venv/core/bin/python scripts/bench_media.py --quick    # 30 s, one round: a smoke test

For opus, AAC/MP4, Matroska (AAC, with a picture), WAV and MP3 made by the ffmpeg CLI from the committed speech
clip: the whole file and a clip from its middle, decoded by the demux stage in this process and by the ffmpeg
command the stage ran before PyAV (`-ss S -t D -i F -ac 1 -ar 16000`, a process each, as the stage ran it); the
ratio is ours / ffmpeg. The offsets come from clicks at known instants in a second file per container: where the
click is in our decode against `ffmpeg -ac 1 -ar 16000` of the same file, and against its true sample.
Needs the ffmpeg CLI (the reference and the encoder of the media).
"""

from __future__ import annotations

import argparse
import array
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]  # the package and tests/support (see its __init__)

from offline_speech.stages import demux  # noqa: E402 - after the path setup
from support.media import CONTAINERS  # noqa: E402 - after the sys.path setup

CLIP = ROOT / "samples" / "speech-en.opus"
RATE = demux.SAMPLE_RATE
CLICKS = (1.0, 2.345, 3.5)  # seconds


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def make(folder: Path, ext: str, seconds: float) -> Path:
    dest = folder / f"speech-{seconds:g}s.{ext}"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=navy:size=64x36:rate=5",
        "-stream_loop",
        "-1",
        "-i",
        str(CLIP),
        "-t",
        str(seconds),
        *CONTAINERS[ext],
        str(dest),
    )
    return dest


def clicks(folder: Path, ext: str) -> Path:
    """Clicks at CLICKS in 5 s of 44.1 kHz stereo silence, in the container."""
    wav = folder / "clicks.wav"
    samples = array.array("h", bytes(4 * 5 * 44100))
    for t in CLICKS:
        samples[2 * round(t * 44100)] = samples[2 * round(t * 44100) + 1] = 30000
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(samples.tobytes())
    if ext == "wav":
        return wav
    dest = folder / f"clicks.{ext}"
    ffmpeg(
        "-f", "lavfi", "-i", "color=c=navy:size=64x36:rate=5", "-i", str(wav), "-t", "5", *CONTAINERS[ext], str(dest)
    )
    return dest


def peaks(pcm: array.array) -> list[int]:
    """The loudest sample around each click."""
    found = []
    for t in CLICKS:
        lo = round((t - 0.2) * RATE)
        found.append(max(range(lo, lo + round(0.4 * RATE)), key=lambda i: abs(pcm[i])))
    return found


def click_offsets(folder: Path, ext: str) -> str:
    """Where our decode puts the clicks against `ffmpeg -ac 1 -ar 16000` and against their true samples."""
    click = clicks(folder, ext)
    mine = peaks(array.array("h", b"".join(demux.decode(str(click), 0.0, 5.0))))
    proc = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(click),
            "-map",
            "0:a:0",
            "-ac",
            "1",
            "-ar",
            str(RATE),
            "-f",
            "s16le",
            "-",
        ],
        capture_output=True,
        check=True,
    )
    reference = peaks(array.array("h", proc.stdout))
    versus = sorted({m - r for m, r in zip(mine, reference)})
    absolute = sorted({m - round(t * RATE) for m, t in zip(mine, CLICKS)})
    return f"{','.join(map(str, versus)):>16} {','.join(map(str, absolute)):>12}"


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def ours(media: Path, start: float, end: float, dest: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of the demux stage's decode, in this process (FFmpeg's threads included)."""
    wall, used = time.perf_counter(), cpu(resource.RUSAGE_SELF)
    demux.extract(str(media), start, end, dest)
    return time.perf_counter() - wall, cpu(resource.RUSAGE_SELF) - used


def theirs(media: Path, start: float, end: float, dest: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of the ffmpeg command the demux stage ran before PyAV."""
    wall, used = time.perf_counter(), cpu(resource.RUSAGE_CHILDREN)
    ffmpeg(
        "-ss",
        f"{start:.3f}",
        "-t",
        f"{end - start:.3f}",
        "-i",
        str(media),
        "-map",
        "0:a:0",
        "-vn",
        "-sn",
        "-dn",
        "-ac",
        "1",
        "-ar",
        str(RATE),
        "-c:a",
        "pcm_s16le",
        "-f",
        "wav",
        str(dest),
    )
    return time.perf_counter() - wall, cpu(resource.RUSAGE_CHILDREN) - used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 s per container, one round (a smoke test)")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of each file (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, ours and ffmpeg alternating (median; default 3)")
    args = parser.parse_args()
    if not shutil.which("ffmpeg"):
        print("bench_media: the ffmpeg CLI is the reference here: install it", file=sys.stderr)
        return 2
    seconds, rounds = (30.0, 1) if args.quick else (args.minutes * 60, args.rounds)
    started = time.perf_counter()
    import av  # noqa: F401 - paid once per stage process; shown apart from the decode times

    print(f"import av: {time.perf_counter() - started:.2f} s (once per demux process)")
    print(
        f"{seconds:g} s per file, median of {rounds}; clip = its middle third; CPU seconds (wall in brackets: the\n"
        f"machine may be shared); ratio = ours / ffmpeg CPU; offsets in samples at 16 kHz"
    )
    print(
        f"{'':5} {'whole: ours':>17} {'ffmpeg':>13} {'ratio':>5}  {'clip: ours':>15} {'ffmpeg':>13} {'ratio':>5}  "
        f"{'offset vs ffmpeg':>16} {'vs true time':>12}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for ext in CONTAINERS:
            media = make(folder, ext, seconds)
            cells = []
            for start, end in ((0.0, seconds), (seconds / 3, 2 * seconds / 3)):
                runs = {"ours": [], "ffmpeg": []}
                for _ in range(rounds):  # alternating, so that a busy moment weighs on both
                    runs["ours"].append(ours(media, start, end, folder / "ours.wav"))
                    runs["ffmpeg"].append(theirs(media, start, end, folder / "theirs.wav"))
                (a_wall, a_cpu), (b_wall, b_cpu) = ([statistics.median(x) for x in zip(*runs[k])] for k in runs)
                cells += [f"{a_cpu:.2f}s ({a_wall:.2f}s)", f"{b_cpu:.2f}s ({b_wall:.2f}s)", f"{a_cpu / b_cpu:.2f}"]
            print(
                f"{ext:5} {cells[0]:>17} {cells[1]:>13} {cells[2]:>5}  {cells[3]:>15} {cells[4]:>13} {cells[5]:>5}  "
                f"{click_offsets(folder, ext)}"
            )
    print(
        "Matroska from ffmpeg before 6.0 keeps AAC's 1024 priming samples on its timeline (no CodecDelay; the picture\n"
        "is moved by as much, 23 ms at 44.1 kHz): players, the ffmpeg CLI and the demux stage all place the "
        "click there."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
