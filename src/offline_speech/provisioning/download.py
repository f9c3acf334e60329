"""The download engine: one pool of file downloads for a whole plan, each file hashed as it is written, stopped
promptly by Ctrl-C and resumed by the next run.

Every hub byte goes through huggingface_hub (`fetch_hub_file`); this module tunes its read sizes, forwards its
progress to our reporter (a tqdm-compatible shim) and hashes each file while it grows (`StreamHasher`), so a
download is checked against the hub's id without a second pass over its bytes.

Ctrl-C: the downloads run on daemon threads (pool.py); the first Ctrl-C fails every unfinished download at once,
waits only for the entries being recorded, and holds the cache's metadata lock until the process exits, so no
thread can leave half a lock write behind (further Ctrl-Cs are ignored while it winds down, well under a second).
Nothing is recorded for an entry that did not finish: no lock entry, no refs. Each download thread stops at its
next chunk, or ends with the process.

Resume: a partial download keeps its bytes under `blobs/<etag>.incomplete` (the name huggingface_hub < 1 resumed
from). huggingface_hub >= 1 downloads into `blobs/<etag>.<random>.incomplete`, unique per process and deleted when a
download fails: on Ctrl-C the download thread hard-links it to `<etag>.incomplete` before it stops; after a kill -9
the next run adopts the largest `<etag>.*.incomplete` (under huggingface_hub's own per-blob lock,
`.locks/models--ORG--NAME/<etag>.lock`, so never a file another process is still writing). The next run fetches only
the rest with a Range request (`http_get`) and moves the file into `blobs/<etag>` only once all its bytes hash to the
hub's id; a partial whose bytes are wrong fails that check, is deleted, and the file is fetched afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .. import cache
from ..cache import RemoteFile
from ..errors import Interrupted, StateError
from ..util import CHUNK, usable_cpus
from ..verified import record_file
from .contract import ItemPlan, ItemResult, Plan, Reporter
from .plan import cached
from .remote import Remote

if TYPE_CHECKING:  # concurrent.futures is imported only by a run that downloads (a fast start elsewhere)
    from concurrent.futures import Executor, Future

    from .pool import DaemonPool

# Seconds a Ctrl-C waits for entries being recorded (refs, lock: milliseconds) before the run ends.
WIND_DOWN_SECONDS = 1.0
# The cache metadata locks a Ctrl-C took, held until this process exits (see fetch).
_HELD_UNTIL_EXIT = contextlib.ExitStack()


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


def require_writable(root: Path) -> None:
    """Refuse in one line (exit 2) to provision a cache this process cannot write: a team's shared cache mounted
    read-only, or another user's. Reading it (--info, --verify, run-pipeline) needs no write."""
    existing = next(p for p in (root, *root.parents) if p.exists())
    if os.access(existing, os.W_OK):
        return
    why = "a read-only file system" if os.statvfs(existing).f_flag & os.ST_RDONLY else "no write permission"
    raise StateError(
        f"cannot write to the cache {root} ({why}): provisioning needs a writable cache; a shared "
        "read-only cache is provisioned where it is writable, or give --cache-dir a folder you can write"
    )


def default_workers() -> int:
    """Files downloaded at once: one per CPU core, 2 to 8. Each stream costs CPU (reading, hashing), so on few
    cores fewer streams are faster (scripts/bench_provision.py)."""
    return max(2, min(8, usable_cpus()))


def fetch(
    root: Path, the_plan: Plan, remote: Remote, reporter: Reporter, workers: int | None = None
) -> list[ItemResult]:
    """Carry out a plan: download what is missing, verify it, write refs and the lock. Never raises per entry.

    Every file of every entry goes into one pool of `workers` (default_workers()), so one entry's big file does
    not hold up the next entry. Each entry is provisioned under its own inter-process lock: a second
    cache-models run waits for the entry, then finds it complete. A Ctrl-C (KeyboardInterrupt) winds down as the
    module's docstring says, then propagates.
    """
    from .pool import DaemonPool

    tune_downloads()
    workers = workers or default_workers()
    results: dict[str, ItemResult] = {}
    owners: dict[str, Future] = {}
    todo = [p for p in the_plan.items if p.action == "fetch"]
    stop = threading.Event()
    files, pool = DaemonPool(workers, "download"), DaemonPool(len(todo), "entry")
    stoppable = StoppableReporter(reporter, stop)
    previous = _interrupt_once()
    try:
        for p in the_plan.items:
            if p.action == "error":
                results[p.key] = ItemResult(p.key, False, message=p.error or "")
            elif p.action == "cached":
                results[p.key] = ItemResult(p.key, True, message="cached")
            else:
                owners[p.key] = pool.submit(_provision_entry, root, p, remote, stoppable, files, stop)
        for key, future in owners.items():
            results[key] = future.result()
    except KeyboardInterrupt:
        _wind_down(root, stop, files, pool)
        raise
    finally:
        files.shutdown(wait=False)
        pool.shutdown(wait=False)
    if previous is not None:
        signal.signal(signal.SIGINT, previous)
    return [results[p.key] for p in the_plan.items]


def _raise_once(signum, frame) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # first thing: a second Ctrl-C is ignored by the OS from here on
    raise KeyboardInterrupt


def _interrupt_once():
    """While fetching, Ctrl-C raises KeyboardInterrupt exactly once: two Ctrl-C back to back (a terminal's process
    group, an impatient user) used to raise a second one inside the wind-down, leaving the run hung on a lock
    the first one had half released. Returns the handler to restore, or None off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, _raise_once)


def _wind_down(root: Path, stop: threading.Event, files: DaemonPool, entries: DaemonPool) -> None:
    """After a Ctrl-C: stop every download now, let entries being recorded finish, and keep the cache's metadata
    lock from here to the process's exit, so a thread still running then cannot be cut off in a lock write."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run is ending: a second Ctrl-C must not cut this short
    stop.set()
    files.interrupt()
    entries.shutdown(wait=True, timeout=WIND_DOWN_SECONDS)
    _HELD_UNTIL_EXIT.enter_context(cache.cache_lock(root))


class StoppableReporter:
    """Forwards progress to the caller's reporter and raises `Interrupted` in the download thread once stopped."""

    def __init__(self, reporter: Reporter, stop: threading.Event):
        self.reporter, self.stop = reporter, stop

    def _check(self) -> None:
        if self.stop.is_set():
            raise Interrupted()

    def file_started(self, key: str, path: str, size: int) -> None:
        self._check()
        self.reporter.file_started(key, path, size)

    def advance(self, key: str, path: str, nbytes: int) -> None:
        self._check()
        self.reporter.advance(key, path, nbytes)

    def file_done(self, key: str, path: str) -> None:
        self._check()
        self.reporter.file_done(key, path)


def _provision_entry(
    root: Path, p: ItemPlan, remote: Remote, reporter: Reporter, files: Executor, stop: threading.Event
) -> ItemResult:
    """One entry, under its lock: re-judge it from disk (another run may have done it meanwhile), fetch, record
    (unless the run was stopped meanwhile)."""
    entry = p.entry
    with cache.entry_lock(root, p.key):
        if stop.is_set():
            return ItemResult(p.key, False, message="interrupted")
        state = entry.state(root, cache.read_lock(root))
        p = cached(entry, state) if state.status == "complete" else entry.remaining(root, p, state)
        if p.action == "cached":
            return ItemResult(p.key, True, message="cached (by another cache-models run)")
        problems: list[str] = []
        for future in entry.start(root, p, remote, reporter, files):
            try:
                problem = future.result()
            except Exception as exc:  # one file's failure is reported with the others
                problem = entry.describe_error(exc, remote)
            if problem:
                problems.append(problem)
        if stop.is_set():
            return ItemResult(p.key, False, message="interrupted")
        if problems:
            return ItemResult(p.key, False, message="; ".join(dict.fromkeys(problems)))
        return entry.finish(root, p)


def fetch_hub_file(
    root: Path, key: str, repo: str, commit: str, f: RemoteFile, remote: Remote, reporter: Reporter
) -> str | None:
    """Download one file through huggingface_hub (the rest of it, when an earlier run left part of it) and check it
    against the hub's id; a problem line or None."""
    from huggingface_hub import hf_hub_download

    resumed = resume_partial(root, key, repo, commit, f, remote, reporter)
    hasher = StreamHasher(cache.repo_dir(root, repo) / "blobs", f.etag, f.hash_kind, f.size)
    local = hf_hub_download(  # with the blob in place (resumed), this only links it into the snapshot
        repo,
        f.path,
        revision=commit,
        cache_dir=cache.hub_dir(root),
        endpoint=remote.endpoint,
        token=remote.token or False,
        tqdm_class=_tqdm_for(reporter, key, f.path, hasher),
    )
    reporter.file_done(key, f.path)
    if resumed:  # its bytes were checked before it entered the cache
        record_file(root, Path(local), f.etag)
        return None
    actual = hasher.result()
    if actual != f.etag:  # not streamed (the blob was already there), or off: the file itself decides
        actual = cache.file_hash(Path(local), f.hash_kind)
    if actual != f.etag:
        drop_file(root, repo, commit, f.path)
        return f"{f.path}: downloaded {f.hash_kind} {actual[:12]} is not the hub's {f.etag[:12]}"
    record_file(root, Path(local), f.etag)  # the cached check will not hash it again while it is unchanged
    return None


def resume_partial(
    root: Path, key: str, repo: str, commit: str, f: RemoteFile, remote: Remote, reporter: Reporter
) -> bool:
    """Finish a partial download an earlier run left (see the module's docstring) with a Range request through
    huggingface_hub's `http_get`; True once the whole file hashed to the hub's id and is in `blobs/<etag>`.
    False when there is nothing to resume, or when the partial's bytes were wrong (it is deleted: the caller then
    downloads the file afresh)."""
    blobs = cache.repo_dir(root, repo) / "blobs"
    if not blobs.is_dir() or (blobs / f.etag).exists() or not any(blobs.glob(f"{f.etag}*.incomplete")):
        return False
    from huggingface_hub import hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import WeakFileLock, build_hf_headers

    lock = cache.hub_dir(root) / ".locks" / blobs.parent.name / f"{f.etag}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(lock):  # the lock hf_hub_download takes for this blob: no one else writes its partials
        partial = gather_partial(blobs, f.etag, f.size)
        if partial is None or (blobs / f.etag).exists():
            return False
        hasher = StreamHasher(blobs, f.etag, f.hash_kind, f.size, path=partial)
        with open(partial, "r+b") as out:
            out.seek(0, os.SEEK_END)
            http_get(
                hf_hub_url(repo, f.path, revision=commit, endpoint=remote.endpoint),
                out,
                resume_size=out.tell(),
                headers=build_hf_headers(token=remote.token or False),
                expected_size=f.size,
                tqdm_class=_tqdm_for(reporter, key, f.path, hasher),
            )
        actual = hasher.result() or cache.file_hash(partial, f.hash_kind)
        if actual != f.etag:
            partial.unlink()
            return False
        os.replace(partial, blobs / f.etag)
        return True


def gather_partial(blobs: Path, etag: str, size: int) -> Path | None:
    """The partial download of blob `etag` to resume, as `blobs/<etag>.incomplete`: the largest of those earlier
    runs left (no bigger than the file); the others are deleted. None when there is none worth resuming."""
    resumable = blobs / f"{etag}.incomplete"
    sizes = {p: n for p in {resumable, *blobs.glob(f"{etag}.*.incomplete")} if (n := _size_or_none(p)) is not None}
    best = max((p for p, n in sizes.items() if 0 < n <= size), key=sizes.__getitem__, default=None)
    for p in sizes:
        if p != best:
            p.unlink(missing_ok=True)
    if best is None:
        return None
    os.replace(best, resumable)
    return resumable


def _size_or_none(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def drop_file(root: Path, repo: str, commit: str, path: str) -> None:
    """Remove a damaged snapshot file and the blob it links to, so the next download fetches it afresh. Links are
    removed, never followed further: a blob replaced by a link loses the link, and what it points to (another blob,
    a file outside the cache) is left as it is. The one exception is huggingface_hub's own link into the shared
    store: its payload is what was found damaged, and huggingface_hub would link it again by its size alone, so
    it goes too (every repo linking it had the same damaged bytes)."""
    link = cache.snapshot_dir(root, repo, commit) / path
    with contextlib.suppress(OSError):
        blob = cache.link_target(link)
        if blob.parent == Path(os.path.normpath(cache.repo_dir(root, repo) / "blobs")):
            if (payload := cache.store_target(root, blob)) is not None and payload.is_file():
                with cache.store_lock(payload):
                    payload.unlink(missing_ok=True)
            blob.unlink()
    with contextlib.suppress(FileNotFoundError):
        link.unlink()


class StreamHasher:
    """Hashes a file while huggingface_hub downloads it, reading its temporary blob as it grows, so checking a
    download needs no second pass over its bytes once it is complete.

    The temporary blob is `blobs/<etag>.<random>.incomplete` (huggingface_hub 1.x+; `<etag>.incomplete` before),
    created before the progress bar; a resumed download names its partial (`path`), whose bytes so far are hashed
    first. huggingface_hub reports each chunk to the bar just before writing it, from the downloading thread, so a
    read here sees whole written chunks; the descriptor still reads the same file after it is renamed into place.
    `result()` is None unless exactly the file's bytes went through the hash (no single temporary blob found, a
    download restarted from zero, ...): then the caller hashes the final file."""

    def __init__(self, blobs: Path, etag: str, kind: str, size: int, path: Path | None = None):
        self.blobs, self.etag, self.size, self.read, self.path = blobs, etag, size, 0, path
        self.digest = hashlib.sha256() if kind == "sha256" else hashlib.sha1(f"blob {size}\0".encode())
        self.file = None

    def start(self) -> None:
        if self.path is None:
            found = list(self.blobs.glob(f"{self.etag}.*.incomplete")) + list(
                self.blobs.glob(f"{self.etag}.incomplete")
            )
            self.path = found[0] if len(found) == 1 else None
        try:
            self.file = open(self.path, "rb") if self.path is not None else None
        except OSError:
            self.file = None

    def catch_up(self) -> None:
        """Hash what has been written so far (called for every chunk huggingface_hub reports)."""
        if self.file is None:
            return
        while chunk := self.file.read(CHUNK):
            self.digest.update(chunk)
            self.read += len(chunk)

    def keep_partial(self) -> None:
        """Keep the bytes written so far as `blobs/<etag>.incomplete` for the next run to resume (huggingface_hub
        deletes its own temporary file when the download stops)."""
        resumable = self.blobs / f"{self.etag}.incomplete"
        if self.path is None or self.path == resumable:
            return
        with contextlib.suppress(OSError):
            link = self.path.with_name(self.path.name + ".kept")
            os.link(self.path, link)
            os.replace(link, resumable)

    def result(self) -> str | None:
        if self.file is None:
            return None
        self.catch_up()
        self.file.close()
        self.file = None
        return self.digest.hexdigest() if self.read == self.size else None


def abort_xet() -> None:
    """Stop every Xet transfer of this process now (Ctrl-C): hf-xet's downloads then fail in their threads.
    `abort_xet_session` is huggingface_hub's own Ctrl-C handling for Xet, a private name (utils/_xet.py);
    tests/test_provision.py checks it is there in the pinned version, and without it the process still ends."""
    try:
        from huggingface_hub.utils._xet import abort_xet_session
    except ImportError:
        return
    with contextlib.suppress(Exception):
        abort_xet_session()


def _tqdm_for(reporter: Reporter, key: str, path: str, hasher: StreamHasher | None = None) -> type:
    """A tqdm-compatible class that forwards huggingface_hub's byte counts to our reporter (and lets `hasher`
    hash what has been written). When the reporter raises `Interrupted` (Ctrl-C), the bytes written so far are
    kept for resume before the download stops.

    `update` counts bytes of the file written; `update_transfer` bytes received from the network. Having the
    latter tells huggingface_hub to report a Xet download on this one bar (without it, a Xet download opens a
    second bar for its network bytes, and the file counted twice: progress reached 197 %)."""

    class Bar:
        def __init__(self, *args, total=None, initial=0, **kwargs):
            # The download thread makes the bar; hf-xet reports a Xet download from threads of its own, through a
            # callback that only prints what it raises.
            self.owner = threading.get_ident()
            reporter.file_started(key, path, int(total or 0))
            if hasher is not None:
                hasher.start()
            if initial:
                reporter.advance(key, path, int(initial))

        def update(self, n=1):
            if not n:
                return
            try:
                reporter.advance(key, path, int(n))
            except Interrupted:
                if hasher is not None:
                    hasher.keep_partial()
                if threading.get_ident() != self.owner:  # raised into hf-xet it would be printed, not stop it:
                    abort_xet()  # end the Xet transfers instead
                    return
                raise
            if hasher is not None:
                hasher.catch_up()

        def update_transfer(self, n=1):
            pass  # network bytes: only its presence matters (one bar per Xet file); `update` counts the file

        def set_transfer_postfix_str(self, *args, **kwargs):
            pass

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
