"""Plans and results: what each entry needs, what must be fetched, whether it fits, and what came of it.

Planning is separate from doing: `plan()` decides per entry what is cached and what must be fetched (with exact
sizes from the hub's tree listing), `download.fetch()` carries a plan out, and `--dry-run` stops in between. An
entry that is complete on disk is judged from local files only: no request, no huggingface_hub import.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import cache
from ..cache import LocalState, RemoteFile
from .remote import Remote

if TYPE_CHECKING:
    from .entry import Entry

DISK_MARGIN = 256 << 20  # keep this much free after a download
PLANNERS = 8  # entries that need the remote ask it side by side: each costs a round trip or two


@dataclass(frozen=True)
class ItemPlan:
    """What one catalog entry needs: the files its loader requests and which of them must be fetched."""

    entry: Entry
    state: LocalState
    commit: str | None = None
    needed: tuple[RemoteFile, ...] = ()
    to_fetch: tuple[RemoteFile, ...] = ()
    tree: dict[str, RemoteFile] = field(default_factory=dict, compare=False, repr=False)
    error: str | None = None

    @property
    def key(self) -> str:
        return self.entry.key

    @property
    def action(self) -> str:
        """error, fetch or cached."""
        if self.error:
            return "error"
        return "fetch" if self.to_fetch or self.state.status != "complete" else "cached"

    @property
    def bytes_needed(self) -> int:
        return sum(f.size for f in self.needed)

    @property
    def bytes_to_fetch(self) -> int:
        return sum(f.size for f in self.to_fetch)


@dataclass(frozen=True)
class Plan:
    """Every entry's plan, the free space where the cache lives, and the selection's warnings."""

    items: tuple[ItemPlan, ...]
    free_bytes: int
    warnings: tuple[str, ...] = ()

    @property
    def bytes_to_fetch(self) -> int:
        return sum(p.bytes_to_fetch for p in self.items if p.action == "fetch")

    @property
    def fits(self) -> bool:
        return self.bytes_to_fetch == 0 or self.bytes_to_fetch + DISK_MARGIN <= self.free_bytes

    @property
    def failed(self) -> bool:
        """True when an entry cannot be planned (offline, gated, not found, ...)."""
        return any(p.action == "error" for p in self.items)


@dataclass(frozen=True)
class ItemResult:
    """What provisioning one entry came to: ok or not, bytes fetched, and a line for the table."""

    key: str
    ok: bool
    fetched_bytes: int = 0
    message: str = ""


def free_bytes(root: Path) -> int:
    """Free space on the file system that holds (or will hold) the cache root."""
    probe = root
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def plan(root: Path, entries: list[Entry], remote: Remote | None, warnings: tuple[str, ...] = ()) -> Plan:
    """Per entry: cached (judged locally), or the exact files to fetch (asked of the remote only then)."""
    from concurrent.futures import ThreadPoolExecutor  # here: a fast start for runs that plan nothing

    lock = cache.read_lock(root)
    with ThreadPoolExecutor(max_workers=PLANNERS) as pool:
        plans = list(pool.map(lambda entry: plan_entry(root, entry, lock, remote), entries))
    return Plan(tuple(plans), free_bytes(root), warnings)


def plan_entry(root: Path, entry: Entry, lock: dict, remote: Remote | None) -> ItemPlan:
    """One entry's plan: complete on disk, else what its kind learns from the remote (None: offline)."""
    state = entry.state(root, lock)
    if state.status == "complete":
        return cached(entry, state)
    if remote is None:
        return ItemPlan(entry, state, state.commit, state.needed, error="not cached (offline: nothing can be fetched)")
    return entry.plan(root, state, remote)


def cached(entry: Entry, state: LocalState) -> ItemPlan:
    """The plan of an entry that is complete on disk: nothing to fetch."""
    return ItemPlan(entry, state, state.commit, state.needed)
