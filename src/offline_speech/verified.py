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
import fcntl
import json
import os
import threading
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

    def __init__(self, root: Path | None):
        """The index of the cache at `root`; None: an empty one that is never saved (every file is hashed)."""
        self.root = root
        self.base = Path(os.path.realpath(root or "/"))  # keys are relative to it, so a moved cache keeps its index
        self.path = root / INDEX_PATH if root else None
        self.records: dict[str, list] = {}
        self.learned: dict[str, list] = {}  # what this instance verified: all a save adds to the file
        self.dropped: set[str] = set()
        self.dirty = False
        self.hashed = 0
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            if self.path:
                self.records = _records(json.loads(self.path.read_text()))

    def _key(self, real: Path) -> str:
        try:
            return str(real.relative_to(self.base))
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
        return self.known(real, file_id) or self.hash(real, file_id) == file_id

    def hash(self, path: Path, file_id: str) -> str | None:
        """Hash the file at `path` whatever the index says (--verify), as the kind `file_id` is, and record
        whether it matched; None when it cannot be read."""
        try:
            real = Path(os.path.realpath(path))
            st = real.stat()
            self.hashed += 1
            actual = hash_as(real, file_id)
        except OSError:
            return None
        key = self._key(real)
        if actual == file_id and _signature(real.stat()) == _signature(st):  # unchanged while it was read
            self._learn(key, [file_id, _signature(st)])
        else:
            self._drop(key)
        return actual

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
            self._learn(self._key(real), [file_id, _signature(real.stat())])

    def forget(self, path: Path) -> None:
        """Drop a file's record (it is being replaced or removed)."""
        self._drop(self._key(Path(os.path.realpath(path))))

    def _learn(self, key: str, record: list) -> None:
        self.records[key] = self.learned[key] = record
        self.dropped.discard(key)
        self.dirty = True

    def _drop(self, key: str) -> None:
        self.records.pop(key, None)
        self.learned.pop(key, None)
        self.dropped.add(key)
        self.dirty = True

    def save(self) -> None:
        """Write the index if it changed; silently not on a read-only cache (it is only a shortcut).
        Only what this instance learned or dropped changes the file (read and merged under an flock), so records
        other processes wrote meanwhile are kept; a record only vouches for one exact stat, so even a stale one
        can never make a changed file pass. Records of files that are gone are left out."""
        if not self.dirty or self.path is None:
            return
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                theirs: dict[str, list] = {}
                with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
                    theirs = _records(json.loads(self.path.read_text()))
                merged = {k: v for k, v in theirs.items() if k not in self.dropped} | self.learned
                merged = {k: v for k, v in merged.items() if (self.base / k).exists()}  # removed files go
                atomic_write(self.path, json.dumps({"format": _FORMAT, "files": merged}, sort_keys=True).encode())
            self.dirty = False


def _records(data: dict) -> dict[str, list]:
    if data.get("format") != _FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return {k: v for k, v in data["files"].items() if isinstance(v, list) and len(v) == 2}


_RECORDING = threading.Lock()


def record_file(root: Path, path: Path, file_id: str) -> None:
    """Record at once one file whose bytes were checked against `file_id` while it was written (a download):
    thread-safe, so each of a download's parallel files can record itself as it completes."""
    with _RECORDING:
        index = VerifiedIndex(root)
        index.record(path, file_id)
        index.save()
