"""cache-models: provision models into the project cache, then plan, verify, repair, show or clear them.

Flags become one `provisioning.service.Request`, `service.run()` does the work, and this module renders what it
returns: a table on a terminal or exactly one JSON document with --json; notes and progress go to stderr.
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated

import typer

from ..catalog import DEFAULT_ASR_MODEL, DEFAULT_LANGUAGES, DEFAULT_NLLB_MODEL, GROUPS, load_catalog
from ..errors import BadInput, Stopped
from ..provisioning import outcomes, service
from ..provisioning.contract import DISK_MARGIN, ItemResult, Reporter
from ..settings import cache_root, user_hub_cache
from .app import app
from .options import AsJson, CacheDir, OutDir, Version
from .output import LineReporter, RichReporter, err, human, live, out, print_table
from .output import emit_json as _emit_json

CACHE_MODELS_EXAMPLES = """\b
Examples:
  ./cache-models.sh --all                          everything this machine's pipeline can use
  ./cache-models.sh --whisperx --asr-model tiny.en one faster-whisper model
  ./cache-models.sh --align --languages en,hi,ta   word aligners (+ nltk punkt_tab)
  ./cache-models.sh --nllb --nllb-model distilled-600M   NLLB + its CTranslate2 int8 conversion
  ./cache-models.sh --job 20261129-101500.123-film-1a2b   every model a prepared job needs
  ./cache-models.sh --all --dry-run                what would be fetched, and whether it fits
  ./cache-models.sh --verify                       hash every cached file offline
  ./cache-models.sh --verify --repair              re-fetch only what is missing or corrupt
  ./cache-models.sh --info                         what the cache holds
  ./cache-models.sh --clear faster-whisper-large-v3 --yes
  ./cache-models.sh --from-dir ~/tiny.en --key faster-whisper-tiny.en
  ./cache-models.sh --whisperx --asr-model large-v3 --from-hf-cache   link what ~/.cache/huggingface has
  ./cache-models.sh --export models.tar            every cached model, one verified tar for an offline machine
  ./cache-models.sh --export delta.tar --since target.lock   only what that machine's lock lacks
  ./cache-models.sh --import models.tar            on the offline machine: checked, then moved in
  ./cache-models.sh --lock-file team.lock          exactly the commits a (team's) lock file pins
  ./cache-models.sh --update nllb-200-3.3B         move one key to the newest commit, on purpose
"""


def _languages(value: str) -> tuple[str, ...]:
    """--languages as a tuple of codes; BadInput naming anything that is not one."""
    langs = tuple(x.strip() for x in value.split(",") if x.strip())
    bad = [x for x in langs if not x.replace("-", "").isalpha() or len(x) > 8]
    if bad:
        raise BadInput(f"--languages: not language codes: {', '.join(bad)}")
    return langs


@app.command(
    "cache-models",
    epilog=CACHE_MODELS_EXAMPLES,
    help="Provision models into the project cache (standard Hugging Face layout), then plan, verify, repair, "
    "show or clear them. Without a mode flag it downloads what the selection needs that is not cached yet.",
)
def cache_models(
    keys: Annotated[
        list[str] | None, typer.Argument(help="Catalog keys (see --info); alternative to group flags.")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every group this machine's pipeline uses (MLX only on Apple Silicon).")
    ] = False,
    whisperx: Annotated[
        bool, typer.Option("--whisperx", help="The faster-whisper model named by --asr-model.")
    ] = False,
    mlx: Annotated[
        bool, typer.Option("--mlx", help="The MLX Whisper model named by --asr-model (runs on Apple Silicon only).")
    ] = False,
    indictrans2: Annotated[
        bool,
        typer.Option("--indictrans2", help="IndicTrans2 indic-en, en-indic, indic-indic 1B (gated; safetensors only)."),
    ] = False,
    nllb: Annotated[
        bool,
        typer.Option(
            "--nllb",
            help=(
                "The NLLB-200 model named by --nllb-model, plus its CTranslate2 int8 conversion (made here with "
                "venv/translation)."
            ),
        ),
    ] = False,
    align: Annotated[bool, typer.Option("--align", help="Word aligners for --languages, plus nltk punkt_tab.")] = False,
    diarization: Annotated[
        bool, typer.Option("--diarization", help="pyannote/speaker-diarization-community-1 (gated).")
    ] = False,
    asr_model: Annotated[
        str,
        typer.Option(
            help="ASR model name, as faster-whisper names them (tiny.en … large-v3, large-v3-turbo, distil-*)."
        ),
    ] = DEFAULT_ASR_MODEL,
    nllb_model: Annotated[
        str, typer.Option(help="NLLB size: 3.3B, 1.3B, distilled-1.3B, distilled-600M.")
    ] = DEFAULT_NLLB_MODEL,
    languages: Annotated[str, typer.Option(help="Comma-separated language codes for --align.")] = ",".join(
        DEFAULT_LANGUAGES
    ),
    job: Annotated[
        list[str] | None,
        typer.Option(
            "--job",
            "-j",
            metavar="ID|DIR",
            help=(
                "Every model a prepared job needs (ASR, aligner, translation models): a job id under out/, or a job "
                "folder; repeatable."
            ),
        ),
    ] = None,
    batch: Annotated[
        list[str] | None,
        typer.Option(
            "--batch",
            "-b",
            metavar="ID|FILE",
            help="Every model the jobs of a batch need (prepare-job with several media prints its id); repeatable.",
        ),
    ] = None,
    convert: Annotated[
        bool,
        typer.Option(
            "--convert/--no-convert",
            help=(
                "Make NLLB's CTranslate2 int8 conversion after provisioning it (needs venv/translation); --no-convert "
                "leaves the translate stage on transformers."
            ),
        ),
    ] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan (cached, to fetch, bytes, free disk); change nothing.")
    ] = False,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Offline: hash every cached file against the hub's ids; exit 1 on any problem."),
    ] = False,
    repair: Annotated[
        bool,
        typer.Option("--repair", help="With or without --verify: re-fetch only missing, truncated or corrupt files."),
    ] = False,
    info: Annotated[
        bool, typer.Option("--info", help="Table of cached models: revision, size on disk, status, location.")
    ] = False,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove the named keys or groups from the cache (asks first).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (--clear).")] = False,
    from_dir: Annotated[
        Path | None, typer.Option("--from-dir", help="Register model files obtained elsewhere (needs --key).")
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Catalog key for --from-dir.")] = None,
    revision: Annotated[
        str | None,
        typer.Option(
            "--revision",
            help=(
                "The hub commit the --from-dir files claim to be (default: the catalog's pin, else the commit cached); "
                "they are checked against what is known of it, else registered as a local, unverified revision."
            ),
        ),
    ] = None,
    as_json: AsJson = False,
    cache_dir: CacheDir = None,
    asset_mirror: Annotated[
        str | None,
        typer.Option(
            "--asset-mirror",
            envvar="OFFLINE_SPEECH_ASSET_MIRROR",
            help="Base URL replacing download.pytorch.org / GitHub for non-hub assets.",
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, max=32, help="Files downloaded at once (default: one per CPU core, 2 to 8).")
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            metavar="FILE",
            help=(
                "Write the selected models (default: everything cached) into one verified tar for an offline machine; "
                "with --dry-run, only its size."
            ),
        ),
    ] = None,
    since: Annotated[
        Path | None,
        typer.Option(
            "--since",
            metavar="LOCKFILE",
            help=(
                "With --export: leave out what this lock file (the target machine's .cache/offline-speech.lock.json) "
                "already has."
            ),
        ),
    ] = None,
    import_: Annotated[
        Path | None,
        typer.Option(
            "--import",
            metavar="FILE",
            help="Check every file of a bundle made by --export, then move it into the cache.",
        ),
    ] = None,
    out_dir: OutDir = None,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help=(
                "Remove what nothing needs any more: revisions the lock no longer names (the old commit after "
                "--update), shared blobs no cached repo links, partial downloads nobody writes; with --dry-run, only "
                "say what it would free."
            ),
        ),
    ] = False,
    from_hf_cache: Annotated[
        bool,
        typer.Option(
            "--from-hf-cache",
            help=(
                "Before downloading, link complete, verified snapshots of the selection from your own Hugging Face "
                "cache ($HF_HUB_CACHE or ~/.cache/huggingface/hub; another one with --hf-cache)."
            ),
        ),
    ] = False,
    hf_cache: Annotated[
        Path | None,
        typer.Option(
            "--hf-cache", metavar="DIR", help="The hub cache --from-hf-cache reads (a folder of models--ORG--NAME)."
        ),
    ] = None,
    lock_file: Annotated[
        Path | None,
        typer.Option(
            "--lock-file",
            metavar="FILE",
            help=(
                "Provision exactly the commits this lock file pins (a cache's .cache/offline-speech.lock.json, or a "
                "copy in a team's repository): alone, every key it records; with a selection, those keys. A commit the "
                "hub no longer has fails that key only."
            ),
        ),
    ] = None,
    update: Annotated[
        list[str] | None,
        typer.Option(
            "--update",
            metavar="KEY|GROUP",
            help=(
                "Move these catalog keys or groups (repeatable, or comma-separated; a group is what its flag selects) "
                "to the newest commit on the hub, fetch it and say what changed. Without it a cached model is never "
                "re-checked online."
            ),
        ),
    ] = None,
    version: Version = None,
) -> None:
    flags = {
        "whisperx": whisperx,
        "mlx": mlx,
        "indictrans2": indictrans2,
        "nllb": nllb,
        "align": align,
        "diarization": diarization,
    }
    mode = service.mode_of(
        dry_run=dry_run,
        verify=verify,
        info=info,
        clear=clear,
        from_dir=from_dir is not None,
        repair=repair,
        export=export is not None,
        import_=import_ is not None,
        prune=prune,
    )
    if since is not None and export is None:
        raise BadInput("--since goes with --export")
    if hf_cache is not None and not from_hf_cache:
        raise BadInput("--hf-cache goes with --from-hf-cache")
    root = cache_root(cache_dir)
    wanted = service.Wanted(
        keys=tuple(keys or ()),
        job_keys=tuple(_jobs_models(list(job or ()), list(batch or ()), out_dir)),
        groups=tuple(g for g in GROUPS if flags[g]),
        all_groups=all_,
        asr_model=asr_model,
        nllb_model=nllb_model,
        languages=_languages(languages),
        update=tuple(v.strip() for value in update or () for v in value.split(",") if v.strip()),
    )
    request = service.Request(
        mode,
        root,
        wanted,
        repair=repair,
        convert=convert,
        confirmed=yes,
        workers=workers,
        asset_mirror=asset_mirror,
        from_dir=from_dir,
        key=key,
        revision=revision,
        dry_run=dry_run,
        archive=export or import_,
        since=since,
        hf_cache=(hf_cache or user_hub_cache()).expanduser() if from_hf_cache or mode is service.Mode.INFO else None,
        lock_file=lock_file,
    )
    try:
        outcome = service.run(request, _Console(as_json))
    except KeyboardInterrupt:
        stopped = Stopped()
        if "hf_xet" in sys.modules:
            # hf-xet's own threads may still be ending their transfers; an interpreter shutting down under them
            # aborts the process (a fatal PyGILState error, exit -6): end it here, output flushed, locks released.
            err.print(f"{stopped.label}: {stopped}")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(stopped.exit_code)
        raise stopped from None
    raise typer.Exit(_render(outcome, as_json))


def _jobs_models(jobs: list[str], batches: list[str], out_dir: Path | None) -> list[str]:
    """The catalog keys the prepared jobs need, each job named by --job (an id under --out-dir, default out/, or a
    job folder: a path has a /) or belonging to a batch named by --batch."""
    if not jobs and not batches:
        return []
    from ..pipeline import job_needs, load_job
    from ..settings import DEFAULT_OUT_DIR

    folder = Path(os.path.abspath(out_dir or DEFAULT_OUT_DIR))
    if batches:
        from ..batches import read_batch

        jobs = [*jobs, *(job_id for ref in batches for job_id in read_batch(folder, ref).jobs)]
    catalog = load_catalog()
    return [
        need.item.key
        for job_id in jobs
        for need in job_needs(catalog, load_job(folder, job_id, flag="--job", folders=True).job)[0]
    ]


# ---- what a run says while it works ---------------------------------------------------------------------


class _Console:
    """The service's listener on the terminal: notes and conversions on stderr, progress, the --clear question."""

    def __init__(self, as_json: bool):
        self.as_json = as_json

    def warning(self, text: str) -> None:
        err.print(f"note: {text}")

    def status(self, text: str) -> None:
        err.print(text)

    def progress(self, total_bytes: int, bars: bool) -> AbstractContextManager[Reporter]:
        """Rich bars on a terminal; otherwise plain lines, on stderr when stdout carries the JSON."""
        if bars and live() and not self.as_json:
            return RichReporter(total_bytes)
        return LineReporter(total_bytes, sys.stderr if self.as_json else sys.stdout)

    def confirm_clear(self, keys: list[str], root: Path) -> bool:
        if not sys.stdin.isatty():
            raise BadInput("--clear needs confirmation: run it on a terminal or add --yes")
        return typer.confirm(f"remove {', '.join(keys)} from {root}?", default=False)


# ---- what a run returns, rendered -------------------------------------------------------------------------


def _render(outcome: outcomes.Outcome, as_json: bool) -> int:
    """Print an outcome as a table or one JSON document; the exit code (0 ok, 1 something failed)."""
    RENDERERS[type(outcome)](outcome, as_json)
    return 0 if outcome.ok else 1


def _render_provisioned(outcome: outcomes.Provisioned, as_json: bool) -> None:
    title = f"provisioned in {outcome.seconds:.1f} s" if outcome.how == "provisioned" else outcome.how
    _render_results(outcome.results, as_json, title)


def _render_plan(planned: outcomes.Planned, as_json: bool) -> None:
    the_plan, root = planned.plan, planned.root
    if planned.refused:
        err.print(
            f"error: refusing to download {human(the_plan.bytes_to_fetch)}: only {human(the_plan.free_bytes)} free "
            f"under {root} (keeping {human(DISK_MARGIN)} spare); free space or use --cache-dir"
        )
        if not as_json:
            return
    rows = [
        {
            "key": p.key,
            "repo": p.entry.source,
            "commit": p.commit,
            "action": p.action,
            "files": [f.path for f in p.needed],
            "fetch": [f.path for f in p.to_fetch],
            "bytes_needed": p.bytes_needed,
            "bytes_to_fetch": p.bytes_to_fetch,
            "error": p.error,
        }
        for p in the_plan.items
    ] + [
        {
            "key": r.key,
            "repo": "",
            "commit": None,
            "action": "error",
            "files": [],
            "fetch": [],
            "bytes_needed": 0,
            "bytes_to_fetch": 0,
            "error": r.message,
        }
        for r in planned.left_out
    ]
    summary = {
        "cache": str(root),
        "bytes_to_fetch": the_plan.bytes_to_fetch,
        "free_bytes": the_plan.free_bytes,
        "fits": the_plan.fits,
        "warnings": list(the_plan.warnings),
    }
    if as_json:
        _emit_json({"plan": rows, **summary})
        return
    print_table(
        f"plan for {root}",
        ["key", "repo", "commit", "status", "files", "to fetch"],
        [
            [
                r["key"],
                r["repo"],
                (r["commit"] or "")[:12],
                r["action"] if not r["error"] else f"error: {r['error']}",
                str(len(r["files"])),
                human(r["bytes_to_fetch"]),
            ]
            for r in rows
        ],
    )
    failed = sum(1 for r in rows if r["error"])
    fit = "DOES NOT FIT" if not the_plan.fits else f"{failed} could not be planned" if failed else "fits"
    out.print(f"to fetch: {human(the_plan.bytes_to_fetch)}; free: {human(the_plan.free_bytes)}; {fit}")


def _render_results(results: tuple[ItemResult, ...], as_json: bool, title: str) -> None:
    failed = [r for r in results if not r.ok]
    if as_json:
        _emit_json({"results": [r.__dict__ for r in results], "failed": len(failed)})
        return
    print_table(
        title,
        ["key", "status", "fetched", "detail"],
        [[r.key, "ok" if r.ok else "FAILED", human(r.fetched_bytes), r.message] for r in results],
    )
    if failed:
        err.print(f"{len(failed)} of {len(results)} failed: {', '.join(r.key for r in failed)}")


def _render_info(info: outcomes.Info, as_json: bool) -> None:
    if as_json:
        elsewhere = {"hf_cache": str(info.hf_cache), "keys": list(info.elsewhere), "command": info.link_command}
        _emit_json(
            {
                "cache": str(info.root),
                "models": [r.__dict__ for r in info.rows],
                "total_bytes": info.total_bytes,
                "in_your_hf_cache": elsewhere if info.elsewhere else None,
            }
        )
        return
    print_table(
        f"cache {info.root}",
        ["key", "repo", "revision", "size", "status", "location"],
        [[r.key, r.repo, r.revision[:12], human(r.bytes), r.status, r.location] for r in info.rows],
    )
    out.print(f"total on disk: {human(info.total_bytes)}")
    if info.elsewhere:
        out.print(
            f"complete in your Hugging Face cache {info.hf_cache}, not here: {', '.join(info.elsewhere)}; "
            "link them (verified, no download) with:",
            soft_wrap=True,
        )
        out.print(f"  {info.link_command}", soft_wrap=True)


def _render_verified(verified: outcomes.Verified, as_json: bool) -> None:
    if as_json:
        _emit_json(
            {
                "verified": [
                    {"key": r.key, "status": r.status, "files": r.checked, "problems": [p.__dict__ for p in r.problems]}
                    for r in verified.results
                ],
                "repaired": [r.__dict__ for r in verified.repaired],
                "problems": sum(len(r.problems) for r in verified.bad),
            }
        )
        return
    print_table(
        f"verify {verified.root}",
        ["key", "files", "status", "problems"],
        [
            [r.key, str(r.checked), r.status, "; ".join(f"{p.path}: {p.kind} {p.detail}".strip() for p in r.problems)]
            for r in verified.results
        ],
    )
    if verified.bad and not verified.repaired_too:
        err.print("problems found: run ./cache-models.sh --verify --repair to re-fetch only those files")


def _render_cleared(cleared: outcomes.Cleared, as_json: bool) -> None:
    if cleared.cancelled:
        err.print("nothing removed")
    elif as_json:
        _emit_json({"cleared": [{"key": k, "bytes": b} for k, b in cleared.freed]})
    else:
        for k, b in cleared.freed:
            out.print(f"removed {k} ({human(b)})")


def _render_pruned(pruned: outcomes.Pruned, as_json: bool) -> None:
    verb = "would free" if pruned.dry_run else "freed"
    if as_json:
        _emit_json(
            {
                "pruned": [{"what": i.what, "path": str(i.path), "bytes": i.size} for i in pruned.items],
                "freed_bytes": pruned.freed,
                "dry_run": pruned.dry_run,
            }
        )
        return
    print_table(
        f"prune {pruned.root}" + (" (dry run: nothing removed)" if pruned.dry_run else ""),
        ["what", "bytes", "path"],
        [[i.what, human(i.size), str(i.path)] for i in pruned.items],
    )
    out.print(f"{verb} {human(pruned.freed)}" if pruned.items else "nothing to prune")


def _render_exported(exported: outcomes.Exported, as_json: bool) -> None:
    if as_json:
        _emit_json(
            {
                "archive": str(exported.archive),
                "entries": list(exported.entries),
                "files": exported.files,
                "bytes": exported.bytes,
                "archive_bytes": exported.archive_bytes,
                "skipped": [list(s) for s in exported.skipped],
                "dry_run": exported.dry_run,
                "files_hashed": exported.files_hashed,
            }
        )
        return
    what = "would write" if exported.dry_run else "wrote"
    out.print(
        f"{what} {exported.archive}: {len(exported.entries)} entries, {exported.files} files, {human(exported.bytes)}"
    )


def _render_imported(imported: outcomes.Imported, as_json: bool) -> None:
    if as_json:
        _emit_json({"archive": str(imported.archive), "imported": [r.__dict__ for r in imported.results]})
        return
    print_table(
        f"import {imported.archive}",
        ["key", "status", "detail"],
        [[r.key, r.status, r.detail] for r in imported.results],
    )


# One renderer per kind of outcome (what each mode returns).
RENDERERS = {
    outcomes.Provisioned: _render_provisioned,
    outcomes.Planned: _render_plan,
    outcomes.Verified: _render_verified,
    outcomes.Info: _render_info,
    outcomes.Exported: _render_exported,
    outcomes.Imported: _render_imported,
    outcomes.Pruned: _render_pruned,
    outcomes.Cleared: _render_cleared,
}
