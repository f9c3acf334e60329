"""Bundles: one tar that carries verified models to a machine that never sees the network.

An archive holds content-addressed files and, last, a manifest:

    offline-speech-bundle/files/<id>          one member per distinct file; <id> is its hub id (sha256 for
                                              LFS files, git blob sha1 for small ones) or, for non-hub
                                              files (assets, conversions), its sha256
    offline-speech-bundle/manifest.json       what to rebuild: per catalog key its lock entry, and for models
                                              the commit, the tree listing and every file's path and id

Export reads each file once, checks it against its id while it is written (a corrupt cache never leaves as a
"verified" archive) and writes no links. Import streams the archive into a staging folder inside the cache,
checks every file against its id, checks the manifest against the catalog (known keys, the catalog's repos
and destinations, relative paths only), and only then moves each entry into place and merges the lock; any
problem leaves the cache as it was. Importing an archive whose entries are all cached changes nothing.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from . import cache
from .catalog import Asset, Catalog, CatalogError, Model
from .errors import BadInput, StateError
from .util import CHUNK, utc_now

KIND = "offline-speech/bundle"
SCHEMA = 1
PREFIX = "offline-speech-bundle/"
MANIFEST = PREFIX + "manifest.json"
FILES = PREFIX + "files/"
_ID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_MAX_MANIFEST = 64 << 20

Progress = Callable[[int], None]


class BundleError(BadInput):
    """An archive that cannot be imported (or a bundle that cannot be made); the cache is unchanged."""


@dataclass(frozen=True)
class BundleFile:
    """One distinct file of a bundle: its id (what its name in the archive is), size and where it is read from."""

    id: str
    size: int
    source: Path


@dataclass
class ExportPlan:
    """What an export writes: the manifest, the distinct files, and what was left out and why."""

    manifest: dict
    files: dict[str, BundleFile] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, why)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

    @property
    def keys(self) -> list[str]:
        m = self.manifest
        return [*m["models"], *m["assets"], *m["derived"]]


@dataclass(frozen=True)
class ImportResult:
    key: str
    status: str  # imported | cached | updated
    detail: str = ""


def id_kind(file_id: str) -> str:
    """sha256 for a 64-hex id, git-sha1 for a 40-hex one."""
    return "sha256" if len(file_id) == 64 else "git-sha1"


class _Hasher:
    """The hash an id names, fed chunk by chunk (a git blob sha1 needs the size up front)."""

    def __init__(self, file_id: str, size: int):
        self.kind = id_kind(file_id)
        self.h = hashlib.sha256() if self.kind == "sha256" else hashlib.sha1(f"blob {size}\0".encode())

    def update(self, data: bytes) -> None:
        self.h.update(data)

    def hexdigest(self) -> str:
        return self.h.hexdigest()


# ---- export ---------------------------------------------------------------------------------------------------


def plan_export(root: Path, catalog: Catalog, keys: list[str], since: dict | None = None) -> ExportPlan:
    """The bundle of `keys` (catalog keys; their NLLB conversions come along), less what the lock `since` has."""
    lock = cache.read_lock(root)
    since_lock = since or {"models": {}, "assets": {}, "derived": {}}
    plan = ExportPlan({"kind": KIND, "schema": SCHEMA, "created": utc_now(), "models": {}, "assets": {}, "derived": {}})
    for key in keys:
        item = catalog.get(key)
        state = cache.item_state(root, item, lock)
        if state.status != "complete":
            plan.skipped.append((key, f"{state.status} in this cache"))
            continue
        if isinstance(item, Model):
            entry = lock["models"].get(key)
            if entry is None or entry.get("commit") != state.commit:
                plan.skipped.append((key, "not recorded in the lock: run ./cache-models.sh --verify --repair"))
                continue
            if (since_lock["models"].get(key) or {}).get("commit") != state.commit:
                _add_model(root, plan, item, entry, state.commit)
            derived_key = cache.derived_key(item)
            if cache.derived_state(root, item, lock).status == "complete":
                if (since_lock.get("derived", {}).get(derived_key) or {}).get("source_commit") != state.commit:
                    _add_derived(root, plan, derived_key, lock["derived"][derived_key])
        else:
            entry = lock["assets"][key]
            if (since_lock["assets"].get(key) or {}).get("sha256") != entry["sha256"]:
                _add_asset(root, plan, item, entry)
    return plan


def _add_model(root: Path, plan: ExportPlan, model: Model, entry: dict, commit: str) -> None:
    tree = cache.read_tree(root, model.repo, commit) or {}
    snapshot = cache.snapshot_dir(root, model.repo, commit)
    files = []
    for f in cache.needed_files(model, tree):
        plan.files.setdefault(f.etag, BundleFile(f.etag, f.size, snapshot / f.path))
        files.append({"path": f.path, "size": f.size, "id": f.etag})
    listing = {p: {"size": f.size, "blob_id": f.blob_id, "lfs_sha256": f.lfs_sha256} for p, f in sorted(tree.items())}
    plan.manifest["models"][model.key] = {"repo": model.repo, "commit": commit, "tree": listing, "files": files,
                                         "lock": entry}


def _add_asset(root: Path, plan: ExportPlan, asset: Asset, entry: dict) -> None:
    dest = PurePosixPath(asset.dest)
    files = [{"path": asset.dest, "size": entry["size"], "id": entry["sha256"]}]
    for name, info in sorted(entry.get("members", {}).items()):
        files.append({"path": str(dest.parent / name), "size": info["size"], "id": info["sha256"]})
    for f in files:
        plan.files.setdefault(f["id"], BundleFile(f["id"], f["size"], root / f["path"]))
    plan.manifest["assets"][asset.key] = {"files": files, "lock": entry}


def _add_derived(root: Path, plan: ExportPlan, key: str, entry: dict) -> None:
    files = [{"path": f"{entry['dest']}/{name}", "size": info["size"], "id": info["sha256"]}
             for name, info in sorted(entry["files"].items())]
    for f in files:
        plan.files.setdefault(f["id"], BundleFile(f["id"], f["size"], root / f["path"]))
    plan.manifest["derived"][key] = {"files": files, "lock": entry}


def write_bundle(plan: ExportPlan, dest: Path, progress: Progress = lambda n: None) -> int:
    """Write the archive (atomically: a temp file renamed at the end); the number of bytes written."""
    if not plan.keys:
        raise BundleError("nothing to export: every selected model is missing here or already in the --since lock")
    dest = dest.expanduser().resolve()
    if not dest.parent.is_dir():
        raise BundleError(f"{dest.parent}: no such folder")
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for f in sorted(plan.files.values(), key=lambda f: f.id):
                _write_member(out, FILES + f.id, f, progress)
            data = json.dumps(plan.manifest, indent=1, sort_keys=True).encode()
            _write_header(out, MANIFEST, len(data))
            out.write(data + _padding(len(data)))
            out.write(b"\0" * (tarfile.BLOCKSIZE * 2))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dest.stat().st_size


def _padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def _write_header(out, name: str, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    out.write(info.tobuf(tarfile.PAX_FORMAT))


def _write_member(out, name: str, f: BundleFile, progress: Progress) -> None:
    """Header, the file's bytes checked against its id as they are copied, padding."""
    _write_header(out, name, f.size)
    hasher, written = _Hasher(f.id, f.size), 0
    with open(f.source, "rb") as src:
        while chunk := src.read(CHUNK):
            hasher.update(chunk)
            out.write(chunk)
            written += len(chunk)
            progress(len(chunk))
    if written != f.size or hasher.hexdigest() != f.id:
        raise StateError(f"{f.source} does not match its recorded hash (cache damaged): run "
                         f"./cache-models.sh --verify --repair, then export again")
    out.write(_padding(f.size))


# ---- import ---------------------------------------------------------------------------------------------------


def import_bundle(root: Path, catalog: Catalog, archive: Path, progress: Progress = lambda n: None) -> list[ImportResult]:
    """Check everything in `archive`, then move it into the cache; BundleError (cache untouched) on any problem."""
    if not archive.is_file():
        raise BundleError(f"{archive}: no such file")
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=".import-"))
    except OSError as exc:
        raise BundleError(f"{root}: cannot write to the cache ({exc.strerror})") from None
    try:
        manifest, staged = _stream_in(archive, staging, progress)
        entries = _check_manifest(archive, catalog, manifest, staged)
        return [_move_in(root, staged, *entry) for entry in entries]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stream_in(archive: Path, staging: Path, progress: Progress) -> tuple[dict, dict[str, Path]]:
    """Every member into `staging`, each checked against its id; (manifest, {id: staged path})."""
    staged: dict[str, Path] = {}
    manifest = None
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                name = member.name
                if manifest is not None:
                    raise BundleError(f"{archive}: member {name!r} after the manifest")
                if not member.isfile():
                    raise BundleError(f"{archive}: {name!r} is a {_kind(member)}; a bundle holds only files")
                if name == MANIFEST:
                    if member.size > _MAX_MANIFEST:
                        raise BundleError(f"{archive}: manifest of {member.size} bytes is too large")
                    manifest = _parse_manifest(archive, tar.extractfile(member).read())
                    continue
                file_id = name[len(FILES):] if name.startswith(FILES) else ""
                if not _ID.match(file_id):
                    raise BundleError(f"{archive}: unexpected member {name!r} (absolute, outside the bundle, or not a file id)")
                if file_id in staged:
                    raise BundleError(f"{archive}: {name!r} appears twice")
                staged[file_id] = _stage(archive, tar.extractfile(member), member.size, file_id, staging, progress)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as exc:
        raise BundleError(f"{archive}: truncated or not a tar archive ({exc})") from None
    if manifest is None:
        raise BundleError(f"{archive}: no manifest (truncated, or not made by ./cache-models.sh --export)")
    return manifest, staged


def _kind(member: tarfile.TarInfo) -> str:
    return "link" if member.issym() or member.islnk() else "folder" if member.isdir() else "special file"


def _stage(archive: Path, stream, size: int, file_id: str, staging: Path, progress: Progress) -> Path:
    path = staging / file_id
    hasher, got = _Hasher(file_id, size), 0
    with open(path, "wb") as out:
        while chunk := stream.read(CHUNK):
            hasher.update(chunk)
            out.write(chunk)
            got += len(chunk)
            progress(len(chunk))
    if got != size:
        raise BundleError(f"{archive}: {file_id} is truncated ({got} of {size} bytes)")
    if hasher.hexdigest() != file_id:
        raise BundleError(f"{archive}: {file_id} does not match its hash (the archive is damaged)")
    return path


def _parse_manifest(archive: Path, data: bytes) -> dict:
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{archive}: manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise BundleError(f"{archive}: not an offline-speech bundle")
    if manifest.get("schema") != SCHEMA:
        raise BundleError(f"{archive}: bundle schema {manifest.get('schema')!r} is not {SCHEMA}: update offline-speech")
    for section in ("models", "assets", "derived"):
        if not isinstance(manifest.get(section), dict):
            raise BundleError(f"{archive}: manifest has no {section!r} table")
    return manifest


def _safe_path(archive: Path, path: object) -> str:
    """A relative POSIX path with no '..', or BundleError."""
    if not isinstance(path, str) or not path or "\\" in path or "\0" in path:
        raise BundleError(f"{archive}: bad path {path!r} in the manifest")
    parts = PurePosixPath(path).parts
    if path.startswith("/") or ".." in parts or "." in parts:
        raise BundleError(f"{archive}: path {path!r} leaves its folder")
    return path


def _check_files(archive: Path, files: object, staged: dict[str, Path]) -> list[tuple[str, str, int]]:
    if not isinstance(files, list) or not files:
        raise BundleError(f"{archive}: an entry lists no files")
    out = []
    for f in files:
        try:
            path, size, file_id = _safe_path(archive, f["path"]), int(f["size"]), f["id"]
        except (TypeError, KeyError, ValueError):
            raise BundleError(f"{archive}: bad file record {f!r} in the manifest") from None
        if file_id not in staged or staged[file_id].stat().st_size != size:
            raise BundleError(f"{archive}: {path} ({file_id}) is missing from the archive")
        out.append((path, file_id, size))
    return out


def _check_manifest(archive: Path, catalog: Catalog, manifest: dict, staged: dict[str, Path]) -> list[tuple]:
    """Every entry against the catalog and the staged files: [(section, item, record, files)]."""
    entries: list[tuple] = []
    try:
        for key, record in manifest["models"].items():
            model = catalog.get(key)
            if not isinstance(model, Model) or record.get("repo") != model.repo:
                raise BundleError(f"{archive}: {key} is not {record.get('repo')} in this catalog")
            if not cache_commit_ok(record.get("commit")):
                raise BundleError(f"{archive}: {key}: bad commit {record.get('commit')!r}")
            files = _check_files(archive, record["files"], staged)
            tree = {p: cache.RemoteFile(_safe_path(archive, p), int(i["size"]), i["blob_id"], i.get("lfs_sha256"))
                    for p, i in record["tree"].items()}
            for path, file_id, size in files:
                if path not in tree or (tree[path].etag, tree[path].size) != (file_id, size):
                    raise BundleError(f"{archive}: {key}/{path} disagrees with its tree listing")
            entries.append(("models", model, record, files, tree))
        for key, record in manifest["assets"].items():
            asset = catalog.get(key)
            files = _check_files(archive, record["files"], staged)
            if not isinstance(asset, Asset) or files[0][0] != asset.dest:
                raise BundleError(f"{archive}: {key} does not go to {files[0][0]} in this catalog")
            parent = PurePosixPath(asset.dest).parent
            if any(PurePosixPath(p).parent != parent and parent not in PurePosixPath(p).parents for p, _, _ in files):
                raise BundleError(f"{archive}: {key} has files outside {parent}")
            entries.append(("assets", asset, record, files, None))
        models = {cache.derived_key(m): m for m in catalog.items if isinstance(m, Model)}
        for key, record in manifest["derived"].items():
            model = models.get(key)
            if model is None:
                raise BundleError(f"{archive}: {key} is no conversion of a catalog model")
            folder = Path(os.path.relpath(cache.derived_dir(Path("/"), model, record["lock"]["source_commit"]), "/"))
            files = _check_files(archive, record["files"], staged)
            if record["lock"].get("dest") != folder.as_posix() or any(
                    PurePosixPath(p).parent != PurePosixPath(folder.as_posix()) for p, _, _ in files):
                raise BundleError(f"{archive}: {key} does not go to {folder} in this catalog")
            entries.append(("derived", model, record, files, None))
    except CatalogError as exc:
        raise BundleError(f"{archive}: {exc}") from None
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BundleError(f"{archive}: manifest entry is malformed ({type(exc).__name__}: {exc})") from None
    return entries


def cache_commit_ok(commit: object) -> bool:
    return isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{40}", commit) is not None


def _place(staged: Path, dest: Path) -> None:
    """A copy of a staged file at `dest`, moved in atomically (staged files may serve several paths)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink():
        dest.unlink()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".import")
    os.close(fd)
    try:
        try:
            os.unlink(tmp)
            os.link(staged, tmp)  # same file system: no copy
        except OSError:
            shutil.copyfile(staged, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _move_in(root: Path, staged: dict[str, Path], section: str, item, record: dict, files, tree) -> ImportResult:
    with cache.cache_lock(root, f"entry-{item.key if section != 'derived' else cache.derived_key(item)}"):
        lock = cache.read_lock(root)
        if section == "models":
            return _move_model(root, staged, item, record, files, tree, lock)
        key = cache.derived_key(item) if section == "derived" else item.key
        previous = lock[section].get(key)
        same = previous is not None and {k: v for k, v in previous.items() if k != "provisioned"} == \
            {k: v for k, v in record["lock"].items() if k != "provisioned"}
        state = cache.derived_state(root, item, lock) if section == "derived" else cache.item_state(root, item, lock)
        if same and state.status == "complete":
            return ImportResult(key, "cached")
        for path, file_id, _ in files:
            _place(staged[file_id], root / path)
        cache.update_lock(root, section, key, record["lock"])
        return ImportResult(key, "imported", f"{sum(s for _, _, s in files)} bytes")


def _move_model(root: Path, staged: dict[str, Path], model: Model, record: dict, files, tree, lock: dict) -> ImportResult:
    commit = record["commit"]
    before = lock["models"].get(model.key, {}).get("commit")
    if before == commit and cache.model_state(root, model, lock).status == "complete":
        return ImportResult(model.key, "cached", f"{model.repo}@{commit[:8]}")
    blobs = cache.repo_dir(root, model.repo) / "blobs"
    snapshot = cache.snapshot_dir(root, model.repo, commit)
    for path, file_id, size in files:
        blob = blobs / file_id
        if not (blob.is_file() and not blob.is_symlink() and blob.stat().st_size == size):
            _place(staged[file_id], blob)
        link = snapshot / path
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    existing = cache.read_tree(root, model.repo, commit) or {}
    cache.write_tree(root, model.repo, commit, {**tree, **existing})
    cache.write_ref(root, model.repo, "main" if model.pinned else model.revision, commit)
    cache.update_lock(root, "models", model.key, record["lock"])
    status = "imported" if before in (None, commit) else "updated"
    detail = f"{model.repo}@{commit[:8]}" + (f" (was {before[:8]})" if status == "updated" else "")
    return ImportResult(model.key, status, detail)


def read_since(path: Path) -> dict:
    """A lock file given to --since: the cache's own lock or an exported copy."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"--since {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateError(f"--since {path}: not a readable lock file ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(s, {}), dict) for s in ("models", "assets", "derived")):
        raise StateError(f"--since {path}: not an offline-speech lock file")
    return {s: data.get(s, {}) for s in ("models", "assets", "derived")}


def iter_member_names(archive: Path) -> Iterator[str]:
    """The member names of an archive (for tests and --info of a bundle)."""
    with tarfile.open(archive, mode="r|*") as tar:
        for member in tar:
            yield member.name

