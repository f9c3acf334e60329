"""Speakers benchmark: the diarize stage (diarization + naming from enrolled samples) against bare whisperX
`DiarizationPipeline` on the same audio and the same weights.

    venv/core/bin/python scripts/bench_speakers.py [--lines 12] [--jobs 3] [--reps 4] [--quick]

The weights are the real-weight community-1-shaped repo the tests build (tests/support/tiny_diarization.py:
whisperx's trained segmentation model + resemblyzer's trained speaker encoder from PyPI), placed in a hub-layout
cache; the audio is an espeak-ng conversation of a male and a female voice. Prints:
1. a whole stage job (read, enrolment from memory, diarize, name, label every word, write) ÷ a bare
   `DiarizationPipeline` call, in one process with the same loaded weights, over --reps paired rounds after a
   warm-up (alternating which goes first); the median ratio (target <= 1.1) by wall-clock and by the process's CPU
   seconds (steadier where other work shares the CPUs), and both in seconds per audio minute;
2. model loads in one stage run of --jobs jobs, run as the runner runs it (target 1), with its load time and the
   snapshot verification inside it;
3. enrolment seconds per sample (decode + embed): in a fresh stage's first job, warm, and from the JSON cache.
Needs venv/whisperx (./venv-setup whisperx) and, once, pip access to PyPI for resemblyzer's weights.
--quick (for CI): 2 lines, 2 jobs, 2 rounds, one sample per voice: proves the benchmark runs, not the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from offline_speech.settings import backend_python  # noqa: E402 - after the sys.path setup
from offline_speech.util import write_json  # noqa: E402 - after the sys.path setup
from support.tiny_diarization import (  # noqa: E402 - after the sys.path setup
    CONVERSATION,
    ENROL,
    FEMALE,
    MALE,
    build_repo,
    conversation,
    place_in_cache,
    run_stage_process,
    speak,
    transcript,
    wav_seconds,
    write_wav,
)

PAIRED = """
import json, sys, time
from pathlib import Path
from offline_speech.stages.base import Events
from offline_speech.stages.diarize import Diarizer
from whisperx.audio import load_audio
from whisperx.diarize import DiarizationPipeline
request, rounds = json.load(open(sys.argv[1])), int(sys.argv[2])
spec, jobs = request["models"]["diarization"], request["jobs"]
stage = Diarizer(spec, Events(sys.stderr))
t0 = time.monotonic(); bare = DiarizationPipeline(model_name=spec["path"], device="cpu"); load = time.monotonic() - t0
audio = load_audio(jobs[0]["inputs"]["audio"])
bare(audio, return_embeddings=True); stage(jobs[0])  # warm-up; the stage's first job embeds the enrolled samples
pairs = []
for i in range(rounds):  # paired rounds, alternating which goes first, so load on the machine hits both alike
    times = {}
    for name in (("bare", "stage") if i % 2 == 0 else ("stage", "bare")):
        t0, c0 = time.monotonic(), time.process_time()
        bare(audio, return_embeddings=True) if name == "bare" else stage(jobs[1 + i % (len(jobs) - 1)])
        times[name], times[name + "_cpu"] = time.monotonic() - t0, time.process_time() - c0
    pairs.append(times)
stage.enrolment.embeddings.clear()  # enrolment again, warm: decode + embed every sample, no cache file
_, warm = stage.enrolment.people(Path(jobs[0]["diarize"]["speakers_dir"]), None)
print(json.dumps({"bare_load": load, "pairs": pairs, "enrolment": warm}))
"""


def paired_rounds(cache: Path, request: Path, rounds: int) -> dict:
    """Stage jobs and bare whisperX DiarizationPipeline calls on the same audio, weights and process."""
    proc = run_stage_process([str(backend_python("whisperx")), "-c", PAIRED, str(request), str(rounds)], cache)
    if proc.returncode != 0:
        raise SystemExit(f"paired rounds failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def write_request(path: Path, spec: dict, jobs: list[dict]) -> Path:
    write_json(path, {"schema": 1, "stage": "diarize", "options": {}, "models": {"diarization": spec}, "jobs": jobs})
    return path


def stage_run(cache: Path, request: Path) -> list[dict]:
    """Run the stage as the runner does; its events."""
    proc = run_stage_process(
        [str(backend_python("whisperx")), "-m", "offline_speech.stages.diarize", str(request)], cache
    )
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    failed = [e for e in events if e["event"] == "job_failed"]
    if proc.returncode != 0 or failed:
        raise SystemExit(f"diarize stage failed: {failed or proc.stderr[-2000:]}")
    return events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=12, help="conversation lines (turns)")
    parser.add_argument("--jobs", type=int, default=3, help="jobs in one stage run")
    parser.add_argument("--reps", type=int, default=4, help="paired rounds (bare call + stage job) after a warm-up")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.lines, args.jobs, args.reps = 2, 2, 2
    samples_per_voice = 1 if args.quick else 2
    with tempfile.TemporaryDirectory(prefix="bench-speakers-") as tmp:
        work = Path(tmp)
        spec = place_in_cache(build_repo(work / "built", real=True), work / "cache")
        cache = work / "cache"
        lines = [CONVERSATION[i % len(CONVERSATION)] for i in range(args.lines)]
        audio = work / "meeting.wav"
        spans = conversation(audio, lines)
        minutes = wav_seconds(audio) / 60
        speakers = work / "speakers"
        speakers.mkdir()
        for voice, person in ((MALE, "ravi"), (FEMALE, "anna")):
            for i, sentence in enumerate(ENROL[voice][:samples_per_voice], 1):
                write_wav(speakers / f"{person}_{i}.wav", speak(voice, sentence))

        def jobs(tag: str, count: int) -> list[dict]:
            out = []
            for i in range(count):
                d = work / f"{tag}{i}"
                d.mkdir()
                transcript(d / "aligned.json", spans, 0.0, wav_seconds(audio))
                out.append(
                    {
                        "id": f"{tag}{i}",
                        "dir": str(d),
                        "job": {},
                        "inputs": {"audio": str(audio), "transcript": str(d / "aligned.json")},
                        "outputs": {"transcript": str(d / "diarized.json"), "speakers": str(d / "speakers.json")},
                        "diarize": {
                            "speakers_dir": str(speakers),
                            "speaker_threshold": 0.8,
                            "enrolment_cache": str(work / "enrolment.json"),
                        },
                    }
                )
            return out

        events = stage_run(cache, write_request(work / "a.json", spec, jobs("a", args.jobs)))
        loaded = [e for e in events if e["event"] == "model_loaded"]
        report = json.loads(Path(work / "a0" / "speakers.json").read_text())
        enrol, named = report["enrolment"], sorted(s["name"] for s in report["speakers"])
        stage_run(cache, write_request(work / "b.json", spec, jobs("b", 1)))
        cached = json.loads(Path(work / "b0" / "speakers.json").read_text())["enrolment"]
        paired = paired_rounds(cache, write_request(work / "c.json", spec, jobs("c", 2)), args.reps)

    bare_per_min = statistics.median(p["bare"] for p in paired["pairs"]) / minutes
    stage_per_min = statistics.median(p["stage"] for p in paired["pairs"]) / minutes
    ratio = statistics.median(p["stage"] / p["bare"] for p in paired["pairs"])
    cpu_ratio = statistics.median(p["stage_cpu"] / p["bare_cpu"] for p in paired["pairs"])
    print(
        f"audio: {minutes * 60:.1f} s, {args.lines} turns, 2 voices, {2 * samples_per_voice} enrolled samples; "
        f"named {named}" + (" (--quick: proves the benchmark runs, not the figures)" if args.quick else "")
    )
    print(
        f"1. diarize + naming (a whole stage job): {stage_per_min:.2f} s per audio minute; "
        f"bare whisperX DiarizationPipeline: {bare_per_min:.2f} s per audio minute; "
        f"median paired ratio {ratio:.2f} over {args.reps} rounds (target <= 1.1); "
        f"by CPU seconds (steadier on a shared machine) {cpu_ratio:.2f}"
    )
    print(
        f"2. model loads in one stage run of {args.jobs} jobs: {events[-1]['model_loads']} (target 1); load "
        f"{loaded[0]['seconds']:.2f} s incl. snapshot verification {loaded[0]['verify_seconds']:.3f} s; "
        f"bare DiarizationPipeline load {paired['bare_load']:.2f} s"
    )
    warm = paired["enrolment"]
    print(
        f"3. enrolment (decode + embed) per sample: {enrol['seconds'] / enrol['samples']:.3f} s "
        f"in a fresh stage's first job ({enrol['embedded']} embedded, incl. first-call warm-up), "
        f"{warm['seconds'] / warm['samples']:.3f} s warm ({warm['embedded']} embedded); "
        f"from the JSON cache in a new run: {cached['seconds'] / cached['samples']:.3f} s "
        f"({cached['embedded']} embedded)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
