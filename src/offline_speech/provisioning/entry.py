"""The two kinds of catalog entry, and the one place that tells them apart.

A hub model (a repo, or the part of it a loader requests) and a non-hub asset (a torchaudio checkpoint, nltk
data fetched from a URL) are planned, fetched, judged, verified and removed differently; each kind is a class
with that behaviour (`hub_models.ModelEntry`, `assets.AssetEntry`), and the rest of provisioning speaks only to
the `Entry` protocol (contract.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..catalog import Item, Model
from .assets import AssetEntry
from .contract import Entry
from .hub_models import ModelEntry


def entry_for(item: Item) -> Entry:
    """The entry of a catalog item, by its kind."""
    return ModelEntry(item) if isinstance(item, Model) else AssetEntry(item)


def entries_for(items: Iterable[Item]) -> list[Entry]:
    return [entry_for(item) for item in items]
