"""What was verified: per cached file, the stat it had when its bytes were last hashed and found right.

Hashing gigabytes on every run is too slow, and comparing sizes is too weak (a same-size corrupted blob passed
the cached check and the preflight, and the pipeline ran on bad weights). As git's index does, the cache keeps for
each blob the (size, mtime_ns, ctime_ns, inode, device) it had when its hash was checked (by a download, which
hashes as it writes, or by --verify); a later check hashes again only a file whose stat differs. A file rewritten
with its size and mtime restored still changes its ctime, which no user call can set back.

The index lives at <cache>/offline-speech/verified.json. It is only ever a shortcut: a missing, unreadable or
stale index means hashing again, never trusting more. On a read-only cache it is read but not written.
Standard library only (the stages' verification runs in backend venvs).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from .util import atomic_write, git_sha1_file, sha256_file

INDEX_PATH = Path("offline-speech") / "verified.json"
_FORMAT = 1


def _signature(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def hash_as(path: Path, file_id: str) -> str:
    """The hash of `path` of the kind `file_id` is: sha256 (64 hex) or git blob sha1 (40 hex)."""
    return sha256_file(path) if len(file_id) == 64 else git_sha1_file(path)


class VerifiedIndex:
    """The per-cache record of verified files; `hashed` counts the files this instance actually hashed."""

    def __init__(self, root: Path):
        self.root = root
        self.path = root / INDEX_PATH
        self.records: dict[str, list] = {}
        self.dirty = False
        self.hashed = 0
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            data = json.loads(self.path.read_text())
            if data.get("format") == _FORMAT and isinstance(data.get("files"), dict):
                self.records = {k: v for k, v in data["files"].items() if isinstance(v, list) and len(v) == 2}

    def _key(self, real: Path) -> str:
        try:
            return str(real.relative_to(self.root))
        except ValueError:
            return str(real)

    def check(self, path: Path, file_id: str, size: int | None = None) -> bool:
        """Whether the file at `path` (links followed) has the content `file_id` names: from the index when its
        stat is unchanged since it was verified, else by hashing it (and recording a success)."""
        try:
            real = Path(os.path.realpath(path))
            st = real.stat()
        except OSError:
            return False
        if size is not None and st.st_size != size:
            return False
        key = self._key(real)
        signature = _signature(st)
        if self.records.get(key) == [file_id, signature]:
            return True
        self.hashed += 1
        try:
            ok = hash_as(real, file_id) == file_id
        except OSError:
            return False
        if ok:
            self.records[key] = [file_id, signature]
            self.dirty = True
        elif key in self.records:
            del self.records[key]
            self.dirty = True
        return ok

    def known(self, path: Path, file_id: str) -> bool:
        """Whether `path` (links followed) was verified as `file_id` with exactly the stat it has now; never hashes
        (for a caller that hashes the bytes itself as it reads them when this says no)."""
        try:
            real = Path(os.path.realpath(path))
            return self.records.get(self._key(real)) == [file_id, _signature(real.stat())]
        except OSError:
            return False

    def record(self, path: Path, file_id: str) -> None:
        """Note a file whose bytes were just checked against `file_id` elsewhere (a download hashes as it writes)."""
        with contextlib.suppress(OSError):
            real = Path(os.path.realpath(path))
            self.records[self._key(real)] = [file_id, _signature(real.stat())]
            self.dirty = True

    def forget(self, path: Path) -> None:
        """Drop a file's record (it is being replaced or removed)."""
        with contextlib.suppress(OSError):
            if self.records.pop(self._key(Path(os.path.realpath(path))), None) is not None:
                self.dirty = True

    def save(self) -> None:
        """Write the index if it changed; silently not on a read-only cache (it is only a shortcut).
        Records other processes wrote meanwhile are kept: a record only vouches for one exact stat, so a stale one
        can never make a changed file pass."""
        if not self.dirty:
            return
        merged = dict(self.records)
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            theirs = json.loads(self.path.read_text())["files"]
            merged = {**{k: v for k, v in theirs.items() if isinstance(v, list)}, **self.records}
        with contextlib.suppress(OSError):
            atomic_write(self.path, json.dumps({"format": _FORMAT, "files": merged}, sort_keys=True).encode())
            self.dirty = False
