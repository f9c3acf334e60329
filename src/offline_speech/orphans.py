"""What killed runs leave behind, and the one rule for removing it: never what a live process still owns.

A run killed with -9 (or with SIGTERM, which skips `finally`) leaves its temporary things: temp files of atomic
writes (`.offline-speech.lock.json*.tmp`, `.manifest.json*.tmp`, refs, tree listings, the verified index), a
stage's `.NAME.PID.tmp*`, stage work folders (`out/.asr-XXXXXXXX`), prepare-job's staging folder (`out/.ID.tmp`),
a bundle import's staging folder (`<cache>/.import-XXXXXXXX`), partial downloads (`blobs/*.incomplete`, an asset's
`.NAME*.part`), huggingface_hub's temp files in its shared blob store and the `.refs`/`.lock` of payloads that are gone.
The next run that looks after the place removes them: cache-models (every mode but --dry-run)
the cache's, run-pipeline those of its out dir and of the job folders it runs.

Who owns what (checked without waiting, never guessed from a name alone):
- a temp file or work folder is owned while a process holds an flock on it: `util.atomic_output` locks its temp
  file and `work_dir()` its folder for as long as they exist;
- a name carrying a PID (`.NAME.PID.tmp`) is owned while that process lives;
- a partial download is owned while a process holds huggingface_hub's download lock of its blob
  (`hub/.locks/models--ORG--NAME/<etag>.lock`); an asset's `.part` while a process holds the asset's entry lock;
- anything touched less than GRACE seconds ago is left alone (it may be between being made and being locked).

Partial downloads and resuming: a `blobs/*.incomplete` nobody is writing may still be resumed by the next fetch of
its entry, so a fetch never deletes one when it starts. Ordinary runs remove only those untouched for RESUME_WINDOW;
`--verify --repair` removes every unowned one of the entries it verified once it has repaired them (what the
repair could resume, it has); `--clear` removes an entry's with the entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from . import cache

GRACE = 60.0  # seconds
RESUME_WINDOW = 7 * 24 * 3600.0  # seconds a partial download nobody writes is kept for a fetch to resume

_TEMP = re.compile(r"^\..+\.tmp(?:\.[A-Za-z0-9]+)?$")  # .NAME<random>.tmp, .NAME.PID.tmp, .NAME.PID.tmp.wav
_PID = re.compile(r"\.(\d+)\.tmp(?:\.[A-Za-z0-9]+)?$")
_BLOB_ID = re.compile(r"^\.?([0-9a-f]{64}|[0-9a-f]{40})")
_SHARED_LINK = re.compile(r"^\..+\.[0-9a-f]{8}\.shared$")  # huggingface_hub's temp link before it is renamed into place
_STORE_TEMP = re.compile(r"^(?:\.huggingface-shared-blobs|[0-9a-f]{64}\.refs)\.[0-9a-f]{8}\.tmp$")
_held: dict[Path, int] = {}  # work folders this process owns -> the descriptor holding their flock


# ---- owning a work folder -------------------------------------------------------------------------------------


def work_dir(parent: Path, prefix: str) -> Path:
    """A new folder `parent/<prefix>XXXXXXXX` this process owns (flocked) until remove_work_dir() or its exit."""
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    fd = os.open(path, os.O_RDONLY)
    with contextlib.suppress(OSError):  # a file system without flock: then only GRACE protects it
        fcntl.flock(fd, fcntl.LOCK_EX)
    _held[path] = fd
    return path


def remove_work_dir(path: Path) -> None:
    """Delete a folder made by work_dir() and let go of it."""
    shutil.rmtree(path, ignore_errors=True)
    fd = _held.pop(path, None)
    if fd is not None:
        os.close(fd)


# ---- the rule -------------------------------------------------------------------------------------------------


def _locked(path: Path) -> bool:
    """Whether another process holds an flock on `path` (a file or folder that cannot be opened counts as held)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # there, but someone else's
    return True


def _idle(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.lstat().st_mtime >= seconds
    except OSError:
        return False


def stale(path: Path, idle: float = GRACE, owner_lock: Path | None = None) -> bool:
    """Whether `path` is a leftover no live process owns: untouched for `idle` seconds, its PID (if its name has
    one) not running, and no flock held on it (or on `owner_lock`, the lock its writer holds instead)."""
    if not _idle(path, idle):
        return False
    pid = _PID.search(path.name)
    if pid and int(pid.group(1)) != os.getpid() and _alive(int(pid.group(1))):
        return False
    return not _locked(owner_lock or path)


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        return True
    except OSError:
        return False


def _sweep(folder: Path, pattern: re.Pattern, **rule) -> list[Path]:
    """Remove the stale entries of `folder` whose names match `pattern`; the ones removed."""
    try:
        names = sorted(p for p in folder.iterdir() if pattern.match(p.name))
    except OSError:
        return []
    return [p for p in names if stale(p, **rule) and _remove(p)]


# ---- where each kind lives ------------------------------------------------------------------------------------


def clean_cache(root: Path, assets: list[tuple[str, str]] = (), partials_of: Iterable[str] = ()) -> list[Path]:
    """Remove the cache's leftovers (see the module docstring); `assets` are (key, dest) of the catalog's assets;
    of the repos in `partials_of` every unowned partial download goes, of the others only those older than
    RESUME_WINDOW. Silent where the cache cannot be written. Returns what was removed."""
    if not root.is_dir():
        return []
    removed = _sweep(root, _TEMP) + _sweep(root, re.compile(r"^\.import-"))
    for folder in (root / "offline-speech", *root.glob("offline-speech/*"), *root.glob("offline-speech/ct2/*")):
        removed += _sweep(folder, _TEMP)
    hub = cache.hub_dir(root)
    done = {cache.repo_dir(root, repo).name for repo in partials_of}
    for repo in sorted(hub.glob("models--*")):
        removed += _sweep(repo / "refs", _TEMP) + _sweep(repo / "trees", _TEMP) + _sweep(repo / "blobs", _SHARED_LINK)
        removed += _partial_blobs(repo, hub / ".locks" / repo.name, GRACE if repo.name in done else RESUME_WINDOW)
    removed += _shared_store(cache.shared_store(root))
    for key, dest in assets:
        target = root / dest
        part = re.compile(rf"^\.{re.escape(target.name)}.*\.part$")
        removed += _sweep(target.parent, part, owner_lock=root / ".locks" / f"entry-{key}.lock")
    return removed


def _shared_store(store: Path) -> list[Path]:
    """huggingface_hub's shared blob store: its temp files (marker, `.refs` rewrites), and the `.refs` and `.lock`
    of payloads that are gone (a payload itself is removed only by --clear or --prune, which check its links)."""
    removed = _sweep(store, _STORE_TEMP)
    for prefix in sorted(store.glob("[0-9a-f][0-9a-f]")):
        removed += _sweep(prefix, _STORE_TEMP)
        for meta in sorted(p for p in prefix.glob("*.refs") if not p.with_suffix("").exists()):
            if stale(meta, GRACE, meta.with_suffix(".lock")) and _remove(meta):
                removed.append(meta)
        for lock in sorted(p for p in prefix.glob("*.lock") if not p.with_suffix("").exists()):
            if not lock.with_suffix(".refs").exists() and stale(lock) and _remove(lock):
                removed.append(lock)
    return removed


def _partial_blobs(repo: Path, locks: Path, idle: float) -> list[Path]:
    """The unowned partial downloads of one repo idle for `idle` seconds, removed."""
    removed = []
    for path in sorted((repo / "blobs").glob("*.incomplete")):
        blob_id = _BLOB_ID.match(path.name)
        owner = locks / f"{blob_id.group(1)}.lock" if blob_id else None
        if stale(path, idle, owner) and _remove(path):
            removed.append(path)
    return removed


def sweep_temp_files(target: Path) -> list[Path]:
    """Remove the temp files of writes of `target` that killed runs left beside it (`.NAME<random>.tmp`, see
    util.atomic_output), none a live writer still holds."""
    return _sweep(target.parent, re.compile(rf"^\.{re.escape(target.name)}.*\.tmp$"))


def clean_out_dir(out_dir: Path, job_dirs: list[Path], stage_names: list[str]) -> list[Path]:
    """Remove the leftovers of killed runs in an out dir (stage work folders, prepare-job staging folders) and in
    the given job folders and their subfolders (temp files), none owned by a live process. Returns what was
    removed; silent where nothing can be removed."""
    work = re.compile(rf"^\.(?:{'|'.join(map(re.escape, stage_names))})-[A-Za-z0-9_]{{8}}$")
    removed = _sweep(out_dir, work) + _sweep(out_dir, _TEMP)
    for job in job_dirs:
        with contextlib.suppress(OSError):
            for folder in (job, *(p for p in job.iterdir() if p.is_dir() and not p.name.startswith("."))):
                removed += _sweep(folder, _TEMP)
    return removed
