"""--from-dir: register model files obtained elsewhere (a USB stick, another machine), checked before they count.

Files are checked against the hub's ids wherever something here knows them for the commit they claim to be (the
catalog's pin, or --revision, or the commit the cache already holds): a tree listing recorded in the cache, the
lock's entry, or the sha256 pins the catalog carries for that commit. Every file the loader needs must be there
with that size and hash; anything else (missing weights, random bytes, a truncated file) is refused in one line
and nothing in the cache changes, so a good cached model is never replaced by a bad one.

Where nothing is known (a branch-tracking entry, files of a commit this cache never saw), the files are registered
as *local, unverified*: under a revision of their own, `local-<hash of the files>`, which no hub commit can be
(hub commits are 40 hex digits), so --info shows it and nothing mistakes it for the hub's. Such a registration
never replaces a complete hub snapshot (--clear the entry first).

Blobs are named by the hub's ids (sha256 for files the hub keeps in LFS, git blob sha1 otherwise), written with
the mode a download gets (0666 less the umask), and the snapshot links, tree listing, refs and lock entry are
written exactly as a download writes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import cache
from ..cache import RemoteFile
from ..catalog import COMMIT_RE, Item, Model
from ..errors import BadInput
from ..util import CHUNK, default_mode, digest
from .contract import ItemResult
from .hub_models import record_snapshot

LFS_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".ckpt", ".npz", ".model", ".msgpack", ".h5", ".onnx")
LFS_MIN_BYTES = 10 << 20
WEIGHTS_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".ckpt", ".npz", ".msgpack", ".h5", ".onnx")
LOCAL_PREFIX = "local-"  # a revision registered from files nothing here could check (never 40 hex: no hub commit)
SHOWN_PROBLEMS = 3


class ProvisionError(BadInput):
    """A request that cannot be carried out as asked (bad input): exit code 2 at the CLI."""


def looks_like_lfs(path: str, size: int) -> bool:
    """Whether the hub would store this file with LFS (then its ETag is the sha256)."""
    return size > LFS_MIN_BYTES or path.endswith(LFS_SUFFIXES)


def lfs_pointer_sha1(sha256: str, size: int) -> str:
    """The git blob id the hub reports for an LFS file: the id of its pointer file."""
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    return hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()


def is_local(commit: str | None) -> bool:
    """Whether a recorded revision is a local, unverified registration rather than a hub commit."""
    return bool(commit) and commit.startswith(LOCAL_PREFIX)


def local_notes(root: Path, keys: list[str]) -> list[str]:
    """A note for each of `keys` the lock records as a local, unverified registration (--info, --verify)."""
    models = cache.read_lock(root)["models"]
    return [
        f"{key} is local, unverified ({models[key]['commit']}): registered with --from-dir from files nothing "
        f"here could check against the hub; --verify checks them against what was registered"
        for key in keys
        if key in models and is_local(models[key].get("commit"))
    ]


@dataclass(frozen=True)
class Known:
    """What something here knows of a commit's files: hub ids (a tree listing, the lock) or sha256 pins."""

    commit: str
    files: dict[str, RemoteFile | str]  # path -> its hub ids, or the sha256 the catalog pins
    source: str  # where from, for messages


@dataclass
class Staged:
    """A source file copied into the blobs folder under a temporary name, hashed both ways on the way."""

    path: str
    tmp: Path
    size: int
    sha256: str
    git_sha1: str

    def as_remote(self) -> RemoteFile:
        """Its hub ids, when no listing says whether the hub keeps it in LFS."""
        if looks_like_lfs(self.path, self.size):
            return RemoteFile(self.path, self.size, lfs_pointer_sha1(self.sha256, self.size), self.sha256)
        return RemoteFile(self.path, self.size, self.git_sha1)

    def problem(self, expected: RemoteFile | str) -> str | None:
        """What differs from the known ids, None when it is that file."""
        if isinstance(expected, str):
            return None if self.sha256 == expected else f"{self.path}: sha256 differs"
        if self.size != expected.size:
            how = "truncated" if self.size < expected.size else "too long"
            return f"{self.path}: {how} ({self.size} bytes, expected {expected.size})"
        actual = self.sha256 if expected.lfs_sha256 else self.git_sha1
        return None if actual == expected.etag else f"{self.path}: {expected.hash_kind} differs"


def known_ids(root: Path, model: Model, commit: str) -> Known | None:
    """The files of `model` at hub commit `commit` as something here knows them, or None."""
    tree = cache.read_tree(root, model.repo, commit)
    if tree:
        return Known(commit, dict(tree), "the tree listing in the cache")
    entry = cache.read_lock(root)["models"].get(model.key)
    if entry and entry.get("repo") == model.repo and entry.get("commit") == commit and entry.get("files"):
        files = {
            f["path"]: RemoteFile(f["path"], f["size"], f.get("git-sha1", ""), f.get("sha256")) for f in entry["files"]
        }
        return Known(commit, dict(files), "the lock")
    pins = model.pinned_files(commit)
    if pins:
        return Known(commit, dict(pins), "the catalog's pins")
    return None


def claimed_commit(root: Path, model: Model, revision: str | None) -> str | None:
    """The hub commit the files claim to be: --revision, else the catalog's pin, else the one the cache holds."""
    if revision is not None:
        if not COMMIT_RE.match(revision):
            raise ProvisionError(f"--revision {revision}: not a 40-hex commit")
        if model.pinned and revision != model.revision:
            raise ProvisionError(f"--revision {revision}: the catalog pins {model.key} to {model.revision}")
        return revision
    if model.pinned:
        return model.revision
    commit = cache.known_commit(root, model, cache.read_lock(root))
    return commit if commit and COMMIT_RE.match(commit) else None


def register_dir(root: Path, model: Item, source: Path, revision: str | None = None) -> ItemResult:
    """Check a folder of model files against what is known of their commit, then register them as if downloaded
    (or, where nothing is known, as a local, unverified revision). ProvisionError, with the cache unchanged, for
    files that are not what they claim."""
    if not isinstance(model, Model):
        raise ProvisionError(f"{model.key} is not a hub model; --from-dir registers hub models")
    if not source.is_dir():
        raise ProvisionError(f"--from-dir {source}: not a directory")
    present = sorted(
        p.relative_to(source).as_posix()
        for p in source.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(source).parts)
    )
    _refuse_links_out(source, present)
    commit = claimed_commit(root, model, revision)
    known = known_ids(root, model, commit) if commit else None
    if known is None and model.pinned:
        raise ProvisionError(
            f"--from-dir {source}: nothing here knows the files of {model.key}@{commit[:8]} to check "
            f"them against (no tree listing cached, no pins in the catalog): fetch it with "
            f"./cache-models.sh {model.key}, or import a bundle"
        )
    wanted = cache.select_paths(model, list(known.files) if known else present)
    if not wanted:
        raise ProvisionError(f"--from-dir {source}: no file matches {model.key}'s patterns {list(model.files)}")
    blobs = cache.repo_dir(root, model.repo) / "blobs"
    with cache.cache_lock(root, f"entry-{model.key}"):
        staged: list[Staged] = []
        try:
            if known is not None:
                files = _check_known(source, present, wanted, known, blobs, staged, model)
                commit, note = known.commit, f"checked against {known.source}"
            else:
                _refuse_replacing_hub_snapshot(root, model, source)
                files = _check_local(source, wanted, blobs, staged, model)
                commit = LOCAL_PREFIX + digest([[f.path, f.etag] for f in files])[: 40 - len(LOCAL_PREFIX)]
                unknown = f"--revision {revision} is unknown here" if revision else "nothing here knows the hub's ids"
                note = (
                    f"local, unverified ({unknown}: no tree listing cached, no pins in the catalog); "
                    f"--clear {model.key} and fetch it to replace them"
                )
            _place(root, model, commit, staged, files)
        finally:
            for s in staged:
                with contextlib.suppress(FileNotFoundError):
                    s.tmp.unlink()
        result = record_snapshot(root, model, commit, files, 0)
    if not result.ok:
        return result
    return ItemResult(result.key, True, 0, f"{model.repo}@{commit if is_local(commit) else commit[:8]}; {note}")


def _check_known(
    source: Path, present: list[str], wanted: list[str], known: Known, blobs: Path, staged: list[Staged], model: Model
) -> list[RemoteFile]:
    """Stage every needed file and compare it with the known ids; ProvisionError listing what differs (what is
    missing first, before a byte is copied)."""
    problems = [f"{rel}: missing" for rel in wanted if rel not in present]
    for rel in wanted if not problems else ():
        if problem := _stage(source / rel, rel, blobs, staged).problem(known.files[rel]):
            problems.append(problem)
    if problems:
        shown = "; ".join(problems[:SHOWN_PROBLEMS]) + (
            f"; and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        )
        raise ProvisionError(
            f"--from-dir {source}: not the files of {model.repo}@{known.commit[:8]} (checked against "
            f"{known.source}: {shown}); nothing was changed"
        )
    return [f if isinstance(f := known.files[s.path], RemoteFile) else s.as_remote() for s in staged]


def _check_local(source: Path, wanted: list[str], blobs: Path, staged: list[Staged], model: Model) -> list[RemoteFile]:
    """Files nothing can check: at least refuse what cannot be a model (no weights, a config that is not JSON)."""
    if not any(rel.endswith(WEIGHTS_SUFFIXES) for rel in wanted):
        raise ProvisionError(
            f"--from-dir {source}: no weights among {', '.join(wanted)} for {model.key}; nothing was changed"
        )
    for rel in wanted:
        if rel.endswith(".json"):
            try:
                json.loads((source / rel).read_bytes())
            except (ValueError, OSError) as exc:
                raise ProvisionError(
                    f"--from-dir {source}: {rel} is not valid JSON ({type(exc).__name__}); nothing was changed"
                ) from None
        _stage(source / rel, rel, blobs, staged)
    return [s.as_remote() for s in staged]


def _refuse_replacing_hub_snapshot(root: Path, model: Model, source: Path) -> None:
    state = cache.model_state(root, model, cache.read_lock(root))
    if state.status == "complete" and not is_local(state.commit):
        raise ProvisionError(
            f"--from-dir {source}: {model.key} is cached at hub commit {state.commit[:8]} and these files "
            f"are not it; unverified files never replace it (--clear {model.key} first to use them)"
        )


def _refuse_links_out(source: Path, present: list[str]) -> None:
    """A file reached through a link that leaves the folder (`vocabulary.txt -> /etc/shadow`) is not the folder's:
    refused in one line, before a byte is read."""
    inside = source.resolve()
    for rel in present:
        real = (source / rel).resolve()
        if real != inside and inside not in real.parents:
            raise ProvisionError(
                f"--from-dir {source}: {rel} is a link to {real}, outside the folder; copy the file "
                "into the folder to register it; nothing was changed"
            )


def _stage(src: Path, rel: str, blobs: Path, staged_so_far: list[Staged]) -> Staged:
    """Copy `src` into a temporary blob, hashing it (sha256 and git blob sha1) in the same pass; the temporary blob
    joins `staged_so_far` first, so the caller removes it whatever happens."""
    blobs.mkdir(parents=True, exist_ok=True)
    st = src.stat()
    if not stat.S_ISREG(st.st_mode):
        raise ProvisionError(f"--from-dir: {src} is not a regular file; nothing was changed")
    size = st.st_size
    sha256, git_sha1 = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".from-dir-", suffix=".incomplete")
    staged = Staged(rel, Path(tmp), 0, "", "")
    staged_so_far.append(staged)
    with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
        while chunk := f.read(CHUNK):
            sha256.update(chunk)
            git_sha1.update(chunk)
            out.write(chunk)
            staged.size += len(chunk)
    if staged.size != size:  # the git id's header was made for the size before: the file changed while read
        raise ProvisionError(f"--from-dir: {src} changed while it was read; nothing was changed")
    staged.sha256, staged.git_sha1 = sha256.hexdigest(), git_sha1.hexdigest()
    os.chmod(tmp, default_mode() & (stat.S_IMODE(st.st_mode) | 0o200))  # never readable by more than the source
    return staged


def _place(root: Path, model: Model, commit: str, staged: list[Staged], files: list[RemoteFile]) -> None:
    """Move the checked blobs into place, link them from the snapshot, record the tree listing."""
    blobs = cache.repo_dir(root, model.repo) / "blobs"
    snapshot = cache.snapshot_dir(root, model.repo, commit)
    for s, f in zip(staged, files):
        blob = blobs / f.etag
        os.replace(s.tmp, blob)  # a blob already there is replaced by these checked bytes, never written through
        link = snapshot / f.path
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    existing = cache.read_tree(root, model.repo, commit) or {}
    cache.write_tree(root, model.repo, commit, {**existing, **{f.path: f for f in files}})
