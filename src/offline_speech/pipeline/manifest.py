"""A job during a run: finding it (job id or folder), its manifest, and the preflight that says what would stop it.

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
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .. import cache
from ..catalog import Catalog
from ..errors import BadInput, OfflineSpeechError, StateError
from ..schema import JOB_ID_RE, Job, SchemaError, read_job
from ..settings import backend_python
from ..util import NO_SPACE, human_bytes, sha256_file, utc_now, write_json, write_problem
from .registry import Context, stages_of

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
            raise PreflightError([f"{flag} {ref}: unknown job id (no {folder}/job.json): ./prepare-job.sh --media FILE "
                                  "prints one; a job prepared with --out-dir DIR needs --out-dir DIR here too (or give "
                                  "its folder, DIR/ID)"])
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
    if not isinstance(manifest, dict) or manifest.get("kind") != MANIFEST_KIND or manifest.get("schema") != MANIFEST_SCHEMA:
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
            raise StateError(f"job {run.id} is being run by another run-pipeline (pid {holder}): wait for it to end "
                             "(or stop it), then run again") from None
        with contextlib.suppress(OSError):  # only for the message above: a full disk must not stop the run
            f.truncate(0)
            f.write(str(os.getpid()))
            f.flush()
        yield


def preflight(catalog: Catalog, root: Path, runs: list[JobRun], venv_root: Path, trust_remote_code: bool = False,
              restart: bool = False) -> list[str]:
    """Everything that would stop the jobs, each with its fix (the space their folders need among them); also
    hashes each job's media."""
    problems: list[str] = []
    ctx = Context(catalog, root, cache.read_lock(root), trust_remote_code)
    needed_venvs = {"core"}
    for run in runs:
        job = run.job
        stages = stages_of(job)
        if not stages:
            problems.append(f"job {job.id}: unknown workflow {job.workflow!r}")
            continue
        for stage in stages:
            needed_venvs.add(stage.venv_for(job))
            problems += [f"job {job.id}: {p}" for p in stage.check(ctx, job)]
        media = Path(job.media.path)
        if not media.is_file():
            problems.append(f"job {job.id}: the media {media} is gone: put it back or prepare a new job")
            continue
        run.media_sha256 = _media_hash(run, media)
        if run.media_sha256 != job.media.sha256:
            problems.append(f"job {job.id}: the media {media} changed since the job was prepared (sha256 differs): prepare a new job")
    for name in sorted(needed_venvs):
        if not backend_python(name, venv_root).exists():
            problems.append(f"venv/{name} is missing: ./venv-setup {name}")
    return problems + _space_problems(runs, restart)


def _space_problems(runs: list[JobRun], restart: bool) -> list[str]:
    """Per file system holding job folders: whether it has the space their runs write."""
    needed: dict[int, tuple[Path, int]] = {}
    for run in runs:
        device = run.dir.stat().st_dev
        where, total = needed.get(device, (run.dir.parent, 0))
        needed[device] = (where, total + space_needed(run, restart))
    problems = []
    for where, total in needed.values():
        free = shutil.disk_usage(where).free
        if total and free < total:
            problems.append(f"only {human_bytes(free)} free in {where}: the jobs need about {human_bytes(total)} there "
                            "(the clip as WAV, documents, logs): free some space or use another --out-dir")
    return problems


def _media_hash(run: JobRun, media: Path) -> str:
    """sha256 of the media, reusing the manifest's figure while its stat is the one it was taken at: size, mtime,
    and ctime and inode, which no rewrite can set back (a file changed with its size and mtime restored)."""
    st = media.stat()
    stat = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino,
            "device": st.st_dev}
    seen = run.manifest.get("media")
    if seen and seen.get("sha256") and all(seen.get(k) == v for k, v in stat.items()):
        return seen["sha256"]
    digest = sha256_file(media)
    run.manifest["media"] = stat | {"sha256": digest}
    return digest
