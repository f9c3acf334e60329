"""The cache-models use cases: one typed request in, one data object out.

The command line parses its flags into a `Request` (a mode, what is wanted, options) and renders what `run()`
returns; every decision in between lives here: which modes combine, how keys, jobs and group flags merge into
one selection, the commits a lock file or --update decide (lockfile.py), the all-cached fast path, plan then
fetch, verify -> repair -> verify again, the conversions made after provisioning, the info rows, clear and
--from-dir. What happens meanwhile (notes, progress, a question before clearing) goes to a `Listener` the caller
provides.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Protocol

from .. import cache, orphans
from ..catalog import (
    DEFAULT_ASR_MODEL,
    DEFAULT_LANGUAGES,
    DEFAULT_NLLB_MODEL,
    GROUPS,
    Catalog,
    CatalogError,
    Item,
    Model,
    Selection,
    all_groups_for,
    load_catalog,
)
from ..errors import BadInput
from ..settings import host_platform, prepare_hub_client
from ..util import output_file, write_problem
from . import adopt, heal, lockfile
from .bundle import plan_export, write_bundle
from .bundle_import import import_bundle
from .bundle_stream import wants_zstd
from .contract import Entry, ItemResult, Reporter
from .download import fetch, require_writable
from .entry import entries_for
from .hub_models import ModelEntry
from .outcomes import Cleared, Exported, Imported, Info, InfoRow, Outcome, Planned, Provisioned, Verified
from .plan import plan
from .prune import prune
from .register import local_notes, register_dir
from .remote import Remote
from .verify import keys_of, repair, verify


class Mode(str, Enum):
    """What one cache-models run does; exactly one per run."""

    FETCH = "fetch"  # the default: provision what is not cached yet
    DRY_RUN = "dry-run"
    VERIFY = "verify"  # with Request.repair: verify, repair, verify again
    INFO = "info"
    CLEAR = "clear"
    FROM_DIR = "from-dir"
    EXPORT = "export"  # with --dry-run: only the bundle's size
    IMPORT = "import"
    PRUNE = "prune"  # with --dry-run: only what it would free


def mode_of(
    *,
    dry_run: bool,
    verify: bool,
    info: bool,
    clear: bool,
    from_dir: bool,
    repair: bool,
    export: bool = False,
    import_: bool = False,
    prune: bool = False,
) -> Mode:
    """The one mode the flags ask for; BadInput when they ask for two (--repair goes with --verify, or alone;
    --dry-run with --export shows the bundle's size, with --prune what it would free)."""
    others = verify or info or clear or from_dir or repair or import_
    if export and not (others or prune):
        return Mode.EXPORT
    if prune and not (others or export):
        return Mode.PRUNE
    flags = (
        (Mode.DRY_RUN, dry_run),
        (Mode.VERIFY, verify),
        (Mode.INFO, info),
        (Mode.CLEAR, clear),
        (Mode.FROM_DIR, from_dir),
        (Mode.EXPORT, export),
        (Mode.IMPORT, import_),
        (Mode.PRUNE, prune),
    )
    chosen = [mode for mode, on in flags if on]
    if len(chosen) > 1:
        raise BadInput("choose one of --dry-run, --verify, --info, --clear, --from-dir, --export, --import, --prune")
    if repair and chosen not in ([], [Mode.VERIFY]):
        raise BadInput("--repair goes with --verify only")
    if repair:
        return Mode.VERIFY
    return chosen[0] if chosen else Mode.FETCH


@dataclass(frozen=True)
class Wanted:
    """What the user asked for, before it is resolved against the catalog: keys (given, and recorded by
    prepared jobs), group flags (--all = every group this platform uses) and the choices within groups."""

    keys: tuple[str, ...] = ()
    job_keys: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    all_groups: bool = False
    asr_model: str = DEFAULT_ASR_MODEL
    nllb_model: str = DEFAULT_NLLB_MODEL
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    update: tuple[str, ...] = ()  # --update: keys or group names to move to the newest commit (selected too)


@dataclass(frozen=True)
class Request:
    """One cache-models run: the mode, the selection, and the options that apply to it."""

    mode: Mode
    root: Path
    wanted: Wanted = Wanted()
    repair: bool = False  # Mode.VERIFY: re-fetch what verify finds damaged
    convert: bool = True  # make conversions (NLLB -> CTranslate2) after provisioning
    confirmed: bool = False  # Mode.CLEAR: --yes
    workers: int | None = None  # files downloaded at once (None: download.default_workers())
    asset_mirror: str | None = None
    from_dir: Path | None = None  # Mode.FROM_DIR: the folder, the catalog key, the commit
    key: str | None = None
    revision: str | None = None
    platform_id: str | None = None  # None: this machine's
    dry_run: bool = False  # Mode.EXPORT: only the size; Mode.PRUNE: only what it would free
    archive: Path | None = None  # Mode.EXPORT / Mode.IMPORT: the bundle
    since: Path | None = None  # Mode.EXPORT: leave out what this lock file has
    hf_cache: Path | None = None  # Mode.FETCH: take complete snapshots from this standard hub cache first;
    # Mode.INFO: the user's own hub cache, whose complete catalog models are mentioned
    lock_file: Path | None = None  # Mode.FETCH / Mode.DRY_RUN: provision the commits this lock file pins


class Listener(Protocol):
    """What a run tells its caller while it works, and the one thing it may ask."""

    def warning(self, text: str) -> None:
        """A note about the selection (no aligner for a language, a model for another platform)."""

    def status(self, text: str) -> None:
        """Work that takes a while has started (a conversion)."""

    def progress(self, total_bytes: int, bars: bool) -> AbstractContextManager[Reporter]:
        """A download reporter for `total_bytes` (0: unknown); `bars` allows live bars where the output can."""

    def confirm_clear(self, keys: list[str], root: Path) -> bool:
        """Whether to remove these entries (raise BadInput when no one can be asked)."""


# ---- the use cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What every mode's handler gets: the request, the catalog, the machine, the selection and its entries."""

    request: Request
    catalog: Catalog
    platform_id: str
    selection: Selection
    entries: list[Entry]
    listener: Listener


@dataclass(frozen=True)
class ModeSpec:
    """How one mode runs: its handler, and the housekeeping it wants before (see `run`)."""

    handle: Callable[[Run], Outcome]
    sweeps_leftovers: bool = True  # remove stale temp files and partials nobody writes (not for a plan)
    records_missing: bool = False  # record entries complete on disk but missing from the lock (a crash)
    writes: Callable[[Request], bool] = lambda request: False  # needs a writable cache


def run(request: Request, listener: Listener) -> Outcome:
    """Carry out one cache-models request: check the flags that only some modes take, select the entries, do
    each mode's housekeeping, then its handler (MODES)."""
    prepare_hub_client(request.root)  # before anything imports huggingface_hub: nothing lands in the user's HOME
    catalog = load_catalog()
    platform_id = request.platform_id or host_platform()
    for flag, given in (("--lock-file", request.lock_file), ("--update", request.wanted.update)):
        if given and request.mode not in (Mode.FETCH, Mode.DRY_RUN):
            raise BadInput(f"{flag} goes with provisioning (and --dry-run), not with --{request.mode.value}")
    if request.lock_file and request.wanted.update:
        raise BadInput(
            "--update and --lock-file pull opposite ways: update on one machine, then share its lock "
            "(.cache/offline-speech.lock.json) for --lock-file elsewhere"
        )
    selection = select(catalog, with_updates(request.wanted), platform_id)
    for warning in selection.warnings:
        listener.warning(warning)
    spec = MODES[request.mode]
    entries = entries_for(selection.items)
    if spec.sweeps_leftovers:  # a fetch starting now deletes no partial download: it may resume it
        _report_leftovers(orphans.clean_cache(request.root, asset_dests(catalog)), listener)
    if request.mode is Mode.VERIFY and request.repair:
        kept = heal.rebuild_broken_lock(request.root, catalog)
        if kept is not None:
            listener.status(f"the lock could not be read: rebuilt it from the cache's files (the broken one is {kept})")
    if spec.records_missing:
        for key in heal.record_missing(request.root, [e.item for e in entries]):
            listener.status(f"{key}: complete on disk but missing from the lock (an interrupted run): recorded")
    if spec.writes(request):
        require_writable(request.root)
    return spec.handle(Run(request, catalog, platform_id, selection, entries, listener))


def _import(r: Run) -> Imported:
    archive = r.request.archive
    if archive is None:
        raise BadInput("--import needs a bundle: --import FILE.tar[.zst] or a folder")
    with r.listener.progress(archive.stat().st_size if archive.is_file() else 0, bars=True) as bar:
        results = import_bundle(r.request.root, r.catalog, archive, progress=lambda n: bar.advance("", "", n))
    return Imported(archive, tuple(results))


def _info(r: Run) -> Info:
    shown = info(r.request.root, r.catalog, r.entries, r.platform_id, r.request.hf_cache)
    return _noting_local(shown, [row.key for row in shown.rows], r.listener)


def _verify(r: Run) -> Verified:
    checked = verify_and_repair(r.request, r.catalog, r.entries, r.listener)
    return _noting_local(checked, [result.key for result in checked.results], r.listener)


def _chosen(r: Run) -> list[Entry]:
    """The selection's entries; none is bad input for the modes that act on a selection."""
    if not r.entries:
        raise BadInput(
            "choose what to cache: --all, a group flag (--whisperx, --align, ...) or catalog keys; see --help"
        )
    return r.entries


def _clear(r: Run) -> Cleared:
    return clear(r.request.root, _chosen(r), r.request.confirmed, r.listener)


def _provision(r: Run) -> Provisioned | Planned:
    if r.request.lock_file or r.request.wanted.update:
        return provision_pinned(r.request, r.catalog, r.platform_id, r.entries, r.selection.warnings, r.listener)
    return provision(r.request, _chosen(r), r.selection.warnings, r.listener)


MODES: dict[Mode, ModeSpec] = {
    Mode.FETCH: ModeSpec(_provision, records_missing=True),
    Mode.DRY_RUN: ModeSpec(_provision, sweeps_leftovers=False, records_missing=True),
    Mode.VERIFY: ModeSpec(_verify, records_missing=True),
    Mode.INFO: ModeSpec(_info, records_missing=True),
    Mode.CLEAR: ModeSpec(_clear, writes=lambda request: True),
    Mode.FROM_DIR: ModeSpec(lambda r: register(r.request, r.catalog), writes=lambda request: True),
    Mode.EXPORT: ModeSpec(lambda r: export(r.request, r.catalog, r.entries, r.listener), records_missing=True),
    Mode.IMPORT: ModeSpec(_import, writes=lambda request: True),
    # --prune says itself what it removes; its dry run writes nothing
    Mode.PRUNE: ModeSpec(
        lambda r: prune(r.request.root, r.catalog, r.request.dry_run),
        sweeps_leftovers=False,
        writes=lambda request: not request.dry_run,
    ),
}


def select(catalog: Catalog, wanted: Wanted, platform_id: str) -> Selection:
    """Keys first (given, then the jobs'), then group flags; each entry once, in that order."""
    items: list[Item] = [catalog.get(k) for k in dict.fromkeys(wanted.keys + wanted.job_keys)]
    groups = all_groups_for(platform_id) if wanted.all_groups else []
    left_out = ()
    if wanted.all_groups and "mlx" not in groups and "mlx" not in wanted.groups:
        left_out = (
            f"--all leaves out MLX: it runs only on Apple Silicon and this machine is {platform_id} "
            f"(--mlx fetches it anyway, e.g. to prepare a Mac)",
        )
    groups += [g for g in wanted.groups if g not in groups]
    if not groups:
        return Selection(tuple(items))
    chosen = catalog.select(
        groups,
        asr_model=wanted.asr_model,
        nllb_model=wanted.nllb_model,
        languages=wanted.languages,
        platform_id=platform_id,
    )
    return Selection(tuple(items + [i for i in chosen.items if i not in items]), left_out + chosen.warnings)


def with_updates(wanted: Wanted) -> Wanted:
    """The selection with what --update names added: group names as group flags, the rest as keys."""
    groups = tuple(v for v in wanted.update if v in GROUPS)
    keys = tuple(v for v in wanted.update if v not in GROUPS)
    return replace(wanted, keys=wanted.keys + keys, groups=wanted.groups + groups)


def provision_pinned(
    request: Request,
    catalog: Catalog,
    platform_id: str,
    entries: list[Entry],
    warnings: tuple[str, ...],
    listener: Listener,
) -> Provisioned | Planned:
    """--lock-file (alone: every key the file records) or --update: decide each entry's commit, provision as
    usual, then say what the lock refused or what moved."""
    if request.lock_file:
        path = request.lock_file.expanduser()
        data = lockfile.read_lock_file(path, "--lock-file")
        left = lockfile.Pinned(())
        if not entries:
            items, left = lockfile.lock_items(catalog, data, path, platform_id)
            if not items and not left.refused:
                raise BadInput(f"--lock-file {path}: it records no models for this machine; name what to cache")
            entries = entries_for(items)
        pinned = lockfile.pin_to_lock(entries, data, path)
        pinned = replace(pinned, refused=left.refused + pinned.refused, notes=left.notes + pinned.notes)
    else:
        named = replace(request.wanted, keys=(), job_keys=(), groups=(), all_groups=False)
        keys = {item.key for item in select(catalog, with_updates(named), platform_id).items}
        pinned = lockfile.move_to_newest(request.root, entries, keys, Remote.from_settings(request.asset_mirror))
    for note in pinned.notes:
        listener.warning(note)
    if not pinned.entries:
        return Provisioned(pinned.refused, "provisioned")
    outcome = provision(request, list(pinned.entries), warnings, listener)
    if isinstance(outcome, Planned):
        for move in pinned.moves:
            listener.status(f"{move.key}: {move.text}")
        return replace(outcome, left_out=pinned.refused)
    results = outcome.results
    if request.lock_file:
        results = lockfile.check_against_lock(request.root, data, results, path)
    said = {move.key: move.text for move in pinned.moves}
    results = tuple(replace(r, message=f"{said[r.key]}; {r.message}") if r.key in said else r for r in results)
    return replace(outcome, results=pinned.refused + results)


def provision(
    request: Request, entries: list[Entry], warnings: tuple[str, ...], listener: Listener
) -> Provisioned | Planned:
    """Fetch what is not cached (or, for --dry-run, only plan it), then make the conversions."""
    root = request.root
    if request.mode is Mode.FETCH and not all_cached(root, entries):
        require_writable(root)
    if request.mode is Mode.FETCH and request.hf_cache is not None:
        take_from_hf_cache(root, request.hf_cache, entries, listener)
    if request.mode is Mode.FETCH and all_cached(root, entries):
        # The common case, and the one that must be instant: no network, no huggingface_hub import.
        results = [ItemResult(e.key, True, 0, "cached") for e in entries]
        return Provisioned(
            conversions(root, entries, results, listener) if request.convert else tuple(results), "all cached"
        )
    started = time.monotonic()  # planning included: asking the hub (and its retries) is part of the time
    remote = Remote.from_settings(request.asset_mirror)
    the_plan = plan(root, entries, remote, warnings)
    if request.mode is Mode.DRY_RUN or not the_plan.fits:
        return Planned(the_plan, root, refused=request.mode is not Mode.DRY_RUN)
    with listener.progress(the_plan.bytes_to_fetch, bars=True) as reporter:
        results = fetch(root, the_plan, remote, reporter, request.workers)
    done = conversions(root, entries, results, listener) if request.convert else tuple(results)
    return Provisioned(done, "provisioned", time.monotonic() - started)


def all_cached(root: Path, entries: list[Entry]) -> bool:
    """Whether every entry is complete on disk, judged from local files only."""
    lock = cache.read_lock(root)
    return all(e.state(root, lock).status == "complete" for e in entries)


def conversions(
    root: Path, entries: list[Entry], results: list[ItemResult], listener: Listener
) -> tuple[ItemResult, ...]:
    """Make what is made from the provisioned entries (NLLB -> CTranslate2 int8) where it is missing."""
    out = []
    for entry, result in zip(entries, results):
        if result.ok and entry.conversion is not None:
            ok, message = entry.conversion.make(root, announce=listener.status)
            result = ItemResult(result.key, ok, result.fetched_bytes, f"{result.message}; {message}")
        out.append(result)
    return tuple(out)


def verify_and_repair(request: Request, catalog: Catalog, entries: list[Entry], listener: Listener) -> Verified:
    """Hash every file of the selection (default: everything the lock records); with repair, re-fetch what is
    damaged and verify those entries again."""
    root = request.root
    lock = cache.read_lock(root)
    if not entries:
        on_disk = [e.item for e in entries_for(catalog.items) if e.state(root, heal.EMPTY).status != "missing"]
        recorded = [item for k in [*lock["models"], *lock["assets"]] if (item := _known(catalog, k))]
        entries = entries_for(dict.fromkeys(recorded + on_disk))
        for key in heal.record_missing(root, [e.item for e in entries]):
            listener.status(f"{key}: complete on disk but missing from the lock (an interrupted run): recorded")
    if not entries:
        raise BadInput(f"nothing is provisioned in {root}: nothing to verify")
    results = verify(root, entries)
    repaired: list[ItemResult] = []
    if request.repair and any(r.status != "ok" for r in results):
        require_writable(root)
        with listener.progress(0, bars=False) as reporter:
            repaired = repair(root, entries, results, Remote.from_settings(request.asset_mirror), reporter)
        bad_keys = {r.key for r in results if r.status != "ok"}
        fixed = {r.key: r for r in verify(root, [e for e in entries if keys_of(e) & bad_keys])}
        results = [fixed.get(r.key, r) for r in results]
    if request.repair:  # what the repair could resume, it has: the entries' unowned partial downloads are stale now
        repos = [e.item.repo for e in entries if isinstance(e.item, Model)]
        _report_leftovers(orphans.clean_cache(root, asset_dests(catalog), partials_of=repos), listener)
    return Verified(root, tuple(results), tuple(repaired), request.repair)


def asset_dests(catalog: Catalog) -> list[tuple[str, str]]:
    """(key, dest) of every asset: where an interrupted asset download leaves its partial file."""
    return [(item.key, item.dest) for item in catalog.items if not isinstance(item, Model)]


def _report_leftovers(removed: list[Path], listener: Listener) -> None:
    if removed:
        listener.status(f"removed {len(removed)} leftover(s) of interrupted runs (temp files, partial downloads)")


def _known(catalog: Catalog, key: str) -> Item | None:
    """The catalog entry of a lock key, None for one the catalog no longer has."""
    try:
        return catalog.get(key)
    except CatalogError:
        return None


def info(root: Path, catalog: Catalog, entries: list[Entry], platform_id: str, hf_cache: Path | None = None) -> Info:
    """A row per entry (and per conversion made or due); by default what --all means here plus anything cached.
    With `hf_cache` (the user's own hub cache), the catalog models complete there and not here too."""
    lock = cache.read_lock(root)
    if not entries:
        shown = catalog.select(all_groups_for(platform_id), platform_id=platform_id).items
        present = [e.item for e in entries_for(catalog.items) if e.state(root, lock).status != "missing"]
        entries = entries_for(dict.fromkeys([*shown, *present]))
    rows = []
    for entry in entries:
        state = entry.state(root, lock)
        rows.append(
            InfoRow(
                entry.key,
                entry.source,
                state.commit or entry.revision,
                state.bytes_on_disk,
                state.status,
                str(state.location),
            )
        )
        made = entry.conversion
        if made is not None:
            d = made.state(root, lock)
            if d.status != "missing" or state.status == "complete":
                rows.append(InfoRow(d.key, made.source, d.commit or "", d.bytes_on_disk, d.status, str(d.location)))
    shared = cache.counted_twice(root, [e.item.repo for e in entries if isinstance(e.item, Model)])
    if hf_cache is None:
        return Info(root, tuple(rows), shared_bytes=shared)
    found = adopt.complete_elsewhere(hf_cache, root, catalog.models, lock)
    return Info(root, tuple(rows), hf_cache, tuple(f.model.key for f in found), shared)


def clear(root: Path, entries: list[Entry], confirmed: bool, listener: Listener) -> Cleared:
    """Remove exactly these entries (files, blobs, refs, lock entries, conversions, partial downloads), once
    confirmed, each under its entry lock."""
    if not confirmed and not listener.confirm_clear([e.key for e in entries], root):
        return Cleared(root, cancelled=True)
    removed = []
    for e in entries:  # under the lock a download of the entry holds: a clear waits for it, never breaks it
        with cache.entry_lock(
            root, e.key, waiting=lambda e=e: listener.status(f"{e.key}: another run is provisioning it; waiting")
        ):
            removed.append((e.key, e.remove(root, cache.read_lock(root))))
    return Cleared(root, tuple(removed))


def _noting_local(outcome: Info | Verified, keys: list[str], listener: Listener) -> Info | Verified:
    """--info and --verify say which entries are local, unverified registrations."""
    for note in local_notes(outcome.root, keys):
        listener.warning(note)
    return outcome


def register(request: Request, catalog: Catalog) -> Provisioned:
    """--from-dir: register a folder of files as the catalog entry --key names."""
    if not request.key:
        raise BadInput("--from-dir needs --key KEY (a catalog key, e.g. faster-whisper-tiny.en)")
    assert request.from_dir is not None
    result = register_dir(request.root, catalog.get(request.key), request.from_dir.expanduser(), request.revision)
    return Provisioned((result,), "registered")


def take_from_hf_cache(root: Path, hub: Path, entries: list[Entry], listener: Listener) -> None:
    """--from-hf-cache: link the complete, verified snapshots another standard cache holds of entries that are not
    complete here; what it lacks is downloaded as usual afterwards."""
    if not hub.is_dir():
        raise BadInput(f"--hf-cache {hub}: no such folder (a Hugging Face hub cache, e.g. ~/.cache/huggingface/hub)")
    lock = cache.read_lock(root)
    for entry in entries:
        if not isinstance(entry.item, Model) or entry.state(root, lock).status == "complete":
            continue
        found = adopt.find(hub, entry.item, entry.commit if isinstance(entry, ModelEntry) else None)
        if found is None or not found.complete:
            why = "not there" if found is None else f"incomplete there (missing {', '.join(found.missing)})"
            listener.warning(f"{entry.key}: {why} in {hub}; downloading it")
            continue
        result = adopt.adopt(root, found)
        listener.status(f"{entry.key}: {result.message}" if result.ok else f"note: {entry.key}: {result.message}")


def export(request: Request, catalog: Catalog, entries: list[Entry], listener: Listener) -> Exported:
    """--export: the selection (default: every entry the lock records) as one verified bundle."""
    assert request.archive is not None
    if not request.dry_run:
        output_file(request.archive.expanduser().absolute(), "--export")
    keys = [e.key for e in entries]
    if not keys:
        lock = cache.read_lock(request.root)
        keys = [k for k in [*lock["models"], *lock["assets"]] if _known(catalog, k)]
    since = lockfile.read_lock_file(request.since.expanduser(), "--since") if request.since else None
    the_plan = plan_export(request.root, catalog, keys, since)
    for key, why in the_plan.skipped:
        listener.warning(f"{key} left out: {why}")
    written = hashed = 0
    if not request.dry_run and not wants_zstd(request.archive):  # a plain tar's size is known: refuse it up front
        where = request.archive.expanduser().absolute().parent
        if shutil.disk_usage(where).free < the_plan.total_bytes:
            raise write_problem(OSError(errno.ENOSPC, "no space"), where, the_plan.total_bytes, "export elsewhere")
    if not request.dry_run:
        listener.status(f"exporting {len(the_plan.keys)} entries, {the_plan.total_bytes} bytes to {request.archive}")
        with listener.progress(the_plan.total_bytes, bars=True) as bar, contextlib.ExitStack() as held:
            for key in the_plan.keys:  # a --clear of an entry being exported waits for the export
                held.enter_context(cache.entry_lock(request.root, key))
            written, hashed = write_bundle(the_plan, request.archive, progress=lambda n: bar.advance("", "", n))
    return Exported(
        request.archive,
        tuple(the_plan.keys),
        len(the_plan.files),
        the_plan.total_bytes,
        written,
        tuple(the_plan.skipped),
        request.dry_run,
        hashed,
    )
