"""A job during a run: finding it (job id or folder), its manifest, its run lock and the space it needs.

out/<id>/manifest.json records every stage's status, times, input digest, outputs (with sha256), model commits
and error. A manifest that is unreadable or not of this schema is set aside: every stage runs again, which is
always safe (a stage rewrites its outputs), never a traceback.

One run at a time per job: run-pipeline holds an flock on out/<id>/.run.lock while it runs (released by the
kernel when the process dies, kill -9 included); a second run of the same job refuses in one line. A job folder
that cannot be written (read-only, no space left) is one line naming it and, for a full disk, the space needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput, OfflineSpeechError, StateError
from ..schema import JOB_ID_RE, Job, SchemaError, read_job
from ..util import NO_SPACE, utc_now, write_json, write_problem

MANIFEST_KIND = "offline-speech/manifest"
MANIFEST_SCHEMA = 1
WORK = "work"  # intermediate files inside the job folder
RUN_LOCK = ".run.lock"
WAV_BYTES_PER_SECOND = 16000 * 2  # the clip as 16 kHz mono 16-bit WAV (demux)
JOB_MARGIN = 1 << 20  # transcripts, subtitles, logs and the manifest of one job


class PreflightError(BadInput):
    """The jobs cannot start; `problems` lists each one with its fix. Exit code 2."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class JobRun:
    """One job during a run: its job.json, folder, manifest and the sha256 of its media (set by preflight)."""

    job: Job
    dir: Path
    manifest: dict
    media_sha256: str = ""
    failed: bool = False

    @property
    def id(self) -> str:
        return self.job.id

    def path(self, name: str) -> Path:
        return self.dir / WORK / name

    def log(self, stage: str) -> Path:
        return self.dir / "logs" / f"{stage}.log"

    def save(self) -> None:
        """Write the manifest atomically; on a full disk, where a new file cannot be made, rewrite it in place
        (its own blocks are freed first). A manifest torn by a crash then is read as invalid: every stage runs
        again, which is always safe."""
        self.manifest["updated"] = utc_now()
        path = self.dir / "manifest.json"
        try:
            write_json(path, self.manifest)
        except OSError as exc:
            if exc.errno not in NO_SPACE or not path.is_file():
                raise
            with open(path, "r+b") as f:
                f.truncate(0)
                f.write((json.dumps(self.manifest, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def load_job(out_dir: Path, ref: str, flag: str = "-j", folders: bool = True) -> JobRun:
    """The prepared job `ref` names: a job id under `out_dir`, or (unless `folders` is off) a job folder, which has a
    / (run-pipeline -j and cache-models --job take both).
    PreflightError, naming `flag`, for anything that is not a prepared job."""
    if folders and "/" in ref:
        folder, by_id = Path(ref).expanduser(), False
    elif JOB_ID_RE.match(ref) and ".." not in ref:
        folder, by_id = out_dir / ref, True
    else:
        kind = "or a job folder path" if folders else "ids contain only A-Z a-z 0-9 . _ -; no / or .."
        raise PreflightError([f"{flag} {ref!r}: not a job id ({kind})"])
    if not (folder / "job.json").is_file():
        if by_id:
            raise PreflightError(
                [
                    f"{flag} {ref}: unknown job id (no {folder}/job.json): ./prepare-job.sh --media FILE "
                    "prints one; a job prepared with --out-dir DIR needs --out-dir DIR here too (or give "
                    "its folder, DIR/ID)"
                ]
            )
        raise PreflightError([f"{flag} {ref}: no prepared job there ({folder / 'job.json'} does not exist)"])
    try:
        job = read_job(folder / "job.json")
    except SchemaError as exc:
        raise PreflightError([f"{flag} {ref}: job.json is corrupt ({exc}): prepare the job again"]) from None
    if by_id and job.id != ref:
        raise PreflightError([f"{flag} {ref}: job.json belongs to job {job.id}: prepare the job again"])
    return JobRun(job, folder, read_manifest(folder / "manifest.json", job.id))


def read_manifest(path: Path, job_id: str) -> dict:
    """The job's manifest, or a new one when there is none or it is not valid (then every stage runs)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if _valid(manifest):
            return manifest
    except (OSError, ValueError):
        pass
    return {"kind": MANIFEST_KIND, "schema": MANIFEST_SCHEMA, "job": job_id, "status": "new", "stages": {}}


def _valid(manifest: object) -> bool:
    """Of this kind and schema, with stage records whose outputs are {path, sha256}: what the runner relies on."""
    if (
        not isinstance(manifest, dict)
        or manifest.get("kind") != MANIFEST_KIND
        or manifest.get("schema") != MANIFEST_SCHEMA
    ):
        return False
    stages = manifest.get("stages")
    if not isinstance(stages, dict) or not isinstance(manifest.get("media", {}), dict):
        return False
    for record in stages.values():
        if not isinstance(record, dict) or not isinstance(record.get("outputs", {}), dict):
            return False
        for out in record.get("outputs", {}).values():
            if not (isinstance(out, dict) and isinstance(out.get("path"), str) and isinstance(out.get("sha256"), str)):
                return False
    return True


def disk_error(exc: OSError, where: Path, needed: int) -> OfflineSpeechError | None:
    """One line for an out dir or job folder that cannot be written (util.write_problem), None for another error."""
    return write_problem(exc, where, needed, "use another --out-dir")


def space_needed(run: JobRun, restart: bool = False) -> int:
    """About what a run of the job writes in its folder: the clip as WAV, documents and logs, and for subtitle
    jobs a copy of the media with the tracks; nothing for a finished job that runs nothing again."""
    if run.manifest.get("status") == "done" and not restart:
        return 0
    media = run.job.media.size if run.job.workflow == "subtitle" else 0
    return int(run.job.clip.duration * WAV_BYTES_PER_SECOND) + media + JOB_MARGIN


@contextlib.contextmanager
def run_lock(run: JobRun) -> Iterator[None]:
    """Hold the job's run lock (an flock: kill -9 releases it), or StateError when another run holds it."""
    path = run.dir / RUN_LOCK
    try:
        f = open(path, "a+")
    except OSError as exc:
        raise disk_error(exc, run.dir, JOB_MARGIN) or exc from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise StateError(
                f"job {run.id} is being run by another run-pipeline (pid {holder}): wait for it to end "
                "(or stop it), then run again"
            ) from None
        with contextlib.suppress(OSError):  # only for the message above: a full disk must not stop the run
            f.truncate(0)
            f.write(str(os.getpid()))
            f.flush()
        yield
