"""Batches: many media files prepared by one prepare-job call, recorded as out/batches/<id>.json.

A batch is the list of its jobs (each an ordinary job, prepared as one media file's would be) with the options they
share and what was given but is not media (skipped, listed, not an error for the rest). Every file is probed and
hashed in this one process. Preparing the same media file (same path, same content) with the same settings again
(the same command after a crash, or a longer list) reuses the job already prepared for it instead of making a second.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from .catalog import Catalog
from .errors import BadInput, StateError
from .job_options import JobOptions
from .jobs import JobError, build_job, check_options, new_job_id, write_job
from .media import MediaError, probe
from .schema import JOB_ID_RE, Job, SchemaError, read_job
from .util import utc_now, write_json

BATCH_KIND = "offline-speech/batch"
BATCH_SCHEMA = 1
BATCHES = "batches"  # out/batches/<id>.json
# What a job's settings are compared by, to reuse it: everything but its identity and what it found in the cache.
_NOT_SETTINGS = ("id", "created", "models", "warnings", "output_stem", "backend_reason")


@dataclass(frozen=True)
class Skipped:
    path: str
    why: str


@dataclass(frozen=True)
class Batch:
    id: str
    created: str
    options: dict  # the JobOptions every job of it was prepared with
    jobs: tuple[str, ...]
    skipped: tuple[Skipped, ...] = ()
    reused: tuple[str, ...] = ()  # jobs prepared before (same media content, same settings)

    def to_dict(self) -> dict:
        return {"kind": BATCH_KIND, "schema": BATCH_SCHEMA, **asdict(self)}


class BatchError(BadInput):
    """A batch that cannot be made (no media in what was given) or found."""


def find_media(given: list[Path], media_list: Path | None, recursive: bool) -> tuple[list[Path], list[Skipped]]:
    """The files named by --media (files, or folders: their files, with --recursive their sub-folders' too) and by
    --media-list (one path per line, # comments), each once, in the order given; what does not exist is skipped."""
    paths = list(given)
    if media_list is not None:
        paths += _listed(media_list)
    found: dict[Path, None] = {}
    skipped: list[Skipped] = []
    for path in paths:
        path = Path(os.path.abspath(path.expanduser()))
        if path.is_dir():
            found.update(dict.fromkeys(_folder_files(path, recursive)))
        elif path.is_file():
            found[path] = None
        else:
            skipped.append(Skipped(str(path), "no such file" if not path.exists() else "not a regular file"))
    return list(found), skipped


def _listed(media_list: Path) -> list[Path]:
    try:
        text = media_list.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchError(f"--media-list {media_list}: cannot be read ({exc.__class__.__name__}: {exc})") from None
    base = media_list.parent
    lines = (line.strip() for line in text.splitlines())
    return [base / Path(line).expanduser() for line in lines if line and not line.startswith("#")]


def _folder_files(folder: Path, recursive: bool) -> Iterator[Path]:
    """Visible regular files, sorted by name, sub-folders after the files (hidden ones left out)."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise BatchError(f"--media {folder}: cannot be listed ({exc.strerror})") from None
    visible = [e for e in entries if not e.name.startswith(".")]
    yield from (e for e in visible if e.is_file())
    if recursive:
        for sub in (e for e in visible if e.is_dir() and not e.is_symlink()):
            yield from _folder_files(sub, recursive)


def settings_of(job: Job) -> str:
    """What decides whether a prepared job can serve for a media file: the file (path and content) and every setting
    (its outputs are named after the file: a copy elsewhere gets its own job)."""
    fields = {k: v for k, v in asdict(job).items() if k not in _NOT_SETTINGS}
    fields["media"] = {"path": job.media.path, "sha256": job.media.sha256, "size": job.media.size}
    return json.dumps(fields, sort_keys=True)


def prepared_jobs(out_dir: Path) -> dict[str, str]:
    """settings_of(job) -> job id, for every readable job.json under `out_dir` (the first one made wins)."""
    found: dict[str, str] = {}
    if not out_dir.is_dir():
        return found
    for folder in sorted(out_dir.iterdir()):
        if not JOB_ID_RE.match(folder.name) or not (folder / "job.json").is_file():
            continue
        try:
            job = read_job(folder / "job.json")
        except SchemaError:
            continue  # run-pipeline names a broken job.json when it is asked to run it
        found.setdefault(settings_of(job), job.id)
    return found


def prepare_batch(
    catalog: Catalog,
    cache_root: Path,
    files: list[Path],
    skipped: list[Skipped],
    options: JobOptions,
    out_dir: Path,
    progress: Callable[[Path, str], None] = lambda path, what: None,
) -> tuple[Batch, list[Job]]:
    """Prepare a job for every media file (reusing one prepared with the same content and settings), then write the
    batch record. A file that is not media is skipped; bad options are one error before anything is written."""
    checked = check_options(options)  # once for all the media: bad options are one error, nothing written
    before = prepared_jobs(out_dir)
    jobs: list[Job] = []
    reused: list[str] = []
    skipped = list(skipped)
    for path in files:
        try:
            info = probe(path)
        except MediaError as exc:
            skipped.append(Skipped(str(path), str(exc).removeprefix(f"{path}: ")))
            progress(path, "skipped")
            continue
        try:
            job = build_job(catalog, cache_root, path, checked, info)
        except JobError as exc:
            if jobs or reused:  # the clip fit the files before: this one is the problem
                skipped.append(Skipped(str(path), str(exc)))
                progress(path, "skipped")
                continue
            raise
        key = settings_of(job)
        same = before.get(key)
        if same is not None:
            reused.append(same)
            jobs.append(dataclasses.replace(job, id=same))
            progress(path, "reused")
            continue
        write_job(out_dir, job)
        before[key] = job.id
        jobs.append(job)
        progress(path, "prepared")
    if not jobs:
        why = "; ".join(f"{s.path}: {s.why}" for s in skipped[:3]) or "nothing was given"
        raise BatchError(f"no media to prepare ({why})")
    batch = Batch(
        new_job_id(Path("batch")),
        utc_now(),
        _options_dict(options),
        tuple(j.id for j in jobs),
        tuple(skipped),
        tuple(reused),
    )
    write_json(batch_path(out_dir, batch.id), batch.to_dict())
    return batch, jobs


def _options_dict(options: JobOptions) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()}


def batch_path(out_dir: Path, batch_id: str) -> Path:
    return out_dir / BATCHES / f"{batch_id}.json"


def read_batch(out_dir: Path, ref: str) -> Batch:
    """The batch `ref` names: an id under out/batches/, or a batch file; StateError (one line) when it is broken."""
    if ref.endswith(".json") or "/" in ref:
        path = Path(ref)
    elif JOB_ID_RE.match(ref):
        path = batch_path(out_dir, ref)
    else:
        raise BatchError(f"-b {ref!r}: not a batch id (prepare-job prints a batch's id last)")
    if not path.is_file():
        raise BatchError(f"-b {ref}: no batch {path} (prepare-job prints a batch's id last)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or raw.get("kind") != BATCH_KIND or raw.get("schema") != BATCH_SCHEMA:
            raise ValueError(f"not an {BATCH_KIND} file of schema {BATCH_SCHEMA}")
        jobs = raw["jobs"]
        if not isinstance(jobs, list) or not all(isinstance(j, str) and JOB_ID_RE.match(j) for j in jobs):
            raise ValueError("its 'jobs' must be a list of job ids")
        return Batch(
            str(raw["id"]),
            str(raw["created"]),
            dict(raw.get("options") or {}),
            tuple(jobs),
            tuple(Skipped(str(s["path"]), str(s["why"])) for s in raw.get("skipped", [])),
            tuple(str(j) for j in raw.get("reused", [])),
        )
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise StateError(f"{path}: not a readable batch ({exc}): prepare the batch again") from None
