"""Where each job stands, from its files only: done, running (another run-pipeline holds its run lock), failed,
or waiting (never run, or stopped: the next run resumes it). run-pipeline --status and -b (unfinished jobs) read it.
"""

from __future__ import annotations

import contextlib
import fcntl
from dataclasses import dataclass
from pathlib import Path

from .manifest import RUN_LOCK, JobRun, PreflightError, load_job

STATES = ("done", "running", "failed", "waiting")
UNFINISHED = ("failed", "waiting")  # what a run still has to do (running ones belong to another run-pipeline)


@dataclass(frozen=True)
class JobStatus:
    id: str
    status: str  # one of STATES
    detail: str = ""  # the failed stage's error, "interrupted", or why the job cannot be read
    media: str = ""
    dir: str = ""


def being_run(folder: Path) -> bool:
    """Whether a run-pipeline holds the job's run lock now (a shared lock cannot be had beside its exclusive one)."""
    try:
        f = open(folder / RUN_LOCK, "rb")
    except OSError:
        return False
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        with contextlib.suppress(OSError):
            fcntl.flock(f, fcntl.LOCK_UN)
    return False


def status_of(run: JobRun) -> JobStatus:
    manifest = run.manifest
    state = manifest.get("status")
    where = {"media": Path(run.job.media.path).name, "dir": str(run.dir)}
    if being_run(run.dir):
        return JobStatus(run.id, "running", **where)
    if state == "done":
        return JobStatus(run.id, "done", **where)
    if state == "failed":
        return JobStatus(run.id, "failed", str(manifest.get("error") or ""), **where)
    stopped = "interrupted" if state in ("running", "interrupted") else ""  # a run ended by a signal or a crash
    return JobStatus(run.id, "waiting", stopped, **where)


def statuses(out_dir: Path, job_ids: list[str]) -> list[JobStatus]:
    """Each job's status; a job that cannot be read is failed, with the reason."""
    found = []
    for job_id in dict.fromkeys(job_ids):
        try:
            found.append(status_of(load_job(out_dir, job_id)))
        except PreflightError as exc:
            found.append(JobStatus(job_id, "failed", "; ".join(exc.problems)))
    return found


def unfinished(out_dir: Path, job_ids: list[str]) -> list[str]:
    """The jobs a run still has to do: failed or waiting (not done, not being run by another run-pipeline)."""
    return [s.id for s in statuses(out_dir, job_ids) if s.status in UNFINISHED]
