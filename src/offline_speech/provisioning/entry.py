"""The two kinds of catalog entry, and the one place that tells them apart.

A hub model (a repo, or the part of it a loader requests) and a non-hub asset (a torchaudio checkpoint, nltk
data fetched from a URL) are planned, fetched, judged, verified and removed differently; each kind is a class
with that behaviour (`hub_models.ModelEntry`, `assets.AssetEntry`), and the rest of provisioning speaks only to
the `Entry` protocol below.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Protocol

from ..cache import LocalState, RemoteFile
from ..catalog import Item, Model
from .assets import AssetEntry
from .hub_models import ModelEntry

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

    from .convert import Ct2Conversion
    from .download import Reporter
    from .plan import ItemPlan, ItemResult
    from .remote import Remote
    from .verify import VerifyResult


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


def entry_for(item: Item) -> Entry:
    """The entry of a catalog item, by its kind."""
    return ModelEntry(item) if isinstance(item, Model) else AssetEntry(item)


def entries_for(items: Iterable[Item]) -> list[Entry]:
    return [entry_for(item) for item in items]
