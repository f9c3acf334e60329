"""Small idioms every module needs, spelled once: atomic writes, hashing, time stamps, CPU count, error tails.

Standard library only: stage processes in every venv import it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import BadInput, OfflineSpeechError, StateError, WorkFailed

CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_output(path: Path, durable: bool = True) -> Iterator[BinaryIO]:
    """A binary file that becomes `path` (fsynced unless not `durable`, renamed into place) only when the block ends
    without an error; readers see the old file or the new one, never a partial one, and a failure leaves no temp
    file. The temp file is opened read-write (its descriptor can read back what was written) and flocked while it
    is written, so a later run can tell it from one a killed writer left (orphans.py)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    with contextlib.suppress(OSError):  # a file system without flock: writes still work
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), default_mode())  # private while written, then what a plain open() would give
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def default_mode() -> int:
    """The mode a plain open() gives a new file: 0666 less the process's umask, read without changing it where the
    OS tells it (Linux), so it is safe from threads; a team sharing a cache or out dir shares it through the umask."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def path_kind(path: Path) -> str:
    """What is at `path`, in words: "a file", "a folder", "a FIFO", "a device", "a socket", or "nothing"."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "nothing"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "a socket" if stat.S_ISSOCK(mode) else "a device"


def input_file(path: Path, flag: str, max_bytes: int | None = None) -> Path:
    """`path` if it is a regular file to read (at most `max_bytes`), else BadInput saying what is there instead: a
    FIFO or a device is never opened (it could block, or never end)."""
    kind = path_kind(path)
    if kind == "nothing":
        raise BadInput(f"{flag} {path}: no such file")
    if kind != "a file":
        raise BadInput(f"{flag} {path}: is {kind}, not a file")
    if max_bytes is not None and (size := path.stat().st_size) > max_bytes:
        raise BadInput(f"{flag} {path}: {size} bytes, more than such a file can be ({max_bytes})")
    return path


def output_file(path: Path, flag: str) -> Path:
    """`path` if a file can be written there (new, or a regular file it replaces), else BadInput: never a folder, a
    device or a FIFO, never in a folder that is missing or read-only."""
    kind = path_kind(path)
    if kind not in ("nothing", "a file"):
        raise BadInput(f"{flag} {path}: is {kind}; give the path of a file to write")
    parent = path.parent
    if path_kind(parent) != "a folder":
        raise BadInput(f"{flag} {path}: {parent} is {path_kind(parent)}, not a folder")
    fs = os.statvfs(parent)
    if fs.f_blocks == 0:  # /proc, /sys: files there are the kernel's, not ours
        raise BadInput(f"{flag} {path}: {parent} is a virtual file system, not a place for files; choose another place")
    if not os.access(parent, os.W_OK) or fs.f_flag & os.ST_RDONLY:
        raise BadInput(f"{flag} {path}: cannot write in {parent} (read-only or not yours); choose another place")
    return path


READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def human_bytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{max(n, 1) / 1e3:.0f} kB"


def write_problem(exc: OSError, where: Path, needed: int, elsewhere: str) -> OfflineSpeechError | None:
    """One line for a folder that cannot be written (read-only: exit 2; no space left: exit 1, with the space
    needed), naming the way out (`elsewhere`: "use another --out-dir"); None for any other error."""
    if exc.errno in READ_ONLY:
        return StateError(f"cannot write in {where} ({exc.strerror}): make it writable or {elsewhere}")
    if exc.errno in NO_SPACE:
        free = shutil.disk_usage(where).free if where.exists() else 0
        return WorkFailed(
            f"no space left in {where} ({human_bytes(free)} free; needs about {human_bytes(needed)}): "
            f"free some space or {elsewhere}, then run again"
        )
    return None


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the new one, never a partial one."""
    with atomic_output(path) as f:
        f.write(data)


def place_file(src: Path, dest: Path, mode: int | None = None) -> None:
    """`src`'s bytes at `dest`, moved in atomically: a hard link where both are on one file system, else a copy
    (`mode`, when given, is set on the result: on a link, that is `src`'s own mode too). A link at `dest` is
    replaced, never written through."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".incomplete")
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, doc: object, indent: int | None = 1) -> None:
    """Write a JSON document atomically (UTF-8, trailing newline)."""
    text = json.dumps(doc, indent=indent, ensure_ascii=False) + "\n"
    atomic_write(Path(path), text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def git_sha1_file(path: Path) -> str:
    """The git blob id of a file (what the hub reports as oid for non-LFS files)."""
    h = hashlib.sha1(f"blob {Path(path).stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def digest(data: object) -> str:
    """A stable sha256 of a JSON-serialisable value (sorted keys)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def utc_now(when: float | None = None) -> str:
    """An ISO 8601 UTC time stamp to the second, e.g. 2026-11-30T04:30:00Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if when is None else when))


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def last_line(text: str | bytes | None, default: str = "no output") -> str:
    """The last non-empty line of a process's output: what a one-line error quotes."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = (text or "").strip().splitlines()
    return lines[-1].strip() if lines else default


def of_types(value: object, kinds: tuple) -> bool:
    """isinstance, except that a bool is not an int here (JSON's true is no number)."""
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)


def entries_problem(doc: object, types: dict[str, tuple], field: str) -> str | None:
    """Why a state file's object `field` is not made of these named, typed entries (job.json's decoding and layout),
    or None."""
    if not isinstance(doc, dict):
        return f"field {field!r} must be an object"
    for name, value in doc.items():
        kinds = types.get(name)
        if kinds is None:
            return f"{field}: unknown entry {name!r}"
        if not of_types(value, kinds):
            return f"{field}: {name!r} is {type(value).__name__}"
    return None
