"""A batch through a real Slurm (Debian's slurmctld, slurmd and munge on this machine, tests/support/slurm.py):
the sbatch script and its shards, a submitted array running offline on the node with one model load per stage per
task, --status at every step, a task cancelled with scancel and the batch resubmitted, resuming where it stopped."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from offline_speech.pipeline.slurm import shard
from support import slurm
from support.shell import shim
from test_batches import batch_record, cut, prepare


@pytest.fixture(scope="module")
def cluster():
    missing = slurm.available()
    assert missing is None, missing  # scripts/test.sh installs slurm-wlm and munge
    with slurm.cluster() as c:
        yield c


def run_pipeline(out: Path, cache: Path, *args: str, code: int = 0, env: dict | None = None):
    return shim("run-pipeline.sh", *args, "--out-dir", str(out), cache=cache, code=code, **(env or {}))


def status(out: Path, cache: Path, batch_id: str, env: dict) -> dict:
    return json.loads(run_pipeline(out, cache, "-b", batch_id, "--status", "--json", env=env).stdout)


def test_shards_are_balanced_by_duration_and_keep_the_batch_order():
    jobs = [("a", 60.0), ("b", 10.0), ("c", 50.0), ("d", 20.0), ("e", 30.0)]
    shards = shard(jobs, 2)
    assert sorted(sum(dict(jobs)[j] for j in s) for s in shards) == [80.0, 90.0]
    assert all(s == sorted(s) for s in shards)
    assert shard(jobs, 10) == [["a"], ["c"], ["e"], ["d"], ["b"]]  # never an empty task
    assert shard(jobs[:1], 3) == [["a"]]


def test_a_batch_runs_on_slurm_offline_and_a_cancelled_task_resumes(provisioned, cluster, tmp_path):
    out = tmp_path / "out"
    folder = tmp_path / "media"
    for i, start in enumerate((0.5, 25.0, 50.0)):
        cut(folder / f"part{i}.opus", start, seconds=12.0)
    batch_id = prepare(out, provisioned, "--media", str(folder)).stdout.split()[-1]
    jobs = batch_record(out, batch_id)["jobs"]
    env = dict(cluster.env)

    dry = run_pipeline(
        out,
        provisioned,
        "-b",
        batch_id,
        "--slurm",
        "--dry-run",
        "--tasks",
        "2",
        "--time",
        "00:10:00",
        "--sbatch-arg=--comment=test",
        env=env,
    ).stdout
    assert "#SBATCH --array=0-1\n" in dry and "#SBATCH --time=00:10:00\n" in dry and "#SBATCH --comment=test" in dry
    assert "export HF_HUB_OFFLINE=1" in dry and sum(line.startswith("# task ") for line in dry.splitlines()) == 2
    assert not (out / "batches" / f"{batch_id}.slurm").exists()  # a dry run writes nothing

    # one task for the three jobs: cancelled while its asr stage runs, after demux finished for all three
    first = run_pipeline(out, provisioned, "-b", batch_id, "--slurm", "--tasks", "1", env=env)
    slurm_job = first.stdout.split()[-1]
    assert slurm_job.isdigit(), first.stdout
    deadline = time.monotonic() + 300
    while not any(_stage(out / j, "asr") == "running" for j in jobs):
        assert time.monotonic() < deadline and cluster.squeue(slurm_job), (out / "batches").rglob("*.out")
        time.sleep(0.1)
    during = status(out, provisioned, batch_id, env)
    assert during["counts"]["running"] == 3, during
    subprocess.run(["scancel", slurm_job], check=True, env={"SLURM_CONF": env["SLURM_CONF"], "PATH": "/usr/bin"})
    cluster.wait(slurm_job, 60)
    after = status(out, provisioned, batch_id, env)
    assert [(j["status"], j["detail"]) for j in after["jobs"]] == [("waiting", "interrupted")] * 3, after
    assert all(_stage(out / j, "demux") == "done" for j in jobs)

    # submitted again: only the unfinished jobs (all three here), two tasks, each resuming after demux
    again = run_pipeline(out, provisioned, "-b", batch_id, "--slurm", "--tasks", "2", env=env)
    second = again.stdout.split()[-1]
    queued = status(out, provisioned, batch_id, env)
    assert all(j["status"] in ("running", "done") or j["detail"].startswith(f"slurm {second}_") for j in queued["jobs"])
    cluster.wait(second, 600)
    done = status(out, provisioned, batch_id, env)
    assert done["counts"] == {"done": 3, "running": 0, "failed": 0, "waiting": 0}, done
    for job_id, name in zip(jobs, ("part0", "part1", "part2")):
        assert (out / job_id / f"{name}.en.srt").read_text().strip()
    logs = sorted((out / "batches" / f"{batch_id}.slurm" / "logs").glob(f"task-{second}_*.out"))
    assert len(logs) == 2
    text = "".join(log.read_text() for log in logs)
    assert text.count("demux up to date, skipped") == 3, text
    shards = json.loads((out / "batches" / f"{batch_id}.slurm" / "submitted.json").read_text())["submissions"][-1]
    for k, ids in enumerate(shards["shards"]):  # one asr model load per task, for every job of its shard
        asr_log = (out / ids[0] / "logs" / "asr.log").read_text()
        assert f"model loads in this process: 1; jobs in this process: {len(ids)}" in asr_log, (k, asr_log)

    nothing = run_pipeline(out, provisioned, "-b", batch_id, "--slurm", code=2, env=env)
    assert nothing.stderr.strip().splitlines()[-1].startswith(f"error: batch {batch_id}: nothing to submit")


def test_slurm_refusals_are_one_line(provisioned, tmp_path):
    out = tmp_path / "out"
    folder = tmp_path / "media"
    cut(folder / "a.opus", 1.0)
    cut(folder / "b.opus", 5.0)
    batch_id = prepare(out, provisioned, "--media", str(folder)).stdout.split()[-1]
    bare = tmp_path / "bin"  # a PATH with what the shim needs and no Slurm
    bare.mkdir()
    for tool in ("bash", "env", "readlink"):
        (bare / tool).symlink_to(f"/usr/bin/{tool}")
    no_sbatch = run_pipeline(out, provisioned, "-b", batch_id, "--slurm", code=2, env={"PATH": str(bare)})
    assert (
        no_sbatch.stderr.startswith("error: --slurm needs Slurm's sbatch") and len(no_sbatch.stderr.splitlines()) == 1
    )
    alone = run_pipeline(out, provisioned, "-b", batch_id, "--tasks", "2", code=2)
    assert "go with --slurm" in alone.stderr
    missing = run_pipeline(out, tmp_path / "nowhere", "-b", batch_id, "--slurm", "--dry-run", code=2)
    assert "does not exist" in missing.stderr and len(missing.stderr.splitlines()) == 1


def _stage(folder: Path, stage: str) -> str | None:
    try:
        return json.loads((folder / "manifest.json").read_text())["stages"][stage]["status"]
    except (OSError, ValueError, KeyError):
        return None
