"""Plan, download, verify, repair, register and clear catalog entries in the project cache.

Planning is separate from doing: `plan()` decides per entry what is cached and what must be fetched (with exact
sizes from the hub's tree listing), `fetch()` carries a plan out. An entry that is complete on disk is judged from
local files only: no request, no huggingface_hub import. Every hub byte goes through huggingface_hub.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from . import cache, derive
from .cache import LocalState, RemoteFile
from .catalog import COMMIT_RE, Asset, Item, Model
from .settings import VENV_ROOT
from .errors import BadInput

DISK_MARGIN = 256 << 20  # keep this much free after a download
LFS_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".ckpt", ".npz", ".model", ".msgpack", ".h5", ".onnx")


class ProvisionError(BadInput):
    """A request that cannot be carried out as asked (bad input): exit code 2 at the CLI."""


class Reporter(Protocol):
    """Receives progress; the CLI renders it as rich bars on a terminal and as plain lines otherwise."""

    def file_started(self, key: str, path: str, size: int) -> None: ...
    def advance(self, key: str, path: str, nbytes: int) -> None: ...
    def file_done(self, key: str, path: str) -> None: ...


# ---- the hub connection (created only when something must be asked online) ----------------------------------


@dataclass(frozen=True)
class Remote:
    """Where and as whom to download: hub endpoint, token (memory only), asset mirror."""

    endpoint: str | None = None
    token: str | None = None
    asset_mirror: str | None = None

    @property
    def hub_url(self) -> str:
        return (self.endpoint or "https://huggingface.co").rstrip("/")

    def api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self.token or False)


def describe_hub_error(exc: BaseException, item: Model, remote: Remote) -> str:
    """One line saying what went wrong with a hub request and what to do about it."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = f"{remote.hub_url}/{item.repo}"
    if isinstance(exc, GatedRepoError):
        return gated_message(item, remote, have_token=bool(remote.token))
    if isinstance(exc, RepositoryNotFoundError):
        return f"{item.repo} not found on {remote.hub_url} (or private: a token with access is needed)"
    if isinstance(exc, RevisionNotFoundError):
        return f"{item.repo} has no revision {item.revision} ({page})"
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        return f"hub answered HTTP {status} for {item.repo}: {str(exc).splitlines()[0]}"
    return f"cannot download {item.repo} from {remote.hub_url}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def gated_message(item: Model, remote: Remote, have_token: bool) -> str:
    page = f"{remote.hub_url}/{item.repo}"
    if have_token:
        return f"{item.repo} is gated and this token has no access: accept its licence at {page} with the account of the token"
    return (
        f"{item.repo} is gated: accept its licence at {page}, then give a token "
        "(export HF_TOKEN=hf_... or `hf auth login`)"
    )


# ---- plans ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemPlan:
    """What one catalog entry needs: the files its loader requests and which of them must be fetched."""

    item: Item
    state: LocalState
    commit: str | None = None
    needed: tuple[RemoteFile, ...] = ()
    to_fetch: tuple[RemoteFile, ...] = ()
    tree: dict[str, RemoteFile] = field(default_factory=dict, compare=False, repr=False)
    error: str | None = None

    @property
    def action(self) -> str:
        if self.error:
            return "error"
        return "fetch" if self.to_fetch or self.state.status != "complete" else "cached"

    @property
    def bytes_needed(self) -> int:
        return sum(f.size for f in self.needed)

    @property
    def bytes_to_fetch(self) -> int:
        return sum(f.size for f in self.to_fetch)


@dataclass(frozen=True)
class Plan:
    items: tuple[ItemPlan, ...]
    free_bytes: int
    warnings: tuple[str, ...] = ()

    @property
    def bytes_to_fetch(self) -> int:
        return sum(p.bytes_to_fetch for p in self.items if p.action == "fetch")

    @property
    def fits(self) -> bool:
        return self.bytes_to_fetch == 0 or self.bytes_to_fetch + DISK_MARGIN <= self.free_bytes


def free_bytes(root: Path) -> int:
    """Free space on the file system that holds (or will hold) the cache root."""
    probe = root
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def plan(root: Path, items: list[Item], remote: Remote | None, warnings: tuple[str, ...] = ()) -> Plan:
    """Per entry: cached (judged locally), or the exact files to fetch (asked of the hub only then)."""
    lock = cache.read_lock(root)
    # entries that need the hub ask it side by side: each costs a round trip or two (revision, tree listing)
    with ThreadPoolExecutor(max_workers=8) as pool:
        plans = list(pool.map(lambda item: plan_item(root, item, lock, remote), items))
    return Plan(tuple(plans), free_bytes(root), warnings)


def plan_item(root: Path, item: Item, lock: dict, remote: Remote | None) -> ItemPlan:
    state = cache.item_state(root, item, lock)
    if state.status == "complete":
        return ItemPlan(item, state, state.commit, state.needed)
    if remote is None:
        return ItemPlan(item, state, state.commit, state.needed, error="not cached (offline: nothing can be fetched)")
    if isinstance(item, Asset):
        return _plan_asset(root, item, state, lock, remote)
    if item.gated and not remote.token:
        return ItemPlan(item, state, error=gated_message(item, remote, have_token=False))
    try:
        return _plan_model(root, item, state, lock, remote)
    except Exception as exc:  # noqa: BLE001 - one model's failure must not stop the others
        return ItemPlan(item, state, error=describe_hub_error(exc, item, remote))


def _plan_model(root: Path, model: Model, state: LocalState, lock: dict, remote: Remote) -> ItemPlan:
    from huggingface_hub import RepoFile, get_hf_file_metadata, hf_hub_url

    api = remote.api()
    commit = model.revision if model.pinned else api.model_info(model.repo, revision=model.revision).sha
    tree = cache.read_tree(root, model.repo, commit)
    if tree is None:
        tree = {
            f.path: RemoteFile(f.path, f.size, f.blob_id, f.lfs.sha256 if f.lfs else None)
            for f in api.list_repo_tree(model.repo, revision=commit, recursive=True)
            if isinstance(f, RepoFile)
        }
    needed = cache.needed_files(model, tree)
    if not needed:
        error = f"no file of {model.repo}@{commit[:8]} matches the catalog patterns {list(model.files)}"
        return ItemPlan(model, state, commit, error=error)
    snapshot = cache.snapshot_dir(root, model.repo, commit)
    to_fetch = tuple(f for f in needed if cache.local_file_size(snapshot, f.path) != f.size)
    if model.gated and to_fetch:
        # One HEAD tells whether this token may download, before any byte of a big repo is fetched.
        get_hf_file_metadata(hf_hub_url(model.repo, to_fetch[0].path, revision=commit, endpoint=remote.endpoint), token=remote.token)
    return ItemPlan(model, state, commit, tuple(needed), to_fetch, tree)


def _plan_asset(root: Path, asset: Asset, state: LocalState, lock: dict, remote: Remote) -> ItemPlan:
    url = asset.url(remote.asset_mirror)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30) as response:
            size = int(response.headers.get("Content-Length") or asset.size)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return ItemPlan(asset, state, error=f"cannot reach {url}: {exc}")
    remote_file = RemoteFile(asset.path, size, "", asset.sha256 or None)
    return ItemPlan(asset, state, asset.sha256 or None, (remote_file,), (remote_file,))


# ---- fetching ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemResult:
    key: str
    ok: bool
    fetched_bytes: int = 0
    message: str = ""


# huggingface_hub reads a body 64 KiB per recv (httpcore) and regroups it into 10 MiB pieces (BytesIO, getvalue,
# slices): about 4 ms of CPU per MB. 1 MiB reads handed on as 1 MiB pieces cost about 40 % less
# (scripts/bench_provision.py), which pays for hashing every byte as it arrives. Only this process, only speed:
# where a pinned version lacks a knob, downloads run as shipped (tests/test_provision.py checks both exist).
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
    """Files downloaded at once: one per CPU core, 2 to 8. Each stream costs CPU (reading, hashing); on 2 cores, 2
    streams beat 8 by about 20 % (scripts/bench_provision.py)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
    return max(2, min(8, cores))


def fetch(root: Path, the_plan: Plan, remote: Remote, reporter: Reporter, workers: int | None = None) -> list[ItemResult]:
    """Carry out a plan: download what is missing, verify it, write refs and the lock. Never raises per entry.

    Every file of every entry goes into one pool of `workers` (default_workers()), so one entry's big file does
    not hold up the next entry; each file is hashed as it is written (StreamHasher). Each entry is provisioned
    under its own inter-process lock: a second cache-models run waits for the entry, then finds it complete.
    """
    tune_downloads()
    workers = workers or default_workers()
    results: dict[str, ItemResult] = {}
    entries: dict[str, Future] = {}
    todo = [p for p in the_plan.items if p.action == "fetch"]
    with ThreadPoolExecutor(max_workers=workers) as files, ThreadPoolExecutor(max_workers=max(1, len(todo))) as owners:
        for p in the_plan.items:
            key = p.item.key
            if p.action == "error":
                results[key] = ItemResult(key, False, message=p.error or "")
            elif p.action == "cached":
                results[key] = ItemResult(key, True, message="cached")
            else:
                entries[key] = owners.submit(_provision_entry, root, p, remote, reporter, files)
        for key, future in entries.items():
            results[key] = future.result()
    return [results[p.item.key] for p in the_plan.items]


def _provision_entry(root: Path, p: ItemPlan, remote: Remote, reporter: Reporter, files: ThreadPoolExecutor) -> ItemResult:
    """One entry, under its lock: re-judge it from disk (another run may have done it meanwhile), then fetch."""
    with cache.cache_lock(root, f"entry-{p.item.key}"):
        p = _replan(root, p)
        if p.action == "cached":
            return ItemResult(p.item.key, True, message="cached (by another cache-models run)")
        if isinstance(p.item, Asset):
            futures = [files.submit(_fetch_asset, root, p, remote, reporter)]
        else:
            _prepare_model(root, p)
            futures = [files.submit(_fetch_file, root, p, f, remote, reporter) for f in p.to_fetch]
        return _collect(root, p, futures, remote)


def _replan(root: Path, p: ItemPlan) -> ItemPlan:
    """The plan for an entry as the disk is now: complete, or the files still missing (from the planned list)."""
    state = cache.item_state(root, p.item, cache.read_lock(root))
    if state.status == "complete":
        return ItemPlan(p.item, state, state.commit, state.needed)
    if isinstance(p.item, Asset) or not p.commit:
        return p
    snapshot = cache.snapshot_dir(root, p.item.repo, p.commit)
    to_fetch = tuple(f for f in p.needed if cache.local_file_size(snapshot, f.path) != f.size)
    return ItemPlan(p.item, state, p.commit, p.needed, to_fetch, p.tree)


def _collect(root: Path, p: ItemPlan, futures: list[Future], remote: Remote) -> ItemResult:
    """Wait for an entry's downloads; finish it (refs, lock) if all went well, else say what failed."""
    problems: list[str] = []
    for future in futures:
        try:
            outcome = future.result()
        except Exception as exc:  # noqa: BLE001
            item = p.item
            problems.append(describe_hub_error(exc, item, remote) if isinstance(item, Model) else str(exc))
            continue
        if isinstance(outcome, ItemResult):  # an asset: fetched and recorded as one piece
            return outcome
        if outcome:
            problems.append(outcome)
    if problems:
        return ItemResult(p.item.key, False, message="; ".join(dict.fromkeys(problems)))
    assert isinstance(p.item, Model) and p.commit
    return _finish_model(root, p.item, p.commit, list(p.needed), p.bytes_to_fetch)


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
        while chunk := self.file.read(cache.CHUNK):
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


def _prepare_model(root: Path, p: ItemPlan) -> None:
    """Record the tree listing, and drop files that are there with the wrong size (hf_hub_download would trust them)."""
    model = p.item
    assert isinstance(model, Model) and p.commit
    cache.write_tree(root, model.repo, p.commit, p.tree)
    snapshot = cache.snapshot_dir(root, model.repo, p.commit)
    for f in p.to_fetch:
        if cache.local_file_size(snapshot, f.path) is not None:
            _drop_file(root, model.repo, p.commit, f.path)


def _fetch_file(root: Path, p: ItemPlan, f: RemoteFile, remote: Remote, reporter: Reporter) -> str | None:
    """Download one file through huggingface_hub and check it against the hub's id; a problem line or None."""
    from huggingface_hub import hf_hub_download

    model = p.item
    assert isinstance(model, Model) and p.commit
    hasher = StreamHasher(cache.repo_dir(root, model.repo) / "blobs", f.etag, f.hash_kind, f.size)
    local = hf_hub_download(
        model.repo,
        f.path,
        revision=p.commit,
        cache_dir=cache.hub_dir(root),
        endpoint=remote.endpoint,
        token=remote.token or False,
        tqdm_class=_tqdm_for(reporter, model.key, f.path, hasher),
    )
    reporter.file_done(model.key, f.path)
    actual = hasher.result()
    if actual != f.etag:  # not streamed (the blob was already there), or off: the file itself decides
        actual = cache.file_hash(Path(local), f.hash_kind)
    if actual != f.etag:
        _drop_file(root, model.repo, p.commit, f.path)
        return f"{f.path}: downloaded {f.hash_kind} {actual[:12]} is not the hub's {f.etag[:12]}"
    return None


def _finish_model(root: Path, model: Model, commit: str, needed: list[RemoteFile], fetched: int) -> ItemResult:
    """Write the refs loaders ask for and record the entry in the lock, once every file is in place."""
    snapshot = cache.snapshot_dir(root, model.repo, commit)
    absent = [f.path for f in needed if cache.local_file_size(snapshot, f.path) != f.size]
    if absent:
        return ItemResult(model.key, False, fetched, f"still missing after download: {', '.join(absent)}")
    cache.write_ref(root, model.repo, "main" if model.pinned else model.revision, commit)
    cache.update_lock(root, "models", model.key, cache.model_lock_entry(model, commit, needed))
    return ItemResult(model.key, True, fetched, f"{model.repo}@{commit[:8]}")


def _drop_file(root: Path, repo: str, commit: str, path: str) -> None:
    """Remove a snapshot file and the blob it points to, so the next download fetches it afresh."""
    link = cache.snapshot_dir(root, repo, commit) / path
    with contextlib.suppress(FileNotFoundError):
        blob = link.resolve(strict=True)
        if cache.repo_dir(root, repo) in blob.parents:
            blob.unlink()
    with contextlib.suppress(FileNotFoundError):
        link.unlink()


def _fetch_asset(root: Path, p: ItemPlan, remote: Remote, reporter: Reporter) -> ItemResult:
    asset = p.item
    assert isinstance(asset, Asset)
    url = asset.url(remote.asset_mirror)
    dest = root / asset.dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    recorded = cache.read_lock(root)["assets"].get(asset.key, {})
    expected = asset.sha256 or recorded.get("sha256")
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix="." + dest.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0)
            reporter.file_started(asset.key, asset.path, total)
            while chunk := response.read(cache.CHUNK):
                out.write(chunk)
                digest.update(chunk)
                reporter.advance(asset.key, asset.path, len(chunk))
        size = os.path.getsize(tmp)
        if total and size != total:
            raise OSError(f"{url}: got {size} of {total} bytes")
        if expected and digest.hexdigest() != expected:
            raise OSError(f"{url}: sha256 {digest.hexdigest()} does not match the expected {expected}")
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    reporter.file_done(asset.key, asset.path)
    members = _unpack(dest) if asset.unpack else {}
    entry = {"url": url, "dest": asset.dest, "size": size, "sha256": digest.hexdigest(), "members": members}
    cache.update_lock(root, "assets", asset.key, entry)
    return ItemResult(asset.key, True, size, asset.dest)


def _unpack(archive: Path) -> dict[str, dict]:
    """Extract a zip beside itself (each member replaced atomically); return members with size and sha256."""
    members = {}
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            if info.is_dir():
                continue
            target = (archive.parent / info.filename).resolve()
            if archive.parent.resolve() not in target.parents:
                raise OSError(f"{archive.name}: member {info.filename} escapes the folder")
            data = z.read(info)
            cache.atomic_write(target, data)
            members[info.filename] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return members


# ---- verify and repair (offline) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FileProblem:
    path: str
    kind: str  # missing | truncated | corrupt
    detail: str = ""


@dataclass(frozen=True)
class VerifyResult:
    key: str
    status: str  # ok | problems | missing
    checked: int
    problems: tuple[FileProblem, ...] = ()


def expected_files(root: Path, item: Item, lock: dict) -> tuple[str | None, list[RemoteFile]]:
    """What an entry must hold, from the lock (what was provisioned), else from the cached tree listing."""
    if isinstance(item, Asset):
        entry = lock["assets"].get(item.key)
        if not entry:
            return None, []
        files = [RemoteFile(item.dest, entry["size"], "", entry["sha256"])]
        parent = str(Path(item.dest).parent)
        files += [RemoteFile(f"{parent}/{m}", i["size"], "", i["sha256"]) for m, i in entry["members"].items()]
        return entry["sha256"], files
    entry = lock["models"].get(item.key)
    if entry and entry.get("repo") == item.repo:
        files = [
            RemoteFile(f["path"], f["size"], f.get("git-sha1", ""), f.get("sha256")) for f in entry["files"]
        ]
        return entry["commit"], files
    state = cache.model_state(root, item, lock)
    return state.commit, list(state.needed)


def verify(root: Path, items: list[Item]) -> list[VerifyResult]:
    """Hash every file of every entry against the hub's ids (sha256 for LFS, git blob sha1 otherwise)."""
    lock = cache.read_lock(root)
    results = []
    for item in items:
        commit, files = expected_files(root, item, lock)
        if not files:
            results.append(VerifyResult(item.key, "missing", 0, (FileProblem("*", "missing", "not provisioned"),)))
            continue
        problems = []
        for f in files:
            path = _local_path(root, item, commit, f.path)
            problem = _check_file(path, f)
            if problem:
                problems.append(FileProblem(f.path, *problem))
        results.append(VerifyResult(item.key, "problems" if problems else "ok", len(files), tuple(problems)))
        derived = derive.expected_files(root, item, lock) if isinstance(item, Model) else None
        if derived is not None:
            folder, made = derived
            bad = tuple(FileProblem(f.path, *problem) for f in made if (problem := _check_file(folder / f.path, f)))
            results.append(VerifyResult(cache.derived_key(item), "problems" if bad else "ok", len(made), bad))
    return results


def _local_path(root: Path, item: Item, commit: str | None, path: str) -> Path:
    if isinstance(item, Asset):
        return root / path
    assert commit
    return cache.snapshot_dir(root, item.repo, commit) / path


def _check_file(path: Path, f: RemoteFile) -> tuple[str, str] | None:
    try:
        size = path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return ("missing", "dangling link" if path.is_symlink() else "")
    if size != f.size:
        return ("truncated" if size < f.size else "corrupt", f"{size} bytes, expected {f.size}")
    actual = cache.file_hash(path, f.hash_kind)
    if actual != f.etag:
        return ("corrupt", f"{f.hash_kind} {actual[:12]}…, expected {f.etag[:12]}…")
    return None


def repair(root: Path, items: list[Item], results: list[VerifyResult], remote: Remote, reporter: Reporter) -> list[ItemResult]:
    """Re-fetch only the files verify found missing, truncated or corrupt; re-provision entries never cached."""
    lock = cache.read_lock(root)
    by_key = {r.key: r for r in results}
    out = []
    for item in items:
        derived = by_key.get(cache.derived_key(item)) if isinstance(item, Model) else None
        if derived is not None and derived.status != "ok":
            derive.remove(root, item)
            ok, message = derive.convert(root, item, VENV_ROOT)
            out.append(ItemResult(derived.key, ok, 0, message))
        result = by_key.get(item.key)
        if result is None or result.status == "ok":
            continue
        commit, files = expected_files(root, item, lock)
        if isinstance(item, Asset) or result.status == "missing":
            if isinstance(item, Asset):
                with contextlib.suppress(FileNotFoundError):
                    (root / item.dest).unlink()
            single = plan(root, [item], remote)
            out += fetch(root, single, remote, reporter)
            continue
        assert commit
        bad = {pr.path for pr in result.problems}
        for path in bad:
            _drop_file(root, item.repo, commit, path)
        tree = cache.read_tree(root, item.repo, commit) or {f.path: f for f in files}
        needed = tuple(f for f in files if f.path in tree)
        to_fetch = tuple(f for f in needed if f.path in bad)
        p = ItemPlan(item, cache.model_state(root, item, lock), commit, needed, to_fetch, tree)
        out += fetch(root, Plan((p,), free_bytes(root)), remote, reporter)
    return out


# ---- clear -------------------------------------------------------------------------------------------------


def clear(root: Path, items: list[Item]) -> list[tuple[str, int]]:
    """Remove exactly these entries (files, blobs, refs, lock entries); return (key, bytes freed)."""
    freed = []
    with cache.cache_lock(root):
        lock = cache.read_lock(root)
    for item in items:
        if isinstance(item, Model):
            target = cache.repo_dir(root, item.repo)
            size = _tree_size(target)
            shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(cache.hub_dir(root) / ".locks" / target.name, ignore_errors=True)
            cache.update_lock(root, "models", item.key, None)
            if derive.wants_ct2(item):
                size += derive.remove(root, item)
        else:
            entry = lock["assets"].get(item.key, {})
            dest = root / item.dest
            paths = [dest] + [dest.parent / m for m in entry.get("members", {})]
            size = sum(p.stat().st_size for p in paths if p.is_file())
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            cache.update_lock(root, "assets", item.key, None)
        freed.append((item.key, size))
    return freed


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# ---- register files obtained elsewhere -----------------------------------------------------------------------


def looks_like_lfs(path: str, size: int) -> bool:
    """Whether the hub would store this file with LFS (then its ETag is the sha256)."""
    return size > 10 * (1 << 20) or path.endswith(LFS_SUFFIXES)


def lfs_pointer_sha1(sha256: str, size: int) -> str:
    """The git blob id the hub reports for an LFS file: the id of its pointer file."""
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    return hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()


def register_dir(root: Path, model: Model, source: Path, commit: str | None = None) -> ItemResult:
    """Copy a folder of model files into the cache as if downloaded: blobs by hash, snapshot links, refs, tree, lock."""
    if not source.is_dir():
        raise ProvisionError(f"--from-dir {source}: not a directory")
    files = sorted(
        p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file() and not p.name.startswith(".")
    )
    wanted = cache.select_paths(model, files)
    if not wanted:
        raise ProvisionError(f"--from-dir {source}: no file matches {model.key}'s patterns {list(model.files)}")
    commit = commit or (model.revision if model.pinned else None)
    if commit is None:
        raise ProvisionError(f"{model.key} is not pinned to a commit in the catalog: give --revision COMMIT")
    if not COMMIT_RE.match(commit):
        raise ProvisionError(f"--revision {commit}: not a 40-hex commit")
    entries: dict[str, RemoteFile] = {}
    blobs = cache.repo_dir(root, model.repo) / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot = cache.snapshot_dir(root, model.repo, commit)
    for rel in wanted:
        src = source / rel
        size = src.stat().st_size
        if looks_like_lfs(rel, size):
            sha = cache.sha256_file(src)
            f = RemoteFile(rel, size, lfs_pointer_sha1(sha, size), sha)
        else:
            f = RemoteFile(rel, size, cache.git_sha1_file(src))
        blob = blobs / f.etag
        if not (blob.is_file() and blob.stat().st_size == size):
            fd, tmp = tempfile.mkstemp(dir=blobs, prefix=f".{f.etag}", suffix=".incomplete")
            os.close(fd)
            shutil.copyfile(src, tmp)
            os.replace(tmp, blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
        entries[rel] = f
    existing = cache.read_tree(root, model.repo, commit) or {}
    cache.write_tree(root, model.repo, commit, {**existing, **entries})
    return _finish_model(root, model, commit, list(entries.values()), 0)
