"""The project cache on disk: hub layout, tree listings, the lock file and local (network-free) status.

"Complete" means every file an entry needs is there with its size AND its content: each file's hash is checked
through the verified index (verified.py), which re-hashes only a file whose stat changed since it was last
verified, so an unchanged cache costs a stat per file and a same-size corrupted blob is still caught.

Standard library only: the pipeline's preflight and every backend venv can import it.

Layout under the cache root (default <project>/.cache):
  huggingface/hub/models--ORG--NAME/{blobs,snapshots,refs,trees}   standard huggingface_hub layout
  huggingface/hub/blobs/<2 hex>/<xet hash>[.refs|.lock]              huggingface_hub's shared blob store (Xet files):
                                                                     a repo's blobs/<etag> may be a relative link here
  huggingface/xet/                                                   hf-xet's chunk cache and logs (HF_XET_CACHE)
  torch/hub/checkpoints/, nltk_data/                                 non-hub assets
  offline-speech.lock.json                                           what was provisioned: commits, files, hashes
  offline-speech/verified.json                                       the verified index (verified.py)
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .catalog import Asset, Item, Model
from .errors import StateError
from .util import atomic_write, git_sha1_file, path_kind, sha256_file, utc_now
from .verified import VerifiedIndex

LOCK_NAME = "offline-speech.lock.json"
LOCK_SCHEMA = 1
TREE_FORMAT_VERSION = 1  # huggingface_hub's trees/<commit>.json format


# ---- layout -------------------------------------------------------------------------------------------


def hub_dir(root: Path) -> Path:
    """The HF_HUB_CACHE inside a cache root."""
    return root / "huggingface" / "hub"


def repo_dir(root: Path, repo: str) -> Path:
    """The folder huggingface_hub uses for a model repo."""
    return hub_dir(root) / ("models--" + repo.replace("/", "--"))


def snapshot_dir(root: Path, repo: str, commit: str) -> Path:
    return repo_dir(root, repo) / "snapshots" / commit


# ---- huggingface_hub's shared blob store (utils/_shared_blobs.py): where Xet downloads keep their bytes -------

SHARED_MARKER = ".huggingface-shared-blobs"
_XET_HASH = re.compile(r"[0-9a-f]{64}")


def shared_store(root: Path) -> Path:
    """The cache-wide store of Xet files: `hub/blobs/<2 hex>/<xet hash>`, linked from each repo's `blobs/<etag>`."""
    return hub_dir(root) / "blobs"


def is_store_file(root: Path, path: Path) -> bool:
    """Whether `path` (normalised, not resolved) names a payload of the shared store: `blobs/<2 hex>/<64 hex>`."""
    path = Path(os.path.normpath(path))
    return (
        path.parent.parent == Path(os.path.normpath(shared_store(root)))
        and _XET_HASH.fullmatch(path.name) is not None
        and path.parent.name == path.name[:2]
    )


def link_target(link: Path) -> Path:
    """Where a symlink points, normalised but not resolved further (a link to a link stays visible)."""
    return Path(os.path.normpath(link.parent / os.readlink(link)))


def store_target(root: Path, blob: Path) -> Path | None:
    """The shared store payload a repo blob links to, None when the blob is not such a link."""
    try:
        target = link_target(blob)
    except OSError:
        return None
    return target if is_store_file(root, target) else None


def repo_blobs(root: Path) -> list[Path]:
    """Every repo blob entry of the cache (`models--*/blobs/*`), files and links alike."""
    return [p for p in hub_dir(root).glob("models--*/blobs/*") if not p.name.endswith(".incomplete")]


def store_users(root: Path, payload: Path, besides: Path | None = None) -> list[Path]:
    """The repo blobs that link to this shared store payload (the `.refs` manifests are only hints: every link is
    checked), leaving out those under `besides` (a repo being removed)."""
    payload = Path(os.path.normpath(payload))
    users = []
    for blob in repo_blobs(root):
        if besides is not None and besides in blob.parents:
            continue
        if blob.is_symlink() and store_target(root, blob) == payload:
            users.append(blob)
    return users


@contextlib.contextmanager
def store_lock(payload: Path) -> Iterator[None]:
    """huggingface_hub's own lock for one shared payload (`<hash>.lock`, flock), so publishing, linking and removing
    it never race with a download in another process."""
    fd = os.open(payload.with_name(payload.name + ".lock"), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def release_store_payloads(root: Path, payloads: set[Path], besides: Path | None = None) -> int:
    """Remove the shared payloads no repo blob (outside `besides`) links to any more, with their `.refs` and `.lock`;
    bytes freed. A payload still in use is never removed."""
    freed = 0
    for payload in sorted(payloads):
        if not payload.is_file():
            continue
        with store_lock(payload):
            if store_users(root, payload, besides):
                continue
            freed += payload.stat().st_size
            payload.unlink()
            payload.with_name(payload.name + ".refs").unlink(missing_ok=True)
        payload.with_name(payload.name + ".lock").unlink(missing_ok=True)
    return freed


def counted_twice(root: Path, repos: list[str]) -> int:
    """Bytes that per-repo sizes of these repos count more than once: a shared payload that n of them link to is on
    disk once but in n sizes."""
    seen: dict[Path, int] = {}
    for repo in dict.fromkeys(repos):
        for payload in repo_store_payloads(root, repo):
            seen[payload] = seen.get(payload, 0) + 1
    return sum((n - 1) * payload.stat().st_size for payload, n in seen.items() if n > 1 and payload.is_file())


def repo_store_payloads(root: Path, repo: str) -> set[Path]:
    """The shared store payloads a repo's blobs link to."""
    folder = repo_dir(root, repo) / "blobs"
    return {t for b in (folder.iterdir() if folder.is_dir() else ()) if (t := store_target(root, b)) is not None}


def read_ref(root: Path, repo: str, ref: str) -> str | None:
    """The commit a ref points to in the cache, if written."""
    try:
        return (repo_dir(root, repo) / "refs" / ref).read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def write_ref(root: Path, repo: str, ref: str, commit: str) -> None:
    """Point `ref` at `commit` (atomically), so loaders that ask for a branch find the snapshot offline."""
    path = repo_dir(root, repo) / "refs" / ref
    if read_ref(root, repo, ref) == commit:
        return
    atomic_write(path, commit.encode())


# ---- tree listings (trees/<commit>.json, huggingface_hub's own format) ---------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repo at a commit, as the hub's tree listing describes it."""

    path: str
    size: int
    blob_id: str  # git blob sha1
    lfs_sha256: str | None = None
    xet_hash: str | None = None  # for a Xet-backed file: its name in the shared blob store

    @property
    def etag(self) -> str:
        """The name huggingface_hub gives the blob: sha256 for LFS files, git blob sha1 otherwise."""
        return self.lfs_sha256 or self.blob_id

    @property
    def hash_kind(self) -> str:
        return "sha256" if self.lfs_sha256 else "git-sha1"


def tree_path(root: Path, repo: str, commit: str) -> Path:
    return repo_dir(root, repo) / "trees" / f"{commit}.json"


def read_tree(root: Path, repo: str, commit: str) -> dict[str, RemoteFile] | None:
    """The cached tree listing of `repo` at `commit`, or None."""
    try:
        data = json.loads(tree_path(root, repo, commit).read_text())
        if data.get("format_version") != TREE_FORMAT_VERSION:
            return None
        return {
            p: RemoteFile(p, int(i["size"]), i["blob_id"], i.get("lfs_sha256"), _xet_hash(i.get("xet_hash")))
            for p, i in data["files"].items()
        }
    except (FileNotFoundError, NotADirectoryError, ValueError, KeyError, TypeError):
        return None


def _xet_hash(value: object) -> str | None:
    return value if isinstance(value, str) and _XET_HASH.fullmatch(value) else None


def write_tree(root: Path, repo: str, commit: str, files: dict[str, RemoteFile]) -> None:
    """Write the tree listing in huggingface_hub's format, so hub 1.x+ loaders can tell complete from partial (and
    huggingface_hub downloads a Xet file it lists without asking the hub for its metadata first)."""
    entries = {}
    for p in sorted(files):
        f = files[p]
        entry: dict = {"size": f.size, "blob_id": f.blob_id}
        if f.lfs_sha256:
            entry.update(lfs_sha256=f.lfs_sha256, lfs_size=f.size)
        if f.xet_hash:
            entry["xet_hash"] = f.xet_hash
        entries[p] = entry
    data = {"format_version": TREE_FORMAT_VERSION, "files": entries}
    atomic_write(tree_path(root, repo, commit), json.dumps(data, indent=1).encode())


def matches(path: str, patterns: tuple[str, ...]) -> bool:
    """huggingface_hub's allow_patterns semantics (fnmatch; a trailing '/' means the whole folder)."""
    return any(fnmatch.fnmatch(path, p + "*" if p.endswith("/") else p) for p in patterns)


def select_paths(model: Model, paths: list[str]) -> list[str]:
    """The paths the model's loader requests: its patterns, plus the first weights alternative that is present."""
    paths = [p for p in sorted(paths) if not matches(p, model.exclude)]
    wanted = [p for p in paths if matches(p, model.files)]
    for alternative in model.prefer:
        chosen = [p for p in paths if matches(p, alternative)]
        if chosen:
            return wanted + [p for p in chosen if p not in wanted]
    return wanted


def needed_files(model: Model, tree: dict[str, RemoteFile]) -> list[RemoteFile]:
    """The files of a tree listing that the model's loader will request."""
    return [tree[p] for p in select_paths(model, list(tree))]


# ---- hashing --------------------------------------------------------------------------------------------


def file_hash(path: Path, kind: str) -> str:
    return sha256_file(path) if kind == "sha256" else git_sha1_file(path)


# ---- the lock file ------------------------------------------------------------------------------------------


def lock_path(root: Path) -> Path:
    return root / LOCK_NAME


def read_lock(root: Path) -> dict:
    """The lock file's content ({"schema", "models", "assets", "derived"}); empty when nothing was provisioned.

    A lock that cannot be read (not JSON, another schema) is a StateError naming the file and the fix."""
    path = lock_path(root)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"schema": LOCK_SCHEMA, "models": {}, "assets": {}, "derived": {}}
    except (OSError, ValueError) as exc:
        raise _unreadable(path, f"{type(exc).__name__}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != LOCK_SCHEMA:
        schema = data.get("schema") if isinstance(data, dict) else None
        raise _unreadable(path, f"unsupported lock schema {schema!r}")
    for section in ("models", "assets", "derived"):
        if not isinstance(data.setdefault(section, {}), dict):
            raise _unreadable(path, f"'{section}' is not a table")
    if (problem := lock_problem(data)) is not None:
        raise _unreadable(path, problem)
    return data


# What a lock may name. Every commit, file and folder name it holds becomes a path: checked here, once, before
# anything builds a path from it (a hand-edited or hostile lock must not reach outside the cache).
_LOCK_COMMIT = re.compile(r"[0-9a-f]{40}|local-[0-9a-f]{34}")
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_HASHES = {"sha256": re.compile(r"[0-9a-f]{64}"), "git-sha1": re.compile(r"[0-9a-f]{40}")}


def relative_path(path: object) -> bool:
    """Whether `path` is a relative POSIX path that stays in its folder (no '..', '.', empty or absolute parts)."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path or "\0" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def _file_record_ok(f: object) -> bool:
    if not isinstance(f, dict) or not relative_path(f.get("path")) or not isinstance(f.get("size"), int):
        return False
    ids = [k for k in _HASHES if k in f]
    return len(ids) >= 1 and all(isinstance(f[k], str) and _HASHES[k].fullmatch(f[k]) for k in ids)


def _sized(info: object) -> bool:
    return (
        isinstance(info, dict)
        and isinstance(info.get("size"), int)
        and isinstance(info.get("sha256"), str)
        and _HASHES["sha256"].fullmatch(info["sha256"]) is not None
    )


def lock_problem(data: dict) -> str | None:
    """What makes a lock's content unusable (one phrase naming the entry), None when every entry is well formed."""
    for key, e in data["models"].items():
        if not isinstance(e, dict) or not isinstance(e.get("repo"), str) or not _REPO.fullmatch(e["repo"]):
            return f"model entry {key!r} names no repo"
        if not isinstance(e.get("commit"), str) or not _LOCK_COMMIT.fullmatch(e["commit"]):
            return f"model entry {key!r}: {e.get('commit')!r} is not a commit"
        if not isinstance(e.get("files"), list) or not all(_file_record_ok(f) for f in e["files"]):
            return f"model entry {key!r}: its 'files' are missing or malformed"
    for key, e in data["assets"].items():
        members = e.get("members", {}) if isinstance(e, dict) else None
        if (
            not _sized(e)
            or not relative_path(e.get("dest"))
            or not isinstance(members, dict)
            or not all(relative_path(m) and _sized(i) for m, i in members.items())
        ):
            return f"asset entry {key!r} is malformed"
    for key, e in data["derived"].items():
        if (
            not isinstance(e, dict)
            or not isinstance(e.get("source_commit"), str)
            or not _LOCK_COMMIT.fullmatch(e["source_commit"])
        ):
            return f"conversion entry {key!r} names no source commit"
        files = e.get("files")
        dest = e.get("dest")
        if (
            not relative_path(dest)
            or not str(dest).startswith("offline-speech/ct2/")
            or not isinstance(files, dict)
            or not all(relative_path(n) and "/" not in n and _sized(i) for n, i in files.items())
        ):
            return f"conversion entry {key!r} is malformed"
    return None


def _unreadable(path: Path, detail: str) -> StateError:
    return StateError(
        f"{path} is unreadable ({detail}): run ./cache-models.sh --verify --repair, which rebuilds it from the "
        "cache's files (the broken one is kept beside it)"
    )


@contextlib.contextmanager
def cache_lock(root: Path, name: str = "offline-speech", waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Serialise across processes: writers of shared cache metadata (the lock file), or one entry's provisioning.
    `waiting` is called once when another process holds it (then this one waits).

    An flock, so a provisioner killed with -9 releases it with its last file descriptor."""
    path = root / ".locks" / f"{name}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a")
    except (IsADirectoryError, NotADirectoryError, FileExistsError):
        raise StateError(
            f"{path} is {path_kind(path) if path.exists() else 'blocked'}, not a lock file: remove it "
            "(nothing is kept in .locks/) and run again"
        ) from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def entry_lock(
    root: Path, key: str, waiting: Callable[[], None] | None = None
) -> contextlib.AbstractContextManager[None]:
    """The lock one entry is provisioned (or removed) under: a second run waits for it."""
    return cache_lock(root, f"entry-{key}", waiting)


def update_lock(root: Path, section: str, key: str, entry: dict | None) -> None:
    """Set (or with None remove) one lock entry, read-modify-write under the cache lock."""
    with cache_lock(root):
        data = read_lock(root)
        if entry is None:
            data[section].pop(key, None)
        else:
            data[section][key] = entry
        atomic_write(lock_path(root), (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def model_lock_entry(model: Model, commit: str, files: list[RemoteFile]) -> dict:
    return {
        "repo": model.repo,
        "revision": model.revision,
        "commit": commit,
        "venv": model.venv,
        "files": [{"path": f.path, "size": f.size, f.hash_kind: f.etag} for f in files],
        "provisioned": utc_now(),
    }


# ---- local status (no network; hashing only what changed since it was verified) ------------------------


@dataclass(frozen=True)
class LocalState:
    """What the cache holds of one catalog entry, judged from local files only."""

    key: str
    status: str  # complete | incomplete | corrupt | missing
    commit: str | None
    location: Path
    needed: tuple[RemoteFile, ...] = ()
    absent: tuple[str, ...] = ()  # needed files missing, or there but damaged (size, link, content)
    bytes_on_disk: int = 0
    detail: str = ""


def known_commit(root: Path, model: Model, lock: dict) -> str | None:
    """The commit this model resolves to offline: pinned, else recorded in the lock, else the cached ref."""
    if model.pinned:
        return model.revision
    entry = lock["models"].get(model.key)
    if entry and entry.get("repo") == model.repo:
        return entry["commit"]
    return read_ref(root, model.repo, model.revision)


def local_file_size(snapshot: Path, path: str) -> int | None:
    """Size of a snapshot file (following its blob link), None if absent or dangling."""
    try:
        return (snapshot / path).stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return None


def blob_problem(root: Path, repo: str, file: Path) -> str | None:
    """Why a snapshot file is not one of the repo's own blobs, None when it is: its link must point at the repo's
    blobs/, and that blob be a regular file or huggingface_hub's link into the shared store (a Xet file) whose
    payload is a regular file. A link leading out of the cache, a blob linked anywhere else, a store entry that is
    missing or itself a link: damage."""
    if not file.is_symlink():
        return None if file.is_file() else "not a file"
    target = link_target(file)
    if target.parent != Path(os.path.normpath(repo_dir(root, repo) / "blobs")):
        return f"a link out of the cache's blobs ({target})"
    if not target.is_symlink():
        return None
    payload = store_target(root, target)
    if payload is None:
        return f"its blob is a link out of the shared blob store ({os.readlink(target)})"
    if payload.is_symlink() or not payload.is_file():
        return f"its shared blob {payload.name[:12]}… is {'a link' if payload.is_symlink() else 'missing'}"
    return None


def snapshot_damage(
    root: Path, repo: str, commit: str, files, index: VerifiedIndex
) -> tuple[list[str], list[str], int]:
    """(missing, damaged, bytes on disk) of these files in the snapshot: damaged = there, but with another size,
    not a blob of the cache, or content that does not hash to its id (checked through `index`)."""
    snapshot = snapshot_dir(root, repo, commit)
    missing, damaged, on_disk = [], [], 0
    for f in files:
        size = local_file_size(snapshot, f.path)
        on_disk += size or 0
        if size is None:
            missing.append(f.path)
        elif (
            size != f.size
            or blob_problem(root, repo, snapshot / f.path)
            or not index.check(snapshot / f.path, f.etag, f.size)
        ):
            damaged.append(f.path)
    return missing, damaged, on_disk


def model_state(root: Path, model: Model, lock: dict, index: VerifiedIndex | None = None) -> LocalState:
    """Complete when every file the loader needs is in the snapshot with its size and content, and the refs are
    written. `index` (default: the cache's, saved afterwards) spares hashing files unchanged since verified."""
    location = repo_dir(root, model.repo)
    commit = known_commit(root, model, lock)
    if commit is None:
        return LocalState(model.key, "missing", None, location)
    tree = read_tree(root, model.repo, commit)
    snapshot = snapshot_dir(root, model.repo, commit)
    if tree is None:
        status = "incomplete" if snapshot.exists() else "missing"
        return LocalState(model.key, status, commit, location, detail="no tree listing cached")
    needed = needed_files(model, tree)
    own = index or VerifiedIndex(root)
    missing, damaged, on_disk = snapshot_damage(root, model.repo, commit, needed, own)
    if index is None:
        own.save()
    refs_ok = read_ref(root, model.repo, "main" if model.pinned else model.revision) == commit
    if damaged:
        status = "corrupt"
    elif not missing and refs_ok and needed:
        status = "complete"
    elif on_disk:
        status = "incomplete"
    else:
        status = "missing"
    detail = (
        f"damaged: {', '.join(damaged)}" if damaged else ("" if refs_ok or status == "missing" else "ref not written")
    )
    absent = tuple(f.path for f in needed if f.path in missing or f.path in damaged)
    return LocalState(model.key, status, commit, location, tuple(needed), absent, on_disk, detail)


def asset_state(root: Path, asset: Asset, lock: dict, index: VerifiedIndex | None = None) -> LocalState:
    """Complete when the file (and for archives every unpacked member) is there with its recorded size and sha256
    (checked through the verified index, as for models)."""
    dest = root / asset.dest
    entry = lock["assets"].get(asset.key)
    size = dest.stat().st_size if dest.is_file() else None
    if size is None:
        return LocalState(asset.key, "missing", None, dest)
    if entry is None or entry.get("size") != size:
        return LocalState(asset.key, "incomplete", None, dest, bytes_on_disk=size, detail="not recorded in the lock")
    members = entry.get("members", {})
    absent = [m for m, info in members.items() if not _has_size(dest.parent / m, info["size"])]
    own = index or VerifiedIndex(root)
    damaged = [
        str(p.relative_to(root))
        for p, info in [(dest, entry), *((dest.parent / m, i) for m, i in members.items())]
        if _has_size(p, info["size"]) and not own.check(p, info["sha256"], info["size"])
    ]
    if index is None:
        own.save()
    on_disk = size + sum(info["size"] for info in members.values())
    status = "corrupt" if damaged else ("incomplete" if absent else "complete")
    return LocalState(
        asset.key,
        status,
        entry["sha256"],
        dest,
        absent=tuple(absent + damaged),
        bytes_on_disk=on_disk,
        detail=f"damaged: {', '.join(damaged)}" if damaged else "",
    )


def _has_size(path: Path, size: int) -> bool:
    return path.is_file() and path.stat().st_size == size


def item_state(root: Path, item: Item, lock: dict, index: VerifiedIndex | None = None) -> LocalState:
    return model_state(root, item, lock, index) if isinstance(item, Model) else asset_state(root, item, lock, index)


# ---- derived artifacts: made here from a cached model (NLLB converted to CTranslate2) ---------------------------

CT2_QUANTIZATION = "int8"


def derived_key(model: Model) -> str:
    """The lock key of a model's CTranslate2 conversion."""
    return f"{model.key}+ct2-{CT2_QUANTIZATION}"


def derived_root(root: Path, model: Model) -> Path:
    """The folder holding every conversion of `model`."""
    return root / "offline-speech" / "ct2" / model.key


def derived_dir(root: Path, model: Model, commit: str) -> Path:
    """Where the conversion of `model` at `commit` lives: keyed by the source commit, so a new commit converts anew."""
    return derived_root(root, model) / f"{commit}-{CT2_QUANTIZATION}"


def derived_state(root: Path, model: Model, lock: dict, index: VerifiedIndex | None = None) -> LocalState:
    """Complete when the lock records a conversion of the model's current commit and every file has its size and
    sha256 (checked through the verified index)."""
    key = derived_key(model)
    commit = known_commit(root, model, lock)
    entry = lock.get("derived", {}).get(key)
    location = derived_dir(root, model, commit) if commit else derived_root(root, model)
    if commit is None or not entry or entry.get("source_commit") != commit:
        return LocalState(key, "missing", commit, location)
    files = entry.get("files", {})
    own = index or VerifiedIndex(root)
    absent = [name for name, info in files.items() if not _has_size(location / name, info["size"])]
    damaged = [
        name
        for name, info in files.items()
        if name not in absent and not own.check(location / name, info["sha256"], info["size"])
    ]
    if index is None:
        own.save()
    on_disk = sum((location / n).stat().st_size for n in files if (location / n).is_file())
    status = (
        "corrupt" if damaged else ("complete" if files and not absent else ("incomplete" if on_disk else "missing"))
    )
    return LocalState(key, status, commit, location, absent=tuple(absent + damaged), bytes_on_disk=on_disk)
