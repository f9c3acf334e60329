"""The download engine: one pool of file downloads for a whole plan, each file hashed as it is written.

Every hub byte goes through huggingface_hub (`fetch_hub_file`); this module tunes its read sizes, forwards its
progress to our reporter (a tqdm-compatible shim) and hashes each file while it grows (`StreamHasher`), so a
download is checked against the hub's id without a second pass over its bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from .. import cache
from ..cache import RemoteFile
from ..util import CHUNK, usable_cpus
from .plan import ItemPlan, ItemResult, Plan, cached
from .remote import Remote


class Reporter(Protocol):
    """Receives progress; the CLI renders it as rich bars on a terminal and as plain lines otherwise."""

    def file_started(self, key: str, path: str, size: int) -> None: ...
    def advance(self, key: str, path: str, nbytes: int) -> None: ...
    def file_done(self, key: str, path: str) -> None: ...


# huggingface_hub reads a body 64 KiB per recv (httpcore) and regroups it into 10 MiB pieces (BytesIO, getvalue,
# slices). 1 MiB reads handed on as 1 MiB pieces cost less CPU per byte (scripts/bench_provision.py), which pays
# for hashing every byte as it arrives. Only this process, only speed: where a pinned version lacks a knob,
# downloads run as shipped (tests/test_provision.py checks both exist).
DOWNLOAD_READ_BYTES = 1 << 20


def tune_downloads() -> list[str]:
    """Set huggingface_hub's download read and chunk sizes for throughput; the knobs it found and set."""
    import huggingface_hub.constants as hub_constants

    tuned = []
    if isinstance(getattr(hub_constants, "DOWNLOAD_CHUNK_SIZE", None), int):
        hub_constants.DOWNLOAD_CHUNK_SIZE = DOWNLOAD_READ_BYTES
        tuned.append("huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE")
    try:
        from httpcore2._sync.http11 import HTTP11Connection
    except ImportError:
        return tuned
    if isinstance(getattr(HTTP11Connection, "READ_NUM_BYTES", None), int):
        HTTP11Connection.READ_NUM_BYTES = DOWNLOAD_READ_BYTES
        tuned.append("httpcore2 HTTP11Connection.READ_NUM_BYTES")
    return tuned


def default_workers() -> int:
    """Files downloaded at once: one per CPU core, 2 to 8. Each stream costs CPU (reading, hashing), so on few
    cores fewer streams are faster (scripts/bench_provision.py)."""
    return max(2, min(8, usable_cpus()))


def fetch(root: Path, the_plan: Plan, remote: Remote, reporter: Reporter, workers: int | None = None) -> list[ItemResult]:
    """Carry out a plan: download what is missing, verify it, write refs and the lock. Never raises per entry.

    Every file of every entry goes into one pool of `workers` (default_workers()), so one entry's big file does
    not hold up the next entry. Each entry is provisioned under its own inter-process lock: a second
    cache-models run waits for the entry, then finds it complete.
    """
    tune_downloads()
    workers = workers or default_workers()
    results: dict[str, ItemResult] = {}
    owners: dict[str, Future] = {}
    todo = [p for p in the_plan.items if p.action == "fetch"]
    with ThreadPoolExecutor(max_workers=workers) as files, ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
        for p in the_plan.items:
            if p.action == "error":
                results[p.key] = ItemResult(p.key, False, message=p.error or "")
            elif p.action == "cached":
                results[p.key] = ItemResult(p.key, True, message="cached")
            else:
                owners[p.key] = pool.submit(_provision_entry, root, p, remote, reporter, files)
        for key, future in owners.items():
            results[key] = future.result()
    return [results[p.key] for p in the_plan.items]


def _provision_entry(root: Path, p: ItemPlan, remote: Remote, reporter: Reporter, files: ThreadPoolExecutor) -> ItemResult:
    """One entry, under its lock: re-judge it from disk (another run may have done it meanwhile), fetch, record."""
    entry = p.entry
    with cache.cache_lock(root, f"entry-{p.key}"):
        state = entry.state(root, cache.read_lock(root))
        p = cached(entry, state) if state.status == "complete" else entry.remaining(root, p, state)
        if p.action == "cached":
            return ItemResult(p.key, True, message="cached (by another cache-models run)")
        problems: list[str] = []
        for future in entry.start(root, p, remote, reporter, files):
            try:
                problem = future.result()
            except Exception as exc:  # noqa: BLE001 - one file's failure is reported with the others
                problem = entry.describe_error(exc, remote)
            if problem:
                problems.append(problem)
        if problems:
            return ItemResult(p.key, False, message="; ".join(dict.fromkeys(problems)))
        return entry.finish(root, p)


def fetch_hub_file(root: Path, key: str, repo: str, commit: str, f: RemoteFile, remote: Remote, reporter: Reporter) -> str | None:
    """Download one file through huggingface_hub and check it against the hub's id; a problem line or None."""
    from huggingface_hub import hf_hub_download

    hasher = StreamHasher(cache.repo_dir(root, repo) / "blobs", f.etag, f.hash_kind, f.size)
    local = hf_hub_download(
        repo,
        f.path,
        revision=commit,
        cache_dir=cache.hub_dir(root),
        endpoint=remote.endpoint,
        token=remote.token or False,
        tqdm_class=_tqdm_for(reporter, key, f.path, hasher),
    )
    reporter.file_done(key, f.path)
    actual = hasher.result()
    if actual != f.etag:  # not streamed (the blob was already there), or off: the file itself decides
        actual = cache.file_hash(Path(local), f.hash_kind)
    if actual != f.etag:
        drop_file(root, repo, commit, f.path)
        return f"{f.path}: downloaded {f.hash_kind} {actual[:12]} is not the hub's {f.etag[:12]}"
    return None


def drop_file(root: Path, repo: str, commit: str, path: str) -> None:
    """Remove a snapshot file and the blob it points to, so the next download fetches it afresh."""
    link = cache.snapshot_dir(root, repo, commit) / path
    with contextlib.suppress(FileNotFoundError):
        blob = link.resolve(strict=True)
        if cache.repo_dir(root, repo) in blob.parents:
            blob.unlink()
    with contextlib.suppress(FileNotFoundError):
        link.unlink()


class StreamHasher:
    """Hashes a file while huggingface_hub downloads it, reading its temporary blob as it grows, so checking a
    download needs no second pass over its bytes once it is complete.

    The temporary blob is `blobs/<etag>.<random>.incomplete` (huggingface_hub 1.x+; `<etag>.incomplete` before),
    created before the progress bar. huggingface_hub reports each chunk to the bar just before writing it, from the
    downloading thread, so a read here sees whole written chunks; the descriptor still reads the same file after it
    is renamed into place. `result()` is None unless exactly the file's bytes went through the hash (no single
    temporary blob found, a download restarted from zero, ...): then the caller hashes the final file."""

    def __init__(self, blobs: Path, etag: str, kind: str, size: int):
        self.blobs, self.etag, self.size, self.read = blobs, etag, size, 0
        self.digest = hashlib.sha256() if kind == "sha256" else hashlib.sha1(f"blob {size}\0".encode())
        self.file = None

    def start(self) -> None:
        found = list(self.blobs.glob(f"{self.etag}.*.incomplete")) + list(self.blobs.glob(f"{self.etag}.incomplete"))
        try:
            self.file = open(found[0], "rb") if len(found) == 1 else None
        except OSError:
            self.file = None

    def catch_up(self) -> None:
        """Hash what has been written so far (called for every chunk huggingface_hub reports)."""
        if self.file is None:
            return
        while chunk := self.file.read(CHUNK):
            self.digest.update(chunk)
            self.read += len(chunk)

    def result(self) -> str | None:
        if self.file is None:
            return None
        self.catch_up()
        self.file.close()
        self.file = None
        return self.digest.hexdigest() if self.read == self.size else None


def _tqdm_for(reporter: Reporter, key: str, path: str, hasher: StreamHasher | None = None) -> type:
    """A tqdm-compatible class that forwards huggingface_hub's byte counts to our reporter (and lets `hasher`
    hash what has been written)."""

    class Bar:
        def __init__(self, *args, total=None, initial=0, **kwargs):
            reporter.file_started(key, path, int(total or 0))
            if hasher is not None:
                hasher.start()
            if initial:
                reporter.advance(key, path, int(initial))

        def update(self, n=1):
            if n:
                reporter.advance(key, path, int(n))
                if hasher is not None:
                    hasher.catch_up()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def close(self):
            pass

        def set_postfix_str(self, *args, **kwargs):
            pass

        def refresh(self, *args, **kwargs):
            pass

    return Bar
