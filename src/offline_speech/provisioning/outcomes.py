"""What a cache-models run returns: one frozen data object per mode, each with `ok` (the exit code's source).
The command line renders them; provisioning/service.py makes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .bundle_import import ImportResult
from .contract import ItemResult, Plan, VerifyResult


@dataclass(frozen=True)
class Provisioned:
    """Entries provisioned (`how`: "provisioned", "all cached" or "registered"), in selection order."""

    results: tuple[ItemResult, ...]
    how: str
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


@dataclass(frozen=True)
class Planned:
    """A plan shown instead of carried out: --dry-run, or a download `refused` because it does not fit; `left_out`:
    keys a lock file cannot give here (or --update could not ask about), one line each."""

    plan: Plan
    root: Path
    refused: bool = False
    left_out: tuple[ItemResult, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.refused and self.plan.fits and not self.plan.failed and not self.left_out


@dataclass(frozen=True)
class Verified:
    """Per entry (and per conversion) what verify found, after repair when `repaired_too`."""

    root: Path
    results: tuple[VerifyResult, ...]
    repaired: tuple[ItemResult, ...] = ()
    repaired_too: bool = False

    @property
    def bad(self) -> list[VerifyResult]:
        return [r for r in self.results if r.status != "ok"]

    @property
    def ok(self) -> bool:
        return not self.bad


@dataclass(frozen=True)
class InfoRow:
    key: str
    repo: str
    revision: str
    bytes: int
    status: str
    location: str


@dataclass(frozen=True)
class Info:
    """What the cache holds of the selected entries (by default: what --all means here, and whatever is cached),
    and the catalog models complete in the user's own hub cache `hf_cache` that are not complete here."""

    root: Path
    rows: tuple[InfoRow, ...]
    hf_cache: Path | None = None
    elsewhere: tuple[str, ...] = ()
    shared_bytes: int = 0  # what the rows count more than once: Xet files several repos link from the shared store

    @property
    def link_command(self) -> str:
        """The command that links what `elsewhere` names (verified, no download)."""
        return f"./cache-models.sh {' '.join(self.elsewhere)} --from-hf-cache" if self.elsewhere else ""

    @property
    def ok(self) -> bool:
        return True

    @property
    def total_bytes(self) -> int:
        """Bytes on disk, each shared file once."""
        return sum(r.bytes for r in self.rows) - self.shared_bytes


@dataclass(frozen=True)
class Cleared:
    """(key, bytes freed) per removed entry; `cancelled` when the question was answered no."""

    root: Path
    freed: tuple[tuple[str, int], ...] = ()
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return not self.cancelled


@dataclass(frozen=True)
class Exported:
    """A bundle written (or, for --dry-run, sized): its entries, distinct files, bytes, and what was left out."""

    archive: Path
    entries: tuple[str, ...]
    files: int
    bytes: int
    archive_bytes: int
    skipped: tuple[tuple[str, str], ...]
    dry_run: bool
    files_hashed: int = 0  # files whose bytes the export hashed (the verified index vouched for the others)

    @property
    def ok(self) -> bool:
        return True


@dataclass(frozen=True)
class Imported:
    """Per entry of a bundle: imported, updated (another commit was recorded before) or already cached."""

    archive: Path
    results: tuple[ImportResult, ...]

    @property
    def ok(self) -> bool:
        return True


@dataclass(frozen=True)
class Prunable:
    """One thing to remove: what it is, where, the bytes it frees."""

    what: str
    path: Path
    size: int
    blobs: tuple[Path, ...] = field(default=(), repr=False)  # repo blobs only this revision links


@dataclass(frozen=True)
class Pruned:
    root: Path
    items: tuple[Prunable, ...]
    dry_run: bool

    @property
    def ok(self) -> bool:
        return True

    @property
    def freed(self) -> int:
        return sum(i.size for i in self.items)


Outcome = Provisioned | Planned | Verified | Info | Cleared | Exported | Imported | Pruned
