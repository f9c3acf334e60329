"""--from-dir: register model files obtained elsewhere (a USB stick, another machine) as if downloaded.

Blobs are named by the hub's ids (sha256 for files the hub keeps in LFS, git blob sha1 otherwise), the snapshot
links, tree listing, refs and lock entry are written exactly as a download writes them, so loaders and --verify
cannot tell the difference.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from .. import cache
from ..cache import RemoteFile
from ..catalog import COMMIT_RE, Item, Model
from ..errors import BadInput
from ..util import git_sha1_file, sha256_file
from .hub_models import record_snapshot
from .plan import ItemResult

LFS_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".ckpt", ".npz", ".model", ".msgpack", ".h5", ".onnx")
LFS_MIN_BYTES = 10 << 20


class ProvisionError(BadInput):
    """A request that cannot be carried out as asked (bad input): exit code 2 at the CLI."""


def looks_like_lfs(path: str, size: int) -> bool:
    """Whether the hub would store this file with LFS (then its ETag is the sha256)."""
    return size > LFS_MIN_BYTES or path.endswith(LFS_SUFFIXES)


def lfs_pointer_sha1(sha256: str, size: int) -> str:
    """The git blob id the hub reports for an LFS file: the id of its pointer file."""
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    return hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()


def register_dir(root: Path, model: Item, source: Path, commit: str | None = None) -> ItemResult:
    """Copy a folder of model files into the cache as if downloaded: blobs by hash, snapshot links, refs, tree, lock."""
    if not isinstance(model, Model):
        raise ProvisionError(f"{model.key} is not a hub model; --from-dir registers hub models")
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
    blobs = cache.repo_dir(root, model.repo) / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    snapshot = cache.snapshot_dir(root, model.repo, commit)
    entries = {rel: _add_file(source / rel, rel, blobs, snapshot) for rel in wanted}
    existing = cache.read_tree(root, model.repo, commit) or {}
    cache.write_tree(root, model.repo, commit, {**existing, **entries})
    return record_snapshot(root, model, commit, list(entries.values()), 0)


def _add_file(src: Path, rel: str, blobs: Path, snapshot: Path) -> RemoteFile:
    """Copy one file into its blob (unless an intact one is there) and link it from the snapshot."""
    size = src.stat().st_size
    if looks_like_lfs(rel, size):
        sha = sha256_file(src)
        f = RemoteFile(rel, size, lfs_pointer_sha1(sha, size), sha)
    else:
        f = RemoteFile(rel, size, git_sha1_file(src))
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
    return f
