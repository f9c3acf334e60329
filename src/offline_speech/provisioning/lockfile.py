"""Reproducible sets: a lock file pins every key to a commit (--lock-file); --update moves keys on purpose.

A lock file is the cache's own `offline-speech.lock.json` or a copy of it (a team commits one to its repository,
an air-gapped machine's lock travels to --export --since). With --lock-file each model is provisioned at exactly
the commit the lock records, not at what its branch points to today; a key the lock cannot have here (unknown to
this catalog, another repo, a commit the catalog pins otherwise) is refused in one line before any request, and
a commit the hub no longer has fails that key alone when it is planned. Afterwards every file the lock lists is
compared with what was provisioned, so a mirror serving other bytes under the same commit is caught.

--update asks the hub where each named key's branch points now and provisions that commit. Without it nothing
cached is ever re-checked against the network: a complete entry stays what it is until someone asks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from .. import cache
from ..catalog import COMMIT_RE, Catalog, CatalogError, Item, Model
from ..errors import StateError
from ..util import input_file
from .contract import Entry, ItemResult
from .hub_errors import describe_hub_error
from .hub_models import ModelEntry
from .plan import PLANNERS
from .remote import Remote

SECTIONS = ("models", "assets", "derived")
MAX_LOCK_BYTES = 64 << 20  # a lock of every catalog entry is tens of kB


def read_lock_file(path: Path, flag: str) -> dict:
    """A lock file given to `flag` (--since, --lock-file): its models, assets and derived sections. One line naming
    the file when it is missing (BadInput) or not a readable offline-speech lock (StateError); exit 2 either way."""
    input_file(path, flag, MAX_LOCK_BYTES)  # a FIFO or /dev/zero is refused, never read
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateError(f"{flag} {path}: not a readable lock file ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(s, {}), dict) for s in SECTIONS):
        raise StateError(f"{flag} {path}: not an offline-speech lock file")
    sections = {s: data.get(s, {}) for s in SECTIONS}
    if not all(isinstance(e, dict) for s in SECTIONS for e in sections[s].values()):
        raise StateError(f"{flag} {path}: not an offline-speech lock file (an entry is not an object)")
    return sections


@dataclass(frozen=True)
class Move:
    """What --update did to one key: from the commit cached before (None: none) to the newest (None: not moved)."""

    key: str
    old: str | None
    new: str | None
    why: str = ""  # why it was not moved

    @property
    def text(self) -> str:
        if self.new is None:
            return self.why
        if self.old == self.new:
            return f"already newest ({self.new[:12]})"
        return (
            f"updated {self.old[:12]} -> {self.new[:12]}"
            if self.old
            else f"newest is {self.new[:12]} (not cached before)"
        )


@dataclass(frozen=True)
class Pinned:
    """A selection with each entry's commit decided: what to provision, the keys refused before any request (one
    line each), notes for the user, and (--update) what moved."""

    entries: tuple[Entry, ...]
    refused: tuple[ItemResult, ...] = ()
    notes: tuple[str, ...] = ()
    moves: tuple[Move, ...] = ()


def lock_items(catalog: Catalog, data: dict, path: Path, platform_id: str) -> tuple[list[Item], Pinned]:
    """Every key a lock file records that runs on `platform_id`, as catalog entries (models, then assets; a
    conversion comes with its model); a refusal for each key this catalog does not know, a note for each left out
    because it runs elsewhere (a Mac's MLX model in a lock used on Linux)."""
    items, refused, notes = [], [], []
    for key in [*data["models"], *data["assets"]]:
        try:
            item = catalog.get(key)
        except CatalogError:
            refused.append(
                ItemResult(
                    key,
                    False,
                    0,
                    f"in {path} but not in this catalog (a lock made by another version of offline-speech?): left out",
                )
            )
            continue
        if item.runs_on(platform_id):
            items.append(item)
        else:
            notes.append(
                f"{key}: in {path}, but it runs only on {', '.join(item.platforms)}: left out (name it to "
                "fetch it anyway)"
            )
    return items, Pinned((), tuple(refused), tuple(notes))


def pin_to_lock(entries: list[Entry], data: dict, path: Path) -> Pinned:
    """Each model at the commit the lock records; what the lock cannot give is refused, what it lacks noted."""
    kept, refused, notes = [], [], []
    for entry in entries:
        item = entry.item
        recorded = data["models" if isinstance(item, Model) else "assets"].get(entry.key)
        if recorded is None:
            follows = f"the catalog's revision ({item.revision})" if isinstance(item, Model) else "its URL"
            notes.append(f"{entry.key}: not in {path}: provisioned at {follows}")
            kept.append(entry)
        elif not isinstance(entry, ModelEntry):
            kept.append(entry)  # a file at a fixed URL: its sha256 is compared with the lock's afterwards
        elif (why := _unusable(entry.item, recorded)) is not None:
            refused.append(ItemResult(entry.key, False, 0, f"{why} ({path})"))
        else:
            kept.append(entry if entry.item.pinned else replace(entry, commit=recorded["commit"]))
    return Pinned(tuple(kept), tuple(refused), tuple(notes))


def _unusable(model: Model, recorded: dict) -> str | None:
    """Why a lock's model entry cannot be provisioned with this catalog, or None."""
    commit = recorded.get("commit")
    if not isinstance(commit, str) or not COMMIT_RE.match(commit):
        return f"the lock records no commit for {model.key}"
    if recorded.get("repo") != model.repo:
        return f"the lock has {model.key} from {recorded.get('repo')}, this catalog from {model.repo}"
    if model.pinned and commit != model.revision:
        return (
            f"the lock has {model.repo}@{commit[:12]}, this catalog pins {model.revision[:12]} "
            "(a lock made by another version of offline-speech)"
        )
    return None


def check_against_lock(root: Path, data: dict, results: tuple[ItemResult, ...], path: Path) -> tuple[ItemResult, ...]:
    """Fail each provisioned key whose files differ from what the lock lists (same commit, other bytes: a mirror
    serving something else) or whose asset has another sha256."""
    lock = cache.read_lock(root)
    checked = []
    for result in results:
        problem = _differs(lock, data, result.key) if result.ok else None
        checked.append(replace(result, ok=False, message=f"{problem} ({path})") if problem else result)
    return tuple(checked)


def _differs(lock: dict, data: dict, key: str) -> str | None:
    if key in data["assets"]:
        ours, theirs = lock["assets"].get(key, {}).get("sha256"), data["assets"][key].get("sha256")
        if theirs and ours != theirs:
            return f"its URL now serves sha256 {str(ours)[:12]}, the lock has {theirs[:12]}"
        return None
    theirs = data["models"].get(key)
    ours = lock["models"].get(key)
    if not theirs or not ours:
        return None
    listed = {f.get("path"): _file_id(f) for f in theirs.get("files", []) if isinstance(f, dict)}
    other = [f["path"] for f in ours["files"] if f["path"] in listed and listed[f["path"]] != _file_id(f)]
    return f"{', '.join(other)} differ from the lock's at the same commit" if other else None


def _file_id(f: dict) -> str | None:
    return f.get("sha256") or f.get("git-sha1")


def move_to_newest(root: Path, entries: list[Entry], keys: set[str], remote: Remote) -> Pinned:
    """--update: the entries named by `keys` at the commit their branch points to on the hub now (asked once per
    key, side by side); the others as they are."""
    from concurrent.futures import ThreadPoolExecutor  # here: a fast start for runs that plan nothing

    lock = cache.read_lock(root)
    asked = [e for e in entries if e.key in keys and isinstance(e, ModelEntry) and not e.item.pinned]
    with ThreadPoolExecutor(max_workers=PLANNERS) as pool:
        answers = dict(zip([e.key for e in asked], pool.map(lambda e: _newest(e.item, remote), asked)))
    kept, refused, moves = [], [], []
    for entry in entries:
        if entry.key not in keys:
            kept.append(entry)
            continue
        if entry.key not in answers:
            why = (
                "pinned by the catalog: nothing to move"
                if isinstance(entry.item, Model)
                else "a file at a fixed URL: nothing to move"
            )
            moves.append(Move(entry.key, None, None, why))
            kept.append(entry)
            continue
        newest, problem = answers[entry.key]
        if problem:
            refused.append(ItemResult(entry.key, False, 0, problem))
            continue
        moves.append(Move(entry.key, cache.known_commit(root, entry.item, lock), newest))
        kept.append(replace(entry, commit=newest))
    return Pinned(tuple(kept), tuple(refused), moves=tuple(moves))


def _newest(model: Model, remote: Remote) -> tuple[str | None, str | None]:
    """(the commit the model's branch points to on the hub, None) or (None, why it could not be asked)."""
    try:
        return remote.api().model_info(model.repo, revision=model.revision).sha, None
    except Exception as exc:  # one key's failure must not stop the others
        return None, describe_hub_error(exc, model, remote)
