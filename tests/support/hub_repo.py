"""What the test hub serves for one model repo: its files with the hub's ids, its commit, and the JSON the hub's API
answers about it (model info, tree listing).

Standard library only (hub.py also runs by path in other venvs). Apart from the HTTP plumbing (hub_http.py) so
that the repo model, the part tests build and assert on, reads on its own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024
LFS_SUFFIXES = frozenset({".bin", ".safetensors", ".pt", ".pth", ".ckpt", ".npz", ".model", ".msgpack", ".h5", ".onnx"})
_TIMESTAMP = "2024-01-01T00:00:00.000Z"  # fixed, so model_info is deterministic
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")


def git_blob_sha1(data: bytes) -> str:
    """Git object id of a blob: sha1 of `blob <len>\\0` + data (the hub's ETag for non-LFS files)."""
    digest = hashlib.sha1(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of data (the hub's ETag for LFS files)."""
    return hashlib.sha256(data).hexdigest()


def is_lfs_by_default(path: str, data: bytes) -> bool:
    """Whether the hub would store this file in LFS: bigger than 1 MiB or a weights-like suffix."""
    return len(data) > MIB or Path(path).suffix in LFS_SUFFIXES


@dataclass(frozen=True)
class RepoFile:
    """One served file with its precomputed hashes."""

    data: bytes
    blob_id: str  # git oid as listed by the tree endpoint (of the LFS pointer for LFS files)
    sha256: str | None  # only for LFS files
    pointer_size: int | None

    @classmethod
    def build(cls, data: bytes, lfs: bool) -> RepoFile:
        if not lfs:
            return cls(data, git_blob_sha1(data), None, None)
        sha = sha256_hex(data)
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()
        return cls(data, git_blob_sha1(pointer), sha, len(pointer))

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id

    def tree_entry(self, path: str, xet_hash: str | None = None) -> dict:
        entry: dict = {"type": "file", "oid": self.blob_id, "size": len(self.data), "path": path}
        if self.sha256 is not None:
            entry["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": self.pointer_size}
        if xet_hash is not None:
            entry["xetHash"] = xet_hash
        return entry


@dataclass
class HubRepo:
    """A model repo served at one commit (reachable as "main" or by that commit)."""

    repo_id: str
    files: dict[str, bytes]
    commit: str | None = None
    lfs: set[str] | None = None
    gated: bool = False
    tokens: frozenset[str] = frozenset()
    _meta: dict[str, RepoFile] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        org, _, name = self.repo_id.partition("/")
        if not org or not name or "/" in name:
            raise ValueError(f"repo_id must be ORG/NAME, got {self.repo_id!r}")
        if self.lfs is None:
            self.lfs = {path for path, data in self.files.items() if is_lfs_by_default(path, data)}
        if unknown := set(self.lfs) - self.files.keys():
            raise ValueError(f"lfs names files the repo lacks: {sorted(unknown)}")
        self.tokens = frozenset(self.tokens)
        # Hash once here: a 75 MB model must not be rehashed per request.
        self._meta = {p: RepoFile.build(d, p in self.lfs) for p, d in sorted(self.files.items())}
        if self.commit is None:
            digest = hashlib.sha1(self.repo_id.encode())
            for path, meta in self._meta.items():
                digest.update(f"\0{path}\0{meta.blob_id}".encode())
            self.commit = digest.hexdigest()
        elif not _COMMIT_RE.fullmatch(self.commit):
            raise ValueError(f"commit must be 40 lowercase hex digits, got {self.commit!r}")

    def file(self, path: str) -> RepoFile | None:
        """The served file at `path`, or None."""
        return self._meta.get(path)

    def model_info(self, blobs: bool) -> dict:
        """Body of /api/models/ORG/NAME; sizes and hashes only with blobs=true, as on the hub."""
        siblings = []
        for path, meta in self._meta.items():
            sibling: dict = {"rfilename": path}
            if blobs:
                sibling.update(size=len(meta.data), blobId=meta.blob_id)
                if meta.sha256 is not None:
                    sibling["lfs"] = {"size": len(meta.data), "sha256": meta.sha256, "pointerSize": meta.pointer_size}
            siblings.append(sibling)
        return {
            "_id": (self.commit or "")[:24],
            "id": self.repo_id,
            "modelId": self.repo_id,
            "author": self.repo_id.split("/")[0],
            "sha": self.commit,
            "lastModified": _TIMESTAMP,
            "createdAt": _TIMESTAMP,
            "private": False,
            "disabled": False,
            "gated": "manual" if self.gated else False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(len(m.data) for m in self._meta.values()),
        }

    def tree_entries(self, prefix: str, recursive: bool, xet_hash=lambda sha256: None) -> list[dict] | None:
        """Tree listing under prefix ("" = root); None if prefix is not a folder. `xet_hash(sha256)` gives the Xet
        hash a Xet-backed file is listed with (the hub lists `xetHash`)."""
        base = f"{prefix}/" if prefix else ""
        files: list[dict] = []
        folders: set[str] = set()
        for path, meta in self._meta.items():
            if not path.startswith(base):
                continue
            parts = path[len(base) :].split("/")
            if not recursive and len(parts) > 1:
                folders.add(base + parts[0])
                continue
            folders.update(base + "/".join(parts[:i]) for i in range(1, len(parts)))
            files.append(meta.tree_entry(path, xet_hash(meta.sha256)))
        if prefix and not files and not folders:
            return None
        dirs = [
            {"type": "directory", "oid": hashlib.sha1(f"tree {d}".encode()).hexdigest(), "size": 0, "path": d}
            for d in folders
        ]
        return sorted(dirs + files, key=lambda entry: entry["path"])
