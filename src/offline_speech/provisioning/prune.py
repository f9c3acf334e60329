"""--prune: reclaim what the cache holds that nothing needs any more, never what something still uses.

What goes: revisions of a repo the lock no longer names (the old commit after --update) with the blobs only they
link, their tree listings and refs; conversions made from such a commit; payloads of huggingface_hub's shared
blob store that no repo blob links to (the `.refs` manifests are hints: every link is checked); partial downloads
nobody owns. Planning is the same code path as pruning, stopping before the writes (--prune --dry-run). Each
repo is pruned under its entries' locks, so a download of the same model is waited for, never broken.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from .. import cache, orphans
from ..catalog import Catalog
from .outcomes import Prunable, Pruned


def plan_prune(root: Path, catalog: Catalog) -> list[Prunable]:
    """Everything --prune would remove, with the bytes each frees."""
    lock = cache.read_lock(root)
    keep: dict[str, set[str]] = {}
    for entry in lock["models"].values():
        keep.setdefault(entry["repo"], set()).add(entry["commit"])
    items: list[Prunable] = []
    leaving: set[Path] = set()
    for repo, commits in sorted(keep.items()):
        for item in _old_revisions(root, repo, commits):
            items.append(item)
            leaving.update(item.blobs)
    items += _old_conversions(root, catalog, lock)
    items += _unlinked_payloads(root, leaving)
    items += _stale_partials(root)
    return items


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() and not path.is_symlink() else 0
    except OSError:
        return 0


def _links(snapshot: Path) -> set[Path]:
    return {cache.link_target(f) for f in snapshot.rglob("*") if f.is_symlink()}


def _old_revisions(root: Path, repo: str, commits: set[str]) -> list[Prunable]:
    snapshots = cache.repo_dir(root, repo) / "snapshots"
    found = sorted(snapshots.iterdir()) if snapshots.is_dir() else []
    kept = set().union(*(_links(s) for s in found if s.name in commits))
    out = []
    for snapshot in (s for s in found if s.name not in commits):
        blobs = tuple(sorted(_links(snapshot) - kept))
        size = sum(_size(b) for b in blobs)
        out.append(Prunable(f"{repo}@{snapshot.name[:12]}: a revision the lock no longer names", snapshot, size, blobs))
    return out


def _old_conversions(root: Path, catalog: Catalog, lock: dict) -> list[Prunable]:
    out = []
    for model in catalog.models:
        folder = cache.derived_root(root, model)
        if not folder.is_dir():
            continue
        entry = lock["derived"].get(cache.derived_key(model))
        current = root / entry["dest"] if entry else None
        for made in sorted(p for p in folder.iterdir() if p.is_dir() and p != current):
            size = sum(_size(p) for p in made.rglob("*"))
            out.append(Prunable(f"{model.key}: conversion of a revision the lock no longer names", made, size))
    return out


def _unlinked_payloads(root: Path, leaving: set[Path]) -> list[Prunable]:
    """Shared store payloads no repo blob links to, once the blobs in `leaving` are gone."""
    store = cache.shared_store(root)
    if not store.is_dir():
        return []
    linked: set[Path] = set()
    for blob in cache.repo_blobs(root):
        if blob not in leaving and (target := cache.store_target(root, blob)) is not None:
            linked.add(target)
    out = []
    for payload in sorted(store.glob("??/*")):
        if cache.is_store_file(root, payload) and payload.is_file() and payload not in linked:
            out.append(Prunable("a shared blob no cached repo links", payload, _size(payload)))
    return out


def _stale_partials(root: Path) -> list[Prunable]:
    hub = cache.hub_dir(root)
    out = []
    for partial in sorted(hub.glob("models--*/blobs/*.incomplete")):
        owner = hub / ".locks" / partial.parent.parent.name / (partial.name.split(".")[0] + ".lock")
        if orphans.stale(partial, orphans.GRACE, owner):
            out.append(Prunable("a partial download nobody is writing", partial, _size(partial)))
    return out


def prune(root: Path, catalog: Catalog, dry_run: bool) -> Pruned:
    """Plan, and unless `dry_run` remove what the plan names (each repo under its entries' locks, every shared
    payload re-checked for links under its own lock just before it goes)."""
    if dry_run:
        return Pruned(root, tuple(plan_prune(root, catalog)), True)
    keys = sorted(cache.read_lock(root)["models"])
    with contextlib.ExitStack() as stack:
        for key in keys:
            stack.enter_context(cache.entry_lock(root, key))
        items = plan_prune(root, catalog)
        done = [item for item in items if _remove(root, item)]
    return Pruned(root, tuple(done), False)


def _remove(root: Path, item: Prunable) -> bool:
    path = item.path
    if cache.is_store_file(root, path):
        return cache.release_store_payloads(root, {path}) > 0 or not path.exists()
    if path.parent.name == "snapshots":
        repo = path.parent.parent
        for blob in item.blobs:
            with contextlib.suppress(OSError):
                blob.unlink()
        (repo / "trees" / f"{path.name}.json").unlink(missing_ok=True)
        for ref in (repo / "refs").rglob("*") if (repo / "refs").is_dir() else ():
            with contextlib.suppress(OSError):
                if ref.is_file() and ref.read_text().strip() == path.name:
                    ref.unlink()
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    return not path.exists()
