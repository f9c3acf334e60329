"""Running a batch on a Slurm cluster: the unfinished jobs sharded over a job array, each task one run-pipeline.

`run-pipeline.sh -b BATCH --slurm` writes `out/batches/<id>.slurm/` (the sbatch script, one shard file per array
task, the tasks' logs, `submitted.json` with every submission), submits the script with `sbatch` and prints the Slurm
job id. Each task runs `run-pipeline.sh -j ...` on its shard: the same runner as a local run (offline, one model load
per stage for its jobs, manifests that resume), against the project's cache on a shared file system or one the node
imported from a bundle. Shards are balanced by audio duration (longest first onto the least loaded task).
A cancelled or timed-out task leaves its jobs resumable; submitting again sends only what is unfinished and not
already queued or running in an earlier submission. Slurm is the scheduler: nothing here schedules.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadInput, WorkFailed
from ..util import utc_now, write_json

ACTIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED")


@dataclass(frozen=True)
class SlurmOptions:
    """What `--slurm` passes to sbatch (None: the cluster's default)."""

    tasks: int | None = None  # array tasks (default: one per job, at most 100)
    array_limit: int | None = None  # at most this many tasks at once (%K)
    partition: str | None = None
    time: str | None = None
    cpus_per_task: int | None = None
    gpus_per_task: int | None = None
    mem: str | None = None
    account: str | None = None
    sbatch_args: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Submission:
    folder: Path
    script: Path
    text: str  # the script
    shards: list[list[str]]
    slurm_job: str | None = None  # None: --dry-run


def shard(jobs: list[tuple[str, float]], tasks: int) -> list[list[str]]:
    """Job ids split into at most `tasks` shards of about equal audio duration (longest first onto the least loaded
    shard); each shard keeps the batch's order; no empty shard."""
    tasks = max(1, min(tasks, len(jobs)))
    loads = [0.0] * tasks
    members: list[list[str]] = [[] for _ in range(tasks)]
    for job_id, seconds in sorted(jobs, key=lambda j: -j[1]):
        k = loads.index(min(loads))
        loads[k] += seconds
        members[k].append(job_id)
    order = {job_id: i for i, (job_id, _) in enumerate(jobs)}
    return [sorted(m, key=order.__getitem__) for m in members if m]


def slurm_folder(out_dir: Path, batch_id: str) -> Path:
    return out_dir / "batches" / f"{batch_id}.slurm"


def script_text(folder: Path, batch_id: str, tasks: int, options: SlurmOptions, command: list[str]) -> str:
    """The sbatch script: the directives, then the task's shard as -j arguments to run-pipeline."""
    array = f"0-{tasks - 1}" + (f"%{options.array_limit}" if options.array_limit else "")
    directives = [
        f"--job-name=offline-speech-{batch_id}",
        f"--array={array}",
        f"--output={folder}/logs/task-%A_%a.out",
    ]
    for flag, value in (
        ("--partition", options.partition),
        ("--time", options.time),
        ("--cpus-per-task", options.cpus_per_task),
        ("--gpus-per-task", options.gpus_per_task),
        ("--mem", options.mem),
        ("--account", options.account),
    ):
        if value is not None:
            directives.append(f"{flag}={value}")
    directives += options.sbatch_args
    lines = ["#!/bin/bash", *(f"#SBATCH {d}" for d in directives), ""]
    lines += [
        "# One array task: the jobs of its shard, offline, through the same runner as a local run.",
        "set -euo pipefail",
        "export HF_HUB_OFFLINE=1",
        f'shard={shlex.quote(str(folder))}/shards/"$SLURM_ARRAY_TASK_ID".txt',
        "args=()",
        'while read -r id; do args+=(-j "$id"); done < "$shard"',
        f'exec {shlex.join(command)} "${{args[@]}}"',
        "",
    ]
    return "\n".join(lines)


def queued_jobs(folder: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """job id -> "<slurm job>_<task> <STATE>" for the jobs of earlier submissions whose task is still queued or
    running (per squeue; nothing when squeue is missing or the controller forgot the job)."""
    record = folder / "submitted.json"
    if not record.is_file() or shutil.which("squeue") is None:
        return {}
    try:
        submissions = json.loads(record.read_text(encoding="utf-8"))["submissions"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    found: dict[str, str] = {}
    for sub in submissions:
        states = _task_states(str(sub.get("slurm_job")), env)
        for k, ids in enumerate(sub.get("shards", [])):
            state = states.get(str(k))
            if state in ACTIVE:
                found.update(dict.fromkeys(ids, f"{sub['slurm_job']}_{k} {state}"))
    return found


def _task_states(slurm_job: str, env: dict[str, str] | None) -> dict[str, str]:
    proc = subprocess.run(
        ["squeue", "-h", "-r", "-j", slurm_job, "-o", "%K %T"],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        return {}
    return dict(line.split(None, 1) for line in proc.stdout.splitlines() if " " in line)


def submit(
    out_dir: Path,
    batch_id: str,
    jobs: list[tuple[str, float]],
    options: SlurmOptions,
    command: list[str],
    dry_run: bool = False,
) -> Submission:
    """Write the shards and the script for `jobs` (id, audio seconds), then (unless dry_run) sbatch it."""
    if not jobs:
        raise BadInput(f"batch {batch_id}: nothing to submit (every job is done, or queued or running in Slurm)")
    sbatch = shutil.which("sbatch")
    if sbatch is None and not dry_run:
        raise BadInput("--slurm needs Slurm's sbatch on PATH (run on a login node of the cluster), or --dry-run")
    if options.tasks is not None and options.tasks < 1 or options.array_limit is not None and options.array_limit < 1:
        raise BadInput("--tasks and --array-limit are at least 1")
    shards = shard(jobs, options.tasks or min(len(jobs), 100))
    folder = slurm_folder(out_dir, batch_id)
    script = folder / "submit.sbatch"
    text = script_text(folder, batch_id, len(shards), options, command)
    if dry_run:
        return Submission(folder, script, text, shards)
    for sub in ("shards", "logs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for k, ids in enumerate(shards):
        (folder / "shards" / f"{k}.txt").write_text("".join(f"{i}\n" for i in ids))
    for stale in (folder / "shards").glob("*.txt"):
        if not stale.stem.isdigit() or int(stale.stem) >= len(shards):
            stale.unlink()
    script.write_text(text)
    proc = subprocess.run([sbatch, "--parsable", str(script)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise WorkFailed(f"sbatch refused {script}: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    slurm_job = proc.stdout.strip().split(";")[0]
    _record(folder, {"slurm_job": slurm_job, "submitted": utc_now(), "shards": shards, "script": str(script)})
    return Submission(folder, script, text, shards, slurm_job)


def _record(folder: Path, submission: dict) -> None:
    record = folder / "submitted.json"
    try:
        previous = json.loads(record.read_text(encoding="utf-8"))["submissions"]
    except (OSError, ValueError, KeyError, TypeError):
        previous = []
    write_json(record, {"kind": "offline-speech/slurm-submissions", "submissions": [*previous, submission]})


def node_command(project: Path, out_dir: Path, cache: Path) -> list[str]:
    """What each array task runs before its shard's -j arguments."""
    return [str(project / "run-pipeline.sh"), "--out-dir", str(out_dir), "--cache-dir", str(cache)]


def readable_by_nodes(cache: Path) -> str | None:
    """Why the nodes could not read the cache (a relative or missing folder), None when they can as far as this
    machine can tell (the cluster's shared file system is the site's business)."""
    if not cache.is_dir():
        return f"the cache {cache} does not exist: ./cache-models.sh --batch ID first"
    if not os.access(cache, os.R_OK | os.X_OK):
        return f"the cache {cache} cannot be read: fix its permissions"
    return None
