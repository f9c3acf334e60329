"""--from-hf-cache: take complete, verified snapshots of catalog repos from another standard Hugging Face cache.

Users often already have models in ~/.cache/huggingface/hub (or $HF_HUB_CACHE). A blob there is named by its hub
id (sha256 for LFS files, git blob sha1 otherwise), so it can be checked offline: each file the catalog's loader
needs is hashed against its blob name and only then hard-linked into the project cache (copied where the two are
on different file systems), with the snapshot links, tree listing, refs and lock entry a download writes. Nothing
is asked of the network; what the other cache lacks is downloaded as usual afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .. import cache
from ..cache import RemoteFile
from ..catalog import COMMIT_RE, Model
from ..util import place_file
from ..verified import hash_as
from .contract import ItemResult
from .hub_models import record_snapshot
from .register import lfs_pointer_sha1


@dataclass(frozen=True)
class Found:
    """What another cache holds of one catalog model: the commit, the loader's files, and what is missing."""

    model: Model
    commit: str
    snapshot: Path
    files: tuple[RemoteFile, ...]
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return bool(self.files) and not self.missing


def repo_folder(hub: Path, repo: str) -> Path:
    return hub / f"models--{repo.replace('/', '--')}"


def _commit(folder: Path, model: Model) -> str | None:
    if model.pinned:
        return model.revision
    with contextlib.suppress(OSError):
        return (folder / "refs" / model.revision).read_text().strip() or None
    return None


def _tree(folder: Path, commit: str) -> dict[str, RemoteFile] | None:
    """The other cache's tree listing of `commit` (huggingface_hub >= 1 writes one), or None."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
        data = json.loads((folder / "trees" / f"{commit}.json").read_text())
        return {p: RemoteFile(p, int(i["size"]), i["blob_id"], i.get("lfs_sha256")) for p, i in data["files"].items()}
    return None


def find(hub: Path, model: Model, commit: str | None = None) -> Found | None:
    """The snapshot of `model` (at `commit`, default what its revision points to there) in the cache at `hub` (its
    hub folder), judged without hashing; None if absent."""
    folder = repo_folder(hub, model.repo)
    commit = commit or _commit(folder, model)
    if commit is None or not COMMIT_RE.match(commit):
        return None
    snapshot = folder / "snapshots" / commit
    if not snapshot.is_dir():
        return None
    present = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    tree = _tree(folder, commit)
    wanted = cache.select_paths(model, list(tree) if tree else present)
    files, missing = [], []
    for rel in wanted:
        blob = snapshot / rel
        if not blob.is_file():
            missing.append(rel)
            continue
        etag, size = _blob_name(blob), blob.stat().st_size
        if tree is not None:
            f = tree[rel]
            if (f.etag, f.size) != (etag, size):
                missing.append(rel)
                continue
        elif len(etag) == 64:
            f = RemoteFile(rel, size, lfs_pointer_sha1(etag, size), etag)
        elif len(etag) == 40:
            f = RemoteFile(rel, size, etag)
        else:
            missing.append(rel)  # not a hub blob name: nothing to check it against
            continue
        files.append(f)
    return Found(model, commit, snapshot, tuple(files), tuple(missing))


def _blob_name(file: Path) -> str:
    """The repo blob a snapshot file links to (`blobs/<etag>`), named by its hub id. Its link is followed one step
    only: in huggingface_hub's shared store layout (Xet files) the blob is itself a link to `blobs/<2 hex>/<xet
    hash>`, a name that is not the file's hub id."""
    try:
        return cache.link_target(file).name
    except OSError:
        return file.name


def complete_elsewhere(hub: Path, root: Path, models: Iterable[Model], lock: dict) -> list[Found]:
    """The models complete in the cache at `hub` (judged without hashing, as --info judges) that are not complete
    in the project cache at `root`: what --from-hf-cache would link."""
    if not hub.is_dir() or hub.resolve() == cache.hub_dir(root).resolve():
        return []
    found = []
    for model in models:
        if cache.model_state(root, model, lock).status != "complete":
            there = find(hub, model)
            if there is not None and there.complete:
                found.append(there)
    return found


def adopt(root: Path, found: Found) -> ItemResult:
    """Hash each file of a complete snapshot against its hub id, then link it into the project cache."""
    model = found.model
    bad = [f.path for f in found.files if hash_as(found.snapshot / f.path, f.etag) != f.etag]
    if bad:
        return ItemResult(model.key, False, 0, f"not taken from the other cache: {', '.join(bad)} damaged there")
    with cache.cache_lock(root, f"entry-{model.key}"):
        blobs = cache.repo_dir(root, model.repo) / "blobs"
        snapshot = cache.snapshot_dir(root, model.repo, found.commit)
        for f in found.files:
            blob = blobs / f.etag
            if not (blob.is_file() and not blob.is_symlink() and blob.stat().st_size == f.size):
                place_file(Path(os.path.realpath(found.snapshot / f.path)), blob)
            link = snapshot / f.path
            link.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(os.path.relpath(blob, link.parent))
        existing = cache.read_tree(root, model.repo, found.commit) or {}
        cache.write_tree(root, model.repo, found.commit, {**{f.path: f for f in found.files}, **existing})
        result = record_snapshot(root, model, found.commit, list(found.files), 0)
    if result.ok:
        return ItemResult(
            model.key, True, 0, f"{model.repo}@{found.commit[:8]} linked from {found.snapshot.parents[1]}"
        )
    return result
