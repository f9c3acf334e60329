"""--import: a bundle made by --export, checked whole before anything enters the cache.

The archive (plain tar, or compressed: zstd, gzip, xz, bz2, told by its first bytes) is streamed into a staging
folder inside the cache in one pass, every file hashed against the id it is named by as it is written; the
manifest is checked against the catalog (known keys, the catalog's repos and destinations, relative paths only)
and against the staged files; only then is each entry moved in (hard links from the staging folder: no second
copy) and the lock merged; what was placed is recorded in the cache's verified index (its hash was just checked),
so the next --verify does not hash it again. Any problem raises BundleError with the cache as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import cache
from ..catalog import COMMIT_RE, Asset, Catalog, CatalogError, Model
from ..orphans import remove_work_dir, work_dir
from ..util import default_mode, input_file, place_file, sha256_file, write_problem
from ..verified import VerifiedIndex
from .bundle import FILES, KIND, MANIFEST, SCHEMA, BundleError
from .bundle_stream import Hasher, Progress, archive_kind, decode_errors, kernel_copy, open_archive, pump, zstandard
from .register import lfs_pointer_sha1

_ID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_MAX_MANIFEST = 64 << 20


@dataclass(frozen=True)
class ImportResult:
    key: str
    status: str  # imported | cached | updated
    detail: str = ""


def import_bundle(
    root: Path, catalog: Catalog, archive: Path, progress: Progress = lambda n: None
) -> list[ImportResult]:
    """Check everything in `archive`, then move it into the cache; BundleError (cache untouched) on any problem."""
    input_file(archive, "--import")
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = work_dir(root, ".import-")
    except OSError as exc:
        raise BundleError(f"{root}: cannot write to the cache ({exc.strerror})") from None
    placed: list[tuple[Path, str]] = []
    try:
        manifest, staged = _stream_in(archive, staging, progress)
        entries = _check_manifest(archive, catalog, manifest, staged)
        _refuse_replacing_verified(root, archive, entries)
        results = [_move_in(root, staged, placed, *entry) for entry in entries]
    except OSError as exc:  # staged files are removed below: a full disk leaves nothing half imported
        needed = sum(p.stat().st_size for p in staging.iterdir() if p.is_file()) + archive.stat().st_size
        if (problem := write_problem(exc, root, needed, "import into another --cache-dir")) is not None:
            raise problem from None
        raise
    finally:
        remove_work_dir(staging)
    # Recorded once the staging links are gone: unlinking them changed the files' ctime.
    index = VerifiedIndex(root)
    for path, file_id in placed:
        index.record(path, file_id)
    index.save()
    return results


def _stream_in(archive: Path, staging: Path, progress: Progress) -> tuple[dict, dict[str, Path]]:
    """Every member into `staging`, each checked against its id; (manifest, {id: staged path})."""
    kind = archive_kind(archive)
    if kind == "zstd" and zstandard() is None:
        raise BundleError(f"{archive}: zstd-compressed, and the zstandard module is missing (./venv-setup core)")
    staged: dict[str, Path] = {}
    manifest = None
    try:
        with contextlib.ExitStack() as stack:
            stream = open_archive(stack, archive)
            plain = stream.fileno() if kind == "tar" else None  # a member's bytes are then at a known offset
            # Headers through tarfile (every header format, its checks); each member's bytes read here, in one pass.
            tar = stack.enter_context(tarfile.open(fileobj=stream, mode="r:"))
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
                file_id = name[len(FILES) :] if name.startswith(FILES) else ""
                if not _ID.match(file_id):
                    raise BundleError(
                        f"{archive}: unexpected member {name!r} (absolute, outside the bundle, or not a file id)"
                    )
                if file_id in staged:
                    raise BundleError(f"{archive}: {name!r} appears twice")
                at = (plain, member.offset_data) if plain is not None else None
                staged[file_id] = _stage(archive, stream, at, member.size, file_id, staging, progress)
    except (tarfile.TarError, *decode_errors()) as exc:
        raise BundleError(f"{archive}: truncated or not a tar archive ({exc})") from None
    if manifest is None:
        raise BundleError(f"{archive}: no manifest (truncated, or not made by ./cache-models.sh --export)")
    return manifest, staged


def _kind(member: tarfile.TarInfo) -> str:
    return "link" if member.issym() or member.islnk() else "folder" if member.isdir() else "special file"


def _stage(
    archive: Path, stream, at: tuple[int, int] | None, size: int, file_id: str, staging: Path, progress: Progress
) -> Path:
    """The member's bytes into staging/<id>, hashed as they are written. In a plain archive (`at`: its descriptor
    and the member's offset) the kernel copies them and the staged bytes are read back and hashed; else (or where
    the kernel cannot copy) they are read from `stream`, which stands at the member's first byte."""
    path = staging / file_id
    hasher = Hasher(file_id, size)
    with open(path, "w+b", buffering=0) as out:
        got = kernel_copy(*at, size, out.fileno(), hasher, progress) if at is not None else None
        if got is None:
            got = pump(stream.readinto, size, out.write, hasher, progress)
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
    """A relative POSIX path that stays in its folder (cache.relative_path, the lock's rule too), or BundleError."""
    if not cache.relative_path(path):
        raise BundleError(f"{archive}: path {path!r} in the manifest leaves its folder (or is no path)")
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
            if not isinstance(record.get("commit"), str) or not COMMIT_RE.match(record["commit"]):
                raise BundleError(f"{archive}: {key}: bad commit {record.get('commit')!r}")
            files = _check_files(archive, record["files"], staged)
            tree = {
                p: cache.RemoteFile(_safe_path(archive, p), int(i["size"]), i["blob_id"], i.get("lfs_sha256"))
                for p, i in record["tree"].items()
            }
            for path, file_id, size in files:
                if path not in tree or (tree[path].etag, tree[path].size) != (file_id, size):
                    raise BundleError(f"{archive}: {key}/{path} disagrees with its tree listing")
            _check_model(archive, model, record, files, tree, staged)
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
            if not isinstance(record["lock"], dict) or cache.lock_problem(
                {"models": {}, "assets": {}, "derived": {key: record["lock"]}}
            ):
                raise BundleError(f"{archive}: {key}: its lock entry is malformed (source commit, folder or files)")
            folder = Path(os.path.relpath(cache.derived_dir(Path("/"), model, record["lock"]["source_commit"]), "/"))
            files = _check_files(archive, record["files"], staged)
            if record["lock"].get("dest") != folder.as_posix() or any(
                PurePosixPath(p).parent != PurePosixPath(folder.as_posix()) for p, _, _ in files
            ):
                raise BundleError(f"{archive}: {key} does not go to {folder} in this catalog")
            entries.append(("derived", model, record, files, None))
    except CatalogError as exc:
        raise BundleError(f"{archive}: {exc}") from None
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BundleError(f"{archive}: manifest entry is malformed ({type(exc).__name__}: {exc})") from None
    return entries


def _check_model(
    archive: Path,
    model: Model,
    record: dict,
    files: list[tuple[str, str, int]],
    tree: dict[str, cache.RemoteFile],
    staged: dict[str, Path],
) -> None:
    """A model entry holds to the rules a download and --from-dir hold to: the catalog's pinned commit and pinned
    files, a tree listing whose ids are consistent, exactly the files the catalog's patterns select from it, and a
    lock entry that says what the files are. BundleError naming the first thing that differs."""
    key, commit = model.key, record["commit"]
    if model.pinned and commit != model.revision:
        raise BundleError(f"{archive}: {key}@{commit[:8]} is not the commit the catalog pins ({model.revision[:8]})")
    for path, f in tree.items():
        if f.lfs_sha256 and f.blob_id != lfs_pointer_sha1(f.lfs_sha256, f.size):
            raise BundleError(f"{archive}: {key}/{path}: its tree listing's ids disagree with each other")
    carried, wanted = {p for p, _, _ in files}, set(cache.select_paths(model, list(tree)))
    if carried != wanted:
        odd = sorted(carried - wanted) or sorted(wanted - carried)
        how = "the catalog's patterns do not select" if carried - wanted else "the catalog's patterns need, missing"
        raise BundleError(f"{archive}: {key}: {', '.join(odd)} ({how}); not imported")
    pins = model.pinned_files(commit) or {}
    for path, file_id, _ in files:
        code = path.endswith(".py")
        if (path in pins or (code and pins)) and pins.get(path) != (
            file_id if len(file_id) == 64 else sha256_file(staged[file_id])
        ):
            raise BundleError(f"{archive}: {key}/{path} is not the file the catalog pins for {commit[:8]}")
    lock = record.get("lock")
    ids = (
        {
            (f.get("path"), f.get("size"), f.get("sha256") or f.get("git-sha1"))
            for f in (lock or {}).get("files", [])
            if isinstance(f, dict)
        }
        if isinstance(lock, dict)
        else set()
    )
    if (
        not isinstance(lock, dict)
        or lock.get("repo") != model.repo
        or lock.get("commit") != commit
        or ids != {(p, size, file_id) for p, file_id, size in files}
    ):
        raise BundleError(f"{archive}: {key}: its lock entry disagrees with its files (repo, commit or hashes)")


def _refuse_replacing_verified(root: Path, archive: Path, entries: list[tuple]) -> None:
    """A model complete here at one commit is never replaced by another commit nothing here can check (no catalog
    pins, no tree listing the hub gave this cache): BundleError before anything moves."""
    lock = cache.read_lock(root)
    for section, model, record, _, tree in entries:
        if section != "models":
            continue
        state = cache.model_state(root, model, lock)
        commit = record["commit"]
        if state.status != "complete" or state.commit == commit:
            continue
        known = cache.read_tree(root, model.repo, commit)
        if model.pinned_files(commit) or (known and all(known.get(p) == f for p, f in tree.items())):
            continue
        raise BundleError(
            f"{archive}: {model.key} is cached here at {state.commit[:8]}, and nothing here can check the "
            f"bundle's {commit[:8]}: not replaced (./cache-models.sh --clear {model.key} first to take it)"
        )


def _move_in(
    root: Path, staged: dict[str, Path], placed: list[tuple[Path, str]], section: str, item, record: dict, files, tree
) -> ImportResult:
    """One entry into the cache (unless it is there already); `placed` gets each (file, id) moved in."""
    with cache.cache_lock(root, f"entry-{item.key if section != 'derived' else cache.derived_key(item)}"):
        lock = cache.read_lock(root)
        if section == "models":
            return _move_model(root, staged, placed, item, record, files, tree, lock)
        key = cache.derived_key(item) if section == "derived" else item.key
        previous = lock[section].get(key)
        same = previous is not None and {k: v for k, v in previous.items() if k != "provisioned"} == {
            k: v for k, v in record["lock"].items() if k != "provisioned"
        }
        state = cache.derived_state(root, item, lock) if section == "derived" else cache.item_state(root, item, lock)
        if same and state.status == "complete":
            return ImportResult(key, "cached")
        for path, file_id, _ in files:
            place_file(staged[file_id], root / path, mode=default_mode())
            placed.append((root / path, file_id))
        cache.update_lock(root, section, key, record["lock"])
        return ImportResult(key, "imported", f"{sum(s for _, _, s in files)} bytes")


def _move_model(
    root: Path,
    staged: dict[str, Path],
    placed: list[tuple[Path, str]],
    model: Model,
    record: dict,
    files,
    tree,
    lock: dict,
) -> ImportResult:
    commit = record["commit"]
    before = lock["models"].get(model.key, {}).get("commit")
    if before == commit and cache.model_state(root, model, lock).status == "complete":
        return ImportResult(model.key, "cached", f"{model.repo}@{commit[:8]}")
    blobs = cache.repo_dir(root, model.repo) / "blobs"
    snapshot = cache.snapshot_dir(root, model.repo, commit)
    for path, file_id, size in files:
        blob = blobs / file_id
        if not (blob.is_file() and not blob.is_symlink() and blob.stat().st_size == size):
            place_file(staged[file_id], blob, mode=default_mode())
            placed.append((blob, file_id))
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
    detail += "; blobs kept per repo (the hub's plain layout, which every loader reads)"
    return ImportResult(model.key, status, detail)
