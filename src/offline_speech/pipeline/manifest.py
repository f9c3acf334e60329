"""A job during a run: finding it (job id or folder), its manifest, and the preflight that says what would stop it.

out/<id>/manifest.json records every stage's status, times, input digest, outputs (with sha256), model commits
and error. A manifest that is unreadable or not of this schema is set aside: every stage runs again, which is
always safe (a stage rewrites its outputs), never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import cache
from ..catalog import Catalog
from ..errors import BadInput
from ..schema import JOB_ID_RE, Job, SchemaError, read_job
from ..settings import backend_python
from ..util import sha256_file, utc_now, write_json
from .registry import Context, stages_of

MANIFEST_KIND = "offline-speech/manifest"
MANIFEST_SCHEMA = 1
WORK = "work"  # intermediate files inside the job folder


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
        self.manifest["updated"] = utc_now()
        write_json(self.dir / "manifest.json", self.manifest)


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
            raise PreflightError([f"{flag} {ref}: unknown job id (no {folder}/job.json): ./prepare-job.sh --media FILE prints one"])
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


def preflight(catalog: Catalog, root: Path, runs: list[JobRun], venv_root: Path) -> list[str]:
    """Everything that would stop the jobs, each with its fix; also hashes each job's media."""
    problems: list[str] = []
    ctx = Context(catalog, root, cache.read_lock(root))
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
    return problems


def _media_hash(run: JobRun, media: Path) -> str:
    """sha256 of the media, reusing the manifest's figure while size and mtime are those it was taken at."""
    st = media.stat()
    seen = run.manifest.get("media")
    if seen and seen.get("size") == st.st_size and seen.get("mtime_ns") == st.st_mtime_ns and seen.get("sha256"):
        return seen["sha256"]
    digest = sha256_file(media)
    run.manifest["media"] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    return digest
