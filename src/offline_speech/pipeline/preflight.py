"""The preflight: everything that would stop the jobs of a run, each with its fix, before any stage starts.

It asks each stage of each job what it needs (registry), checks the media is still the one prepared (hashing it
once: the manifest keeps the figure), that the backend venvs exist, and that the job folders have the space.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import cache
from ..catalog import Catalog
from ..settings import backend_python
from ..util import human_bytes, sha256_file
from .manifest import JobRun, space_needed
from .registry import Context, stages_of


def preflight(
    catalog: Catalog,
    root: Path,
    runs: list[JobRun],
    venv_root: Path,
    trust_remote_code: bool = False,
    restart: bool = False,
) -> list[str]:
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
            problems.append(
                f"job {job.id}: the media {media} changed since the job was prepared (sha256 differs): "
                "prepare a new job"
            )
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
            problems.append(
                f"only {human_bytes(free)} free in {where}: the jobs need about {human_bytes(total)} there "
                "(the clip as WAV, documents, logs): free some space or use another --out-dir"
            )
    return problems


def _media_hash(run: JobRun, media: Path) -> str:
    """sha256 of the media, reusing the manifest's figure while its stat is the one it was taken at: size, mtime,
    and ctime and inode, which no rewrite can set back (a file changed with its size and mtime restored)."""
    st = media.stat()
    stat = {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
        "device": st.st_dev,
    }
    seen = run.manifest.get("media")
    if seen and seen.get("sha256") and all(seen.get(k) == v for k, v in stat.items()):
        return seen["sha256"]
    digest = sha256_file(media)
    run.manifest["media"] = stat | {"sha256": digest}
    return digest
