"""--export: one tar that carries verified models to a machine that never sees the network (bundle_import.py
reads it back).

An archive holds content-addressed files and, last, a manifest:

    offline-speech-bundle/files/<id>          one member per distinct file; <id> is its hub id (sha256 for
                                              LFS files, git blob sha1 for small ones) or, for non-hub
                                              files (assets, conversions), its sha256
    offline-speech-bundle/manifest.json       what to rebuild: per catalog key its lock entry, and for models
                                              the commit, the tree listing and every file's path and id

Export checks each file against its id as it is written (a corrupt cache never leaves as a "verified" archive):
the kernel copies it into the archive and a second thread hashes the bytes that landed there (bundle_stream.py). It
writes no links. A file whose stat is unchanged since its hash was last checked (the cache's verified index) is not
hashed again; planning never hashes (writing does). NAME.tar.zst compresses with zstd. Import
streams the archive into a staging folder inside the cache, checks every file against its id, checks the
manifest against the catalog (known keys, the catalog's repos and destinations, relative paths only), and only
then moves each entry into place and merges the lock; any problem leaves the cache as it was. Importing an
archive whose entries are all cached changes nothing.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .. import cache
from ..catalog import Asset, Catalog, Model
from ..errors import BadInput, StateError
from ..orphans import sweep_temp_files
from ..util import output_file, utc_now, write_problem
from ..verified import VerifiedIndex
from .bundle_stream import Hasher, Progress, copy_file, open_output, wants_zstd, zstandard
from .register import is_local

KIND = "offline-speech/bundle"
SCHEMA = 1
PREFIX = "offline-speech-bundle/"
MANIFEST = PREFIX + "manifest.json"
FILES = PREFIX + "files/"


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

    root: Path  # the cache the files are read from
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


# ---- export ---------------------------------------------------------------------------------------------------


class _HashedWhenWritten(VerifiedIndex):
    """The check an export plans with: a file passes on its size and blob link alone (the state check's own tests),
    because writing the archive hashes every byte the cache's verified index does not vouch for: hashing here too
    would read each such file twice. Damage the hash shows still stops the export (write_bundle)."""

    def __init__(self):
        super().__init__(None)  # empty, never saved

    def check(self, path: Path, file_id: str, size: int | None = None) -> bool:
        return True


def plan_export(root: Path, catalog: Catalog, keys: list[str], since: dict | None = None) -> ExportPlan:
    """The bundle of `keys` (catalog keys; their NLLB conversions come along), less what the lock `since` has."""
    lock = cache.read_lock(root)
    since_lock = since or {"models": {}, "assets": {}, "derived": {}}
    manifest = {"kind": KIND, "schema": SCHEMA, "created": utc_now(), "models": {}, "assets": {}, "derived": {}}
    plan = ExportPlan(root, manifest)
    unhashed = _HashedWhenWritten()
    for key in keys:
        item = catalog.get(key)
        state = cache.item_state(root, item, lock, unhashed)
        if state.status == "corrupt":  # never exported as if it were right
            raise StateError(
                f"{key}: {', '.join(state.absent)} does not match its recorded hash (cache damaged): run "
                "./cache-models.sh --verify --repair, then export again"
            )
        if state.status != "complete":
            plan.skipped.append((key, f"{state.status} in this cache"))
            continue
        if isinstance(item, Model):
            if is_local(state.commit):
                plan.skipped.append(
                    (
                        key,
                        f"{state.commit} is local, unverified (registered with --from-dir): a bundle "
                        "carries only hub commits, which the importing machine can check",
                    )
                )
                continue
            entry = lock["models"].get(key)
            if entry is None or entry.get("commit") != state.commit:
                plan.skipped.append((key, "not recorded in the lock: run ./cache-models.sh --verify --repair"))
                continue
            if (since_lock["models"].get(key) or {}).get("commit") != state.commit:
                _add_model(root, plan, item, entry, state.commit)
            derived_key = cache.derived_key(item)
            if cache.derived_state(root, item, lock, unhashed).status == "complete":
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
    plan.manifest["models"][model.key] = {
        "repo": model.repo,
        "commit": commit,
        "tree": listing,
        "files": files,
        "lock": entry,
    }


def _add_asset(root: Path, plan: ExportPlan, asset: Asset, entry: dict) -> None:
    dest = PurePosixPath(asset.dest)
    files = [{"path": asset.dest, "size": entry["size"], "id": entry["sha256"]}]
    for name, info in sorted(entry.get("members", {}).items()):
        files.append({"path": str(dest.parent / name), "size": info["size"], "id": info["sha256"]})
    for f in files:
        plan.files.setdefault(f["id"], BundleFile(f["id"], f["size"], root / f["path"]))
    plan.manifest["assets"][asset.key] = {"files": files, "lock": entry}


def _add_derived(root: Path, plan: ExportPlan, key: str, entry: dict) -> None:
    files = [
        {"path": f"{entry['dest']}/{name}", "size": info["size"], "id": info["sha256"]}
        for name, info in sorted(entry["files"].items())
    ]
    for f in files:
        plan.files.setdefault(f["id"], BundleFile(f["id"], f["size"], root / f["path"]))
    plan.manifest["derived"][key] = {"files": files, "lock": entry}


def write_bundle(plan: ExportPlan, dest: Path, progress: Progress = lambda n: None) -> tuple[int, int]:
    """Write the archive (atomically: a temp file renamed at the end; zstd for NAME.tar.zst); (the archive's bytes,
    how many files had to be hashed: those the verified index did not vouch for)."""
    if not plan.keys:
        raise BundleError("nothing to export: every selected model is missing here or already in the --since lock")
    dest = output_file(dest.expanduser().absolute(), "--export")
    zstd = wants_zstd(dest)
    if zstd and zstandard() is None:
        raise BundleError(f"{dest.name}: zstd needs the zstandard module (./venv-setup core), or export to a .tar")
    sweep_temp_files(dest)  # what an export killed here before left
    index = VerifiedIndex(plan.root)
    try:
        with open_output(dest, zstd) as out:
            hashed = sum(
                _write_member(out, FILES + f.id, f, progress, index, kernel=not zstd)
                for f in sorted(plan.files.values(), key=lambda f: f.id)
            )
            data = json.dumps(plan.manifest, indent=1, sort_keys=True).encode()
            _write_header(out, MANIFEST, len(data))
            out.write(data + _padding(len(data)))
            out.write(b"\0" * (tarfile.BLOCKSIZE * 2))
    except FileNotFoundError as exc:
        raise BundleError(
            f"{exc.filename} vanished while it was exported (removed by another run?): nothing was "
            "written; export again"
        ) from None
    except OSError as exc:
        if (problem := write_problem(exc, dest.parent, plan.total_bytes, "export elsewhere")) is not None:
            raise problem from None
        raise
    finally:
        index.save()  # what this export hashed is not hashed again by the next one
    return dest.stat().st_size, hashed


def _padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def _write_header(out, name: str, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    out.write(info.tobuf(tarfile.PAX_FORMAT))


def _write_member(out, name: str, f: BundleFile, progress: Progress, index: VerifiedIndex, kernel: bool) -> bool:
    """Header, the file's bytes (checked against its id as they land in the archive unless the index vouches for
    them), padding; whether its bytes were hashed."""
    _write_header(out, name, f.size)
    known = index.known(f.source, f.id)
    hasher = None if known else Hasher(f.id, f.size)
    # The copy stops at f.size, so a file that grew is caught by its size, one that shrank by the bytes copied.
    ok = f.source.stat().st_size == f.size and copy_file(out, f.source, f.size, hasher, progress, kernel) == f.size
    if not ok or (hasher is not None and hasher.hexdigest() != f.id):
        raise StateError(
            f"{f.source} does not match its recorded hash (cache damaged): run "
            f"./cache-models.sh --verify --repair, then export again"
        )
    if not known:
        index.record(f.source, f.id)
    out.write(_padding(f.size))
    return not known
