"""The test hub's Xet side: a content-addressed store (CAS) that hf-xet's own client reads, filled by hf-xet's own
upload, so `hf_hub_download` runs its real Xet code (reconstruction, shared blob store, symlinks) on 127.0.0.1.

hf-xet accepts `local://DIR` as a CAS endpoint: the hub answers a file's HEAD with `X-Xet-Hash` and a refresh route,
the refresh route answers `X-Xet-Cas-Url: local://DIR`, and the client downloads from DIR with no network at all.
Simpler than the Hub in one way (the README's test section says so): the bytes never cross a socket, so the hub
cannot throttle or cut a Xet transfer the way it can an HTTP one. TestHub(xet="http") closes that gap: xet_cas.py
serves this same folder over HTTP (hf-xet's download protocol), and the refresh route answers its URL instead.

hf_xet is imported only when a store is used (hub.py also runs by path in venvs without it). One store per process
serves every hub the process starts: the CAS is content-addressed, so each file is uploaded (chunked, hashed) once.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import warnings
from pathlib import Path


class XetStore:
    """A local CAS folder and the Xet hash of every file uploaded to it (by sha256)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or Path(tempfile.mkdtemp(prefix="testhub-xet-"))
        self._hashes: dict[str, str] = {}  # sha256 -> xet hash
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        """What the refresh route answers as `X-Xet-Cas-Url`."""
        return f"local://{self.folder}"

    def add(self, files: dict[str, bytes]) -> dict[str, str]:
        """Upload these files (sha256 -> bytes) with hf-xet, once each; their Xet hashes by sha256."""
        with self._lock:
            todo = {sha: data for sha, data in files.items() if sha not in self._hashes}
            if todo:
                self._upload(todo)
            return {sha: self._hashes[sha] for sha in files}

    def _upload(self, files: dict[str, bytes]) -> None:
        import hf_xet

        staging = Path(tempfile.mkdtemp(prefix="upload-", dir=self.folder.parent))
        try:
            paths = []
            for sha, data in files.items():
                (staging / sha).write_bytes(data)
                paths.append(str(staging / sha))
            with warnings.catch_warnings():  # deprecated for XetSession in 1.8, and still the one-call way
                warnings.simplefilter("ignore", DeprecationWarning)
                infos = hf_xet.upload_files(paths, self.endpoint, None, None, None, "model")
            for sha, info in zip(files, infos):
                if info.sha256 not in (None, sha):  # pragma: no cover - hf-xet disagreeing with hashlib
                    raise AssertionError(f"hf-xet hashed {sha} as sha256 {info.sha256}")
                self._hashes[sha] = info.hash
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


_SHARED: XetStore | None = None
_SHARED_LOCK = threading.Lock()


def shared_store() -> XetStore:
    """The process's store (created on first use, removed at exit)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = XetStore()
            atexit.register(_SHARED.remove)
        return _SHARED
