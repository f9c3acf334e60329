"""Verify (offline) and repair: hash every file an entry must hold against the hub's ids, re-fetch only the damage.

An entry's expected files come from the lock (what was provisioned), else from the cached tree listing; a
conversion made here is checked against the sizes and sha256 the lock recorded when it was made. A snapshot file
must link straight to a regular blob of the cache: a blob replaced by a link (into the cache or out of it) is
damage, and repair replaces the link with a downloaded, verified file without ever writing through it.
"""

from __future__ import annotations

from pathlib import Path

from .. import cache
from ..cache import RemoteFile
from ..catalog import Model
from ..verified import VerifiedIndex
from .contract import Entry, FileProblem, ItemResult, Plan, Reporter, VerifyResult
from .download import fetch
from .plan import free_bytes, plan
from .remote import Remote


def verify(root: Path, entries: list[Entry]) -> list[VerifyResult]:
    """Hash every file of every entry (and of what was made from it) against the hub's ids: sha256 for LFS
    files and conversions, git blob sha1 otherwise. Every file is hashed, whatever the verified index says (bit
    rot changes no stat); what is found right is recorded there, so the cached check need not hash it again."""
    lock = cache.read_lock(root)
    index = VerifiedIndex(root)
    results = []
    for entry in entries:
        commit, files = entry.expected_files(root, lock)
        if not files:
            results.append(VerifyResult(entry.key, "missing", 0, (FileProblem("*", "missing", "not provisioned"),)))
            continue
        repo = entry.item.repo if isinstance(entry.item, Model) else None
        problems = tuple(
            FileProblem(f.path, *problem)
            for f in files
            if (problem := check_file(entry.local_path(root, commit, f.path), f, index, root, repo))
        )
        results.append(VerifyResult(entry.key, "problems" if problems else "ok", len(files), problems))
        made = entry.conversion.expected_files(root, lock) if entry.conversion else None
        if made is not None:
            folder, made_files = made
            bad = tuple(
                FileProblem(f.path, *problem) for f in made_files if (problem := check_file(folder / f.path, f, index))
            )
            results.append(VerifyResult(entry.conversion.key, "problems" if bad else "ok", len(made_files), bad))
    index.save()
    return results


def check_file(
    path: Path, f: RemoteFile, index: VerifiedIndex, root: Path | None = None, repo: str | None = None
) -> tuple[str, str] | None:
    """(kind, detail) of what is wrong with one file, None when it has the expected size and hash (and, for a
    snapshot file of `repo`, is a link straight to a regular blob of the cache)."""
    try:
        size = path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return ("missing", "dangling link" if path.is_symlink() else "")
    if size != f.size:
        return ("truncated" if size < f.size else "corrupt", f"{size} bytes, expected {f.size}")
    if root is not None and repo is not None and (problem := cache.blob_problem(root, repo, path)):
        return ("corrupt", problem)
    actual = index.hash(path, f.etag)
    if actual != f.etag:
        return ("corrupt", f"{f.hash_kind} {(actual or 'unreadable')[:12]}…, expected {f.etag[:12]}…")
    return None


def keys_of(entry: Entry) -> set[str]:
    """The verify rows an entry gives: its own, and its conversion's."""
    return {entry.key} | ({entry.conversion.key} if entry.conversion else set())


def repair(
    root: Path, entries: list[Entry], results: list[VerifyResult], remote: Remote, reporter: Reporter
) -> list[ItemResult]:
    """Re-fetch only the files verify found missing, truncated or corrupt; re-provision entries never cached;
    convert again what was made from a model when its conversion is damaged."""
    lock = cache.read_lock(root)
    by_key = {r.key: r for r in results}
    out = []
    for entry in entries:
        made = by_key.get(entry.conversion.key) if entry.conversion else None
        if made is not None and made.status != "ok":
            entry.conversion.remove(root)
            ok, message = entry.conversion.make(root)
            out.append(ItemResult(made.key, ok, 0, message))
        result = by_key.get(entry.key)
        if result is None or result.status == "ok":
            continue
        damaged = entry.repair_plan(root, lock, result)
        the_plan = plan(root, [entry], remote) if damaged is None else Plan((damaged,), free_bytes(root))
        out += fetch(root, the_plan, remote, reporter)
    return out
