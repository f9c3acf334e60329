"""The lock is derivable from the files: rebuild a broken one, fill in what a killed run never wrote.

A run killed between finishing a model's files and renaming the lock into place leaves a complete snapshot
(refs, tree listing, blobs) that the lock does not mention; a lock can also be truncated, hand-edited or from
another version. Everything it records can be read back from the cache itself: a model's commit from its ref
(or the catalog's pin), its files from the tree listing; an asset's sha256 from its file; a conversion's files
from its folder. `--verify --repair` rebuilds a lock it cannot read (the broken one is kept beside it), and
every cache-models run records complete entries the lock lacks. Nothing here trusts a file's bytes: --verify
hashes them as usual.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from pathlib import Path

from .. import cache
from ..catalog import Asset, Catalog, Model
from ..errors import StateError
from ..util import atomic_write, sha256_file, utc_now

EMPTY = {"schema": cache.LOCK_SCHEMA, "models": {}, "assets": {}, "derived": {}}


def model_entry(root: Path, model: Model) -> dict | None:
    """The lock entry of a model complete on disk (commit from its ref or pin, files from its tree), or None."""
    state = cache.model_state(root, model, EMPTY)
    if state.status != "complete" or not state.commit:
        return None
    return cache.model_lock_entry(model, state.commit, list(state.needed))


def asset_entry(root: Path, asset: Asset) -> dict | None:
    """The lock entry of an asset whose file is there (and, for an archive, whose members are unpacked)."""
    dest = root / asset.dest
    if not dest.is_file():
        return None
    members = {}
    if asset.unpack:
        with contextlib.suppress(OSError, zipfile.BadZipFile):
            with zipfile.ZipFile(dest) as z:
                for info in z.infolist():
                    if not info.is_dir():
                        data = z.read(info)
                        members[info.filename] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if not members or not all((dest.parent / m).is_file() for m in members):
            return None
    return {
        "url": asset.url(),
        "dest": asset.dest,
        "size": dest.stat().st_size,
        "sha256": sha256_file(dest),
        "members": members,
    }


def derived_entry(root: Path, model: Model, commit: str) -> dict | None:
    """The lock entry of a conversion folder of `model` at `commit`, when there is one."""
    folder = cache.derived_dir(root, model, commit)
    files = {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(folder.glob("*")) if p.is_file()
    }
    if not files:
        return None
    return {
        "source": model.key,
        "repo": model.repo,
        "source_commit": commit,
        "quantization": cache.CT2_QUANTIZATION,
        "dest": os.path.relpath(folder, root),
        "files": files,
    }


def rebuild(root: Path, catalog: Catalog) -> dict:
    """A lock made from what the cache holds of every catalog entry."""
    lock = json.loads(json.dumps(EMPTY))
    for item in catalog.items:
        if isinstance(item, Model):
            entry = model_entry(root, item)
            if entry:
                lock["models"][item.key] = entry | {"provisioned": utc_now()}
                made = derived_entry(root, item, entry["commit"])
                if made:
                    lock["derived"][cache.derived_key(item)] = made
        else:
            entry = asset_entry(root, item)
            if entry:
                lock["assets"][item.key] = entry
    return lock


def rebuild_broken_lock(root: Path, catalog: Catalog) -> Path | None:
    """When the lock cannot be read: keep it as <lock>.broken-<time> and write one rebuilt from the files.
    Returns where the broken one went (None when the lock was readable)."""
    try:
        cache.read_lock(root)
        return None
    except StateError:
        pass
    path = cache.lock_path(root)
    with cache.cache_lock(root):
        kept = path.with_name(f"{path.name}.broken-{utc_now().replace(':', '')}")
        os.replace(path, kept)
        atomic_write(path, (json.dumps(rebuild(root, catalog), indent=1, sort_keys=True) + "\n").encode())
    return kept


def record_missing(root: Path, items: list) -> list[str]:
    """Record in the lock the given entries that are complete on disk but absent from it (a run killed before the
    lock was written); the keys recorded. Silent where the cache cannot be written."""
    lock = cache.read_lock(root)
    done = []
    for item in items:
        if isinstance(item, Model) and item.key not in lock["models"]:
            entry = model_entry(root, item)
            if entry:
                with contextlib.suppress(OSError):
                    cache.update_lock(root, "models", item.key, entry)
                    done.append(item.key)
    return done
