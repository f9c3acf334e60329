"""Plans and results: what each entry needs, what must be fetched, whether it fits, and what came of it.

Planning is separate from doing: `plan()` decides per entry what is cached and what must be fetched (with exact
sizes from the hub's tree listing), `download.fetch()` carries a plan out, and `--dry-run` stops in between. An
entry that is complete on disk is judged from local files only: no request, no huggingface_hub import.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .. import cache
from ..cache import LocalState
from .contract import Entry, ItemPlan, Plan
from .remote import Remote

PLANNERS = 8  # entries that need the remote ask it side by side: each costs a round trip or two


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
