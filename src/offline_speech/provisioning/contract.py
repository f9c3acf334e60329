"""What the parts of provisioning say to each other: the `Entry` protocol every kind of catalog entry speaks, the
plan of an entry and of a run, the result of fetching and of verifying one, and the progress `Reporter`.

Types only (no behaviour beyond their properties), so that planning, fetching, verifying and the two kinds of entry
(`hub_models`, `assets`) all import this module and none of them imports another to name a type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..cache import LocalState, RemoteFile
from ..catalog import Item

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

    from .convert import Ct2Conversion
    from .remote import Remote

DISK_MARGIN = 256 << 20  # keep this much free after a download


class Reporter(Protocol):
    """Receives progress; the CLI renders it as rich bars on a terminal and as plain lines otherwise."""

    def file_started(self, key: str, path: str, size: int) -> None: ...
    def advance(self, key: str, path: str, nbytes: int) -> None: ...
    def file_done(self, key: str, path: str) -> None: ...


class Entry(Protocol):
    """What provisioning needs of one catalog entry, whatever its kind."""

    item: Item

    @property
    def key(self) -> str: ...
    @property
    def source(self) -> str:
        """Where it comes from, for tables: the repo id or the URL."""

    @property
    def revision(self) -> str:
        """The catalog's revision ("" for an asset)."""

    @property
    def conversion(self) -> Ct2Conversion | None:
        """What is made here from it once cached (NLLB -> CTranslate2), if anything."""

    def state(self, root: Path, lock: dict) -> LocalState:
        """What the cache holds of it, from local files only."""

    def plan(self, root: Path, state: LocalState, remote: Remote) -> ItemPlan:
        """Ask the remote what an incomplete entry needs; a failure is the plan's error, never raised."""

    def remaining(self, root: Path, p: ItemPlan, state: LocalState) -> ItemPlan:
        """The plan as the disk is now (under the entry's lock, after another run may have fetched some of it)."""

    def start(self, root: Path, p: ItemPlan, remote: Remote, reporter: Reporter, files: Executor) -> list[Future]:
        """Submit its downloads to the shared pool; each future gives a problem line or None."""

    def finish(self, root: Path, p: ItemPlan) -> ItemResult:
        """Record it (refs, lock) once every download went well."""

    def describe_error(self, exc: BaseException, remote: Remote) -> str:
        """One line for an exception raised by one of its downloads."""

    def expected_files(self, root: Path, lock: dict) -> tuple[str | None, list[RemoteFile]]:
        """(commit or sha256, files with size and hash) it must hold: from the lock, else what is cached."""

    def local_path(self, root: Path, commit: str | None, path: str) -> Path:
        """Where one of its expected files is on disk."""

    def repair_plan(self, root: Path, lock: dict, result: VerifyResult) -> ItemPlan | None:
        """A plan re-fetching only what `result` found damaged, or None to provision it afresh."""

    def remove(self, root: Path, lock: dict) -> int:
        """Delete it from the cache and the lock (with what was made from it); bytes freed."""


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


@dataclass(frozen=True)
class FileProblem:
    path: str
    kind: str  # missing | truncated | corrupt
    detail: str = ""


@dataclass(frozen=True)
class VerifyResult:
    key: str
    status: str  # ok | problems | missing
    checked: int
    problems: tuple[FileProblem, ...] = ()
