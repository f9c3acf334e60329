"""The offline-speech command line: the shell shims exec `python -m offline_speech <command>`.

Commands compute data objects (plans, results) in the library modules; this file only renders them (rich
tables, progress bars, or --json) and maps failures to exit codes: 0 ok, 1 something requested failed,
2 bad input.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from . import cache, derive, provision
from .catalog import (
    DEFAULT_ASR_MODEL,
    DEFAULT_LANGUAGES,
    DEFAULT_NLLB_MODEL,
    GROUPS,
    CatalogError,
    Item,
    Model,
    all_groups_for,
    host_platform,
    load_catalog,
)
from .env import VENV_ROOT, cache_root, user_token

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

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
"""


class BadInput(Exception):
    """Bad input: one line, exit code 2."""


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


# ---- progress ---------------------------------------------------------------------------------------------


class RichReporter:
    """Bytes per file and in total, as rich bars (terminal only)."""

    def __init__(self, total_bytes: int):
        self.progress = Progress(
            TextColumn("{task.description}", table_column=None),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=out,
            transient=False,
        )
        self.total = self.progress.add_task("[bold]total", total=total_bytes)
        self.tasks: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def file_started(self, key: str, path: str, size: int) -> None:
        with self.lock:
            task = self.tasks.get((key, path))
            if task is None:
                self.tasks[(key, path)] = self.progress.add_task(f"{key}/{path}", total=size or None)
            else:  # a retry restarts the file
                self.progress.update(self.total, advance=-self.progress.tasks[task].completed)
                self.progress.reset(task, total=size or None)

    def advance(self, key: str, path: str, nbytes: int) -> None:
        with self.lock:
            task = self.tasks.get((key, path))
            if task is not None:
                self.progress.advance(task, nbytes)
            self.progress.advance(self.total, nbytes)

    def file_done(self, key: str, path: str) -> None:
        with self.lock:
            task = self.tasks.pop((key, path), None)
            if task is not None:
                self.progress.remove_task(task)


class LineReporter:
    """Plain lines for logs and pipes: one when a file starts, one when it is done, one per 10 % of the total."""

    def __init__(self, total_bytes: int, stream=sys.stdout):
        self.total_bytes = total_bytes
        self.done = 0
        self.next_mark = 0.1
        self.stream = stream
        self.lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def file_started(self, key: str, path: str, size: int) -> None:
        self._print(f"fetching {key}/{path} ({human(size)})")

    def advance(self, key: str, path: str, nbytes: int) -> None:
        with self.lock:
            self.done += nbytes
            if self.total_bytes and self.done >= self.next_mark * self.total_bytes:
                self._print(f"  {self.done * 100 // self.total_bytes}% of {human(self.total_bytes)}")
                self.next_mark = self.done / self.total_bytes + 0.1

    def file_done(self, key: str, path: str) -> None:
        self._print(f"done     {key}/{path}")


# ---- cache-models ------------------------------------------------------------------------------------------


def _selected(catalog, keys, groups, all_, asr_model, nllb_model, languages, platform_id):
    """Keys first, then group flags (--all = every group for this platform)."""
    items: list[Item] = [catalog.get(k) for k in keys]
    chosen_groups = all_groups_for(platform_id) if all_ else []
    chosen_groups += [g for g in groups if g not in chosen_groups]
    warnings: tuple[str, ...] = ()
    if chosen_groups:
        selection = catalog.select(
            chosen_groups, asr_model=asr_model, nllb_model=nllb_model, languages=languages, platform_id=platform_id
        )
        items += [i for i in selection.items if i not in items]
        warnings = selection.warnings
    return items, warnings


def _emit_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def _languages(value: str) -> tuple[str, ...]:
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
    keys: Annotated[Optional[list[str]], typer.Argument(help="Catalog keys (see --info); alternative to group flags.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every group this machine's pipeline uses (MLX only on Apple Silicon).")] = False,
    whisperx: Annotated[bool, typer.Option("--whisperx", help="The faster-whisper model named by --asr-model.")] = False,
    mlx: Annotated[bool, typer.Option("--mlx", help="The MLX Whisper model named by --asr-model (runs on Apple Silicon only).")] = False,
    indictrans2: Annotated[bool, typer.Option("--indictrans2", help="IndicTrans2 indic-en, en-indic, indic-indic 1B (gated; safetensors only).")] = False,
    nllb: Annotated[bool, typer.Option("--nllb", help="The NLLB-200 model named by --nllb-model, plus its CTranslate2 int8 conversion (made here with venv/translation).")] = False,
    align: Annotated[bool, typer.Option("--align", help="Word aligners for --languages, plus nltk punkt_tab.")] = False,
    diarization: Annotated[bool, typer.Option("--diarization", help="pyannote/speaker-diarization-community-1 (gated).")] = False,
    speaker: Annotated[bool, typer.Option("--speaker", help="speechbrain/spkrec-ecapa-voxceleb speaker embeddings.")] = False,
    asr_model: Annotated[str, typer.Option(help="ASR model name, as faster-whisper names them (tiny.en … large-v3, large-v3-turbo, distil-*).")] = DEFAULT_ASR_MODEL,
    nllb_model: Annotated[str, typer.Option(help="NLLB size: 3.3B, 1.3B, distilled-1.3B, distilled-600M.")] = DEFAULT_NLLB_MODEL,
    languages: Annotated[str, typer.Option(help="Comma-separated language codes for --align.")] = ",".join(DEFAULT_LANGUAGES),
    job: Annotated[Optional[list[str]], typer.Option("--job", "-j", metavar="ID|DIR", help="Every model a prepared job needs (ASR, aligner, translation models): a job id under out/, or a job folder; repeatable.")] = None,
    convert: Annotated[bool, typer.Option("--convert/--no-convert", help="Make NLLB's CTranslate2 int8 conversion after provisioning it (needs venv/translation); --no-convert leaves the translate stage on transformers.")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan (cached, to fetch, bytes, free disk); change nothing.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Offline: hash every cached file against the hub's ids; exit 1 on any problem.")] = False,
    repair: Annotated[bool, typer.Option("--repair", help="With or without --verify: re-fetch only missing, truncated or corrupt files.")] = False,
    info: Annotated[bool, typer.Option("--info", help="Table of cached models: revision, size on disk, status, location.")] = False,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the named keys or groups from the cache (asks first).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (--clear).")] = False,
    from_dir: Annotated[Optional[Path], typer.Option("--from-dir", help="Register model files obtained elsewhere (needs --key).")] = None,
    key: Annotated[Optional[str], typer.Option("--key", help="Catalog key for --from-dir.")] = None,
    revision: Annotated[Optional[str], typer.Option("--revision", help="Commit to register --from-dir files under (default: the catalog's pin).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of tables.")] = False,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Cache root (default: $OFFLINE_SPEECH_CACHE or <project>/.cache).")] = None,
    asset_mirror: Annotated[Optional[str], typer.Option("--asset-mirror", envvar="OFFLINE_SPEECH_ASSET_MIRROR", help="Base URL replacing download.pytorch.org / GitHub for non-hub assets.")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, max=32, help="Files downloaded at once (default: one per CPU core, 2 to 8).")] = None,
) -> None:
    try:
        code = _cache_models(**locals())
    except (BadInput, CatalogError, provision.ProvisionError) as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    raise typer.Exit(code)


def _job_models(job: str) -> list[str]:
    """The catalog keys a prepared job recorded: `job` is an id under out/ or a job folder (a path has a /)."""
    from .jobs import DEFAULT_OUT_DIR
    from .schema import JOB_ID_RE, SchemaError, read_job

    if "/" in job:
        path = Path(job).expanduser() / "job.json"
    elif JOB_ID_RE.match(job) and ".." not in job:
        path = DEFAULT_OUT_DIR / job / "job.json"
    else:
        raise BadInput(f"--job {job!r}: not a job id (or a job folder path)")
    if not path.is_file():
        raise BadInput(f"--job {job}: no prepared job there ({path} does not exist)")
    try:
        return list(read_job(path).models)
    except SchemaError as exc:
        raise BadInput(f"--job {job}: {exc}") from None


def _cache_models(**o) -> int:
    modes = [m for m in ("dry_run", "verify", "info", "clear") if o[m]] + (["from_dir"] if o["from_dir"] else [])
    if len(modes) > 1:
        raise BadInput("choose one of --dry-run, --verify, --info, --clear, --from-dir")
    if o["repair"] and modes not in ([], ["verify"]):
        raise BadInput("--repair goes with --verify only")
    root = cache_root(o["cache_dir"])
    catalog = load_catalog()
    platform_id = host_platform()
    groups = [g for g in GROUPS if o[g]]
    keys = list(o["keys"] or []) + [k for job_id in o["job"] or [] for k in _job_models(job_id) if k not in (o["keys"] or [])]
    items, warnings = _selected(
        catalog, keys, groups, o["all_"], o["asr_model"], o["nllb_model"], _languages(o["languages"]), platform_id
    )
    for w in warnings:
        err.print(f"note: {w}")

    if o["from_dir"]:
        if not o["key"]:
            raise BadInput("--from-dir needs --key KEY (a catalog key, e.g. faster-whisper-tiny.en)")
        model = catalog.get(o["key"])
        if not isinstance(model, Model):
            raise BadInput(f"{o['key']} is not a hub model; --from-dir registers hub models")
        result = provision.register_dir(root, model, o["from_dir"].expanduser(), o["revision"])
        return _render_results([result], o["as_json"], title="registered")
    if o["info"]:
        return _info(root, catalog, items, o["as_json"], platform_id)
    if o["verify"] or o["repair"]:
        return _verify(root, catalog, items, o)
    if not items:
        raise BadInput("choose what to cache: --all, a group flag (--whisperx, --align, ...) or catalog keys; see --help")
    if o["clear"]:
        return _clear(root, items, o["yes"], o["as_json"])

    lock = cache.read_lock(root)
    if all(cache.item_state(root, i, lock).status == "complete" for i in items) and not o["dry_run"]:
        # The common case, and the one that must be instant: no network, no huggingface_hub import.
        results = [provision.ItemResult(i.key, True, 0, "cached") for i in items]
        results = _with_conversions(root, items, results) if o["convert"] else results
        return _render_results(results, o["as_json"], title="all cached")
    remote = provision.Remote(os.environ.get("HF_ENDPOINT"), user_token(), o["asset_mirror"])
    the_plan = provision.plan(root, items, remote, warnings)
    if o["dry_run"]:
        _render_plan(the_plan, root, o["as_json"])
        return 0 if the_plan.fits and not any(p.action == "error" for p in the_plan.items) else 1
    if not the_plan.fits:
        err.print(
            f"error: refusing to download {human(the_plan.bytes_to_fetch)}: only {human(the_plan.free_bytes)} free "
            f"under {root} (keeping {human(provision.DISK_MARGIN)} spare); free space or use --cache-dir"
        )
        if o["as_json"]:
            _render_plan(the_plan, root, True)
        return 1
    if out.is_terminal and not o["as_json"]:
        reporter: RichReporter | LineReporter = RichReporter(the_plan.bytes_to_fetch)
    else:
        reporter = LineReporter(the_plan.bytes_to_fetch, sys.stderr if o["as_json"] else sys.stdout)
    started = time.monotonic()
    with reporter:
        results = provision.fetch(root, the_plan, remote, reporter, o["workers"])
    results = _with_conversions(root, items, results) if o["convert"] else results
    return _render_results(results, o["as_json"], title=f"provisioned in {time.monotonic() - started:.1f} s")


def _with_conversions(root: Path, items: list[Item], results: list[provision.ItemResult]) -> list[provision.ItemResult]:
    """Make the derived artifacts of the provisioned entries (NLLB -> CTranslate2 int8) where they are missing."""
    out = []
    for item, result in zip(items, results):
        if result.ok and isinstance(item, Model) and derive.wants_ct2(item):
            ok, message = derive.convert(root, item, VENV_ROOT, announce=err.print)
            result = provision.ItemResult(result.key, ok, result.fetched_bytes, f"{result.message}; {message}")
        out.append(result)
    return out


def _render_plan(the_plan: provision.Plan, root: Path, as_json: bool) -> None:
    rows = []
    for p in the_plan.items:
        rows.append(
            {
                "key": p.item.key,
                "repo": getattr(p.item, "repo", None) or p.item.url(),
                "commit": p.commit,
                "action": p.action,
                "files": [f.path for f in p.needed],
                "fetch": [f.path for f in p.to_fetch],
                "bytes_needed": p.bytes_needed,
                "bytes_to_fetch": p.bytes_to_fetch,
                "error": p.error,
            }
        )
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
    table = Table(title=f"plan for {root}")
    for col in ("key", "repo", "commit", "status", "files", "to fetch"):
        table.add_column(col, overflow="fold")
    for r in rows:
        status = r["action"] if not r["error"] else f"error: {r['error']}"
        table.add_row(
            r["key"], r["repo"], (r["commit"] or "")[:12], status, str(len(r["files"])), human(r["bytes_to_fetch"])
        )
    out.print(table)
    fit = "fits" if the_plan.fits else "DOES NOT FIT"
    out.print(f"to fetch: {human(the_plan.bytes_to_fetch)}; free: {human(the_plan.free_bytes)}; {fit}")


def _render_results(results: list[provision.ItemResult], as_json: bool, title: str) -> int:
    failed = [r for r in results if not r.ok]
    if as_json:
        _emit_json({"results": [r.__dict__ for r in results], "failed": len(failed)})
    else:
        table = Table(title=title)
        for col in ("key", "status", "fetched", "detail"):
            table.add_column(col, overflow="fold")
        for r in results:
            table.add_row(r.key, "ok" if r.ok else "FAILED", human(r.fetched_bytes), r.message)
        out.print(table)
        if failed:
            err.print(f"{len(failed)} of {len(results)} failed: {', '.join(r.key for r in failed)}")
    return 1 if failed else 0


def _info(root: Path, catalog, items: list[Item], as_json: bool, platform_id: str) -> int:
    lock = cache.read_lock(root)
    if not items:
        shown = catalog.select(all_groups_for(platform_id), platform_id=platform_id).items
        items = list(dict.fromkeys(list(shown) + [i for i in catalog.items if cache.item_state(root, i, lock).status != "missing"]))
    rows = []
    for item in items:
        state = cache.item_state(root, item, lock)
        rows.append(
            {
                "key": item.key,
                "repo": item.repo if isinstance(item, Model) else item.url(),
                "revision": state.commit or getattr(item, "revision", ""),
                "bytes": state.bytes_on_disk,
                "status": state.status,
                "location": str(state.location),
            }
        )
        if isinstance(item, Model) and derive.wants_ct2(item):
            d = cache.derived_state(root, item, lock)
            if d.status != "missing" or state.status == "complete":
                rows.append({"key": d.key, "repo": f"{item.repo} (CTranslate2 {cache.CT2_QUANTIZATION}, made here)",
                             "revision": d.commit or "", "bytes": d.bytes_on_disk, "status": d.status,
                             "location": str(d.location)})
    total = sum(r["bytes"] for r in rows)
    if as_json:
        _emit_json({"cache": str(root), "models": rows, "total_bytes": total})
        return 0
    table = Table(title=f"cache {root}")
    for col in ("key", "repo", "revision", "size", "status", "location"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["key"], r["repo"], r["revision"][:12], human(r["bytes"]), r["status"], r["location"])
    out.print(table)
    out.print(f"total on disk: {human(total)}")
    return 0


def _verify(root: Path, catalog, items: list[Item], o: dict) -> int:
    lock = cache.read_lock(root)
    if not items:
        items = [catalog.get(k) for k in list(lock["models"]) + list(lock["assets"]) if _known(catalog, k)]
    if not items:
        raise BadInput(f"nothing is provisioned in {root}: nothing to verify")
    results = provision.verify(root, items)
    repaired: list[provision.ItemResult] = []
    if o["repair"] and any(r.status != "ok" for r in results):
        remote = provision.Remote(os.environ.get("HF_ENDPOINT"), user_token(), o["asset_mirror"])
        reporter = LineReporter(0, sys.stderr if o["as_json"] else sys.stdout)
        repaired = provision.repair(root, items, results, remote, reporter)
        bad_keys = {r.key for r in results if r.status != "ok"}
        after = provision.verify(root, [i for i in items if {i.key, cache.derived_key(i) if isinstance(i, Model) else ""} & bad_keys])
        fixed = {r.key: r for r in after}
        results = [fixed.get(r.key, r) for r in results]
    bad = [r for r in results if r.status != "ok"]
    if o["as_json"]:
        _emit_json(
            {
                "verified": [
                    {"key": r.key, "status": r.status, "files": r.checked, "problems": [p.__dict__ for p in r.problems]}
                    for r in results
                ],
                "repaired": [r.__dict__ for r in repaired],
                "problems": sum(len(r.problems) for r in bad),
            }
        )
    else:
        table = Table(title=f"verify {root}")
        for col in ("key", "files", "status", "problems"):
            table.add_column(col, overflow="fold")
        for r in results:
            detail = "; ".join(f"{p.path}: {p.kind} {p.detail}".strip() for p in r.problems)
            table.add_row(r.key, str(r.checked), r.status, detail)
        out.print(table)
        if bad and not o["repair"]:
            err.print("problems found: run ./cache-models.sh --verify --repair to re-fetch only those files")
    return 1 if bad else 0


def _known(catalog, key: str) -> bool:
    try:
        catalog.get(key)
        return True
    except CatalogError:
        return False


def _clear(root: Path, items: list[Item], yes: bool, as_json: bool) -> int:
    if not yes:
        if not sys.stdin.isatty():
            raise BadInput("--clear needs confirmation: run it on a terminal or add --yes")
        names = ", ".join(i.key for i in items)
        if not typer.confirm(f"remove {names} from {root}?", default=False):
            err.print("nothing removed")
            return 1
    freed = provision.clear(root, items)
    if as_json:
        _emit_json({"cleared": [{"key": k, "bytes": b} for k, b in freed]})
    else:
        for k, b in freed:
            out.print(f"removed {k} ({human(b)})")
    return 0


PREPARE_EXAMPLES = """\b
Examples:
  ./prepare-job.sh --media in/talk.mp4 -s hi
  ./prepare-job.sh --media in/film.mp4 --workflow subtitle -s hi -t en,ta,bn
  ./prepare-job.sh --media in/meeting.mkv --start-time 00:05:00 --end-time 00:10:30 --asr-model large-v3-turbo
"""


@app.command(
    "prepare-job",
    epilog=PREPARE_EXAMPLES,
    help="Validate a media file and the job's settings, write out/<id>/job.json, and print the job id as the "
    "last line. Bad input exits 2 with one line and leaves nothing behind.",
)
def prepare_job(
    media: Annotated[Path, typer.Option("--media", help="The media file (audio or video with an audio stream).")],
    workflow: Annotated[str, typer.Option(help="transcribe, translate or subtitle.")] = "transcribe",
    source: Annotated[str, typer.Option("-s", "--source-language", help="Spoken language (Whisper code) or auto.")] = "auto",
    targets: Annotated[Optional[str], typer.Option("-t", "--target-languages", help="Comma-separated target languages (translate, subtitle).")] = None,
    start_time: Annotated[Optional[str], typer.Option("--start-time", help="Clip start, HH:MM:SS[.mmm] or seconds (absolute).")] = None,
    end_time: Annotated[Optional[str], typer.Option("--end-time", help="Clip end, HH:MM:SS[.mmm] or seconds (absolute).")] = None,
    asr_model: Annotated[str, typer.Option(help="ASR model name (tiny.en ... large-v3, large-v3-turbo, distil-*).")] = DEFAULT_ASR_MODEL,
    backend: Annotated[str, typer.Option(help="auto (MLX on Apple Silicon with venv/mlx, else whisperx), whisperx or mlx.")] = "auto",
    align: Annotated[bool, typer.Option("--align/--no-align", help="Word timestamps with the language's aligner (./cache-models.sh --align); --no-align keeps segment timestamps.")] = True,
    nllb_model: Annotated[str, typer.Option(help="NLLB size for pairs IndicTrans2 does not cover: 3.3B, 1.3B, distilled-1.3B, distilled-600M.")] = DEFAULT_NLLB_MODEL,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON (the id is still the last line).")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Where job folders go (default <project>/out).")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Cache root (default: $OFFLINE_SPEECH_CACHE or <project>/.cache).")] = None,
) -> None:
    from .jobs import DEFAULT_OUT_DIR, JobError, prepare
    from .media import MediaError

    try:
        job, folder = prepare(
            load_catalog(),
            cache_root(cache_dir),
            media,
            workflow=workflow,
            source=source,
            targets=targets,
            start=start_time,
            end=end_time,
            asr_model=asr_model,
            backend=backend,
            align=align,
            nllb_model=nllb_model,
            out_dir=out_dir or DEFAULT_OUT_DIR,
        )
    except (JobError, MediaError, CatalogError) as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(2) from None
    for w in job.warnings:
        err.print(f"note: {w}")
    if as_json:
        print(job.to_json(), end="")
    else:
        out.print(f"job {folder}: {job.workflow} {job.clip.duration:.1f} s of {Path(job.media.path).name}, backend {job.backend}")
    print(job.id)


class PipelineProgress:
    """Rich progress for run-pipeline: one bar per job, in audio seconds of its current stage."""

    def __init__(self) -> None:
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:>7.1f}/{task.total:.1f} s audio"),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> "PipelineProgress":
        self.bars.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.stop()

    def _task(self, job: str) -> int:
        if job not in self.tasks:
            self.tasks[job] = self.bars.add_task(job, total=1.0)
        return self.tasks[job]

    def stage_started(self, stage: str, jobs: list[str], pid: int) -> None:
        self.bars.console.print(f"[bold]{stage}[/bold]: {len(jobs)} job(s) in one process (pid {pid})")

    def job_skipped(self, job: str, stage: str) -> None:
        self.bars.console.print(f"  {job}: {stage} up to date, skipped")

    def job_started(self, job: str, stage: str, seconds: float) -> None:
        self.bars.update(self._task(job), description=f"{job} [cyan]{stage}[/cyan]", total=max(seconds, 0.001), completed=0)

    def progress(self, job: str, stage: str, seconds: float) -> None:
        self.bars.update(self._task(job), completed=seconds)

    def job_done(self, job: str, stage: str, info: dict, duration: float) -> None:
        task = self._task(job)
        self.bars.update(task, completed=self.bars.tasks[task].total, description=f"{job} {stage} done")

    def job_failed(self, job: str, stage: str, error: str, log: Path) -> None:
        self.bars.update(self._task(job), description=f"{job} [red]{stage} failed[/red]")


class PipelineLines:
    """Plain lines for run-pipeline when stderr is not a terminal."""

    def __enter__(self) -> "PipelineLines":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def stage_started(self, stage: str, jobs: list[str], pid: int) -> None:
        err.print(f"{stage}: {len(jobs)} job(s) in one process (pid {pid})")

    def job_skipped(self, job: str, stage: str) -> None:
        err.print(f"{job}: {stage} up to date, skipped")

    def job_started(self, job: str, stage: str, seconds: float) -> None:
        err.print(f"{job}: {stage} started ({seconds:.1f} s of audio)")

    def progress(self, job: str, stage: str, seconds: float) -> None:
        pass

    def job_done(self, job: str, stage: str, info: dict, duration: float) -> None:
        err.print(f"{job}: {stage} done in {duration:.2f} s")

    def job_failed(self, job: str, stage: str, error: str, log: Path) -> None:
        err.print(f"{job}: {stage} failed")


RUN_PIPELINE_EPILOG = """\b
Examples:
  ./run-pipeline.sh -j 20261122-101500.123-talk-3f2a
  ./run-pipeline.sh -j ID1 -j ID2 -j ID3     stage by stage: each model loads once for all three
  ./run-pipeline.sh -j ID --restart           redo every stage
Every stage runs offline (HF_HUB_OFFLINE=1, project cache). Stages by the job's workflow: transcribe = demux,
asr, align, outputs; translate adds translate; subtitle adds translate and mux. Outputs in out/<id>/:
<stem>.<lang>.srt/.vtt/.txt/.json for the source and each target (translate: .txt/.json for targets), and for
subtitle <stem>.subtitled.mkv (or .mp4) with one tagged track per language.
out/<id>/manifest.json and out/<id>/logs/<stage>.log tell what ran. Exit 0 done, 1 a stage failed, 2 bad input
or a missing venv/model (nothing is run), 130 interrupted (run again to resume).
"""


@app.command("run-pipeline", epilog=RUN_PIPELINE_EPILOG)
def run_pipeline(
    job_ids: Annotated[list[str], typer.Option("-j", "--job", metavar="ID", help="A job id from prepare-job.sh; repeat for several jobs.")],
    restart: Annotated[bool, typer.Option("--restart", help="Redo every stage, even those whose inputs are unchanged.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary of the jobs on stdout.")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Where job folders are (default <project>/out).")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option("--cache-dir", help="Cache root (default: $OFFLINE_SPEECH_CACHE or <project>/.cache).")] = None,
) -> None:
    """Run the prepared jobs' stages offline, each stage once across all jobs, resuming where a run stopped."""
    from .jobs import DEFAULT_OUT_DIR
    from .pipeline import PreflightError, Runner, load_job, preflight

    out_root = Path(os.path.abspath(out_dir or DEFAULT_OUT_DIR))
    root = cache_root(cache_dir)
    catalog = load_catalog()
    problems, runs = [], []
    for job_id in dict.fromkeys(job_ids):
        try:
            runs.append(load_job(out_root, job_id))
        except PreflightError as exc:
            problems.extend(exc.problems)
    problems.extend(preflight(catalog, root, runs, VENV_ROOT))
    if problems:
        for line in problems:
            err.print(f"error: {line}")
        raise typer.Exit(2)
    reporter = PipelineProgress() if err.is_terminal and not as_json else PipelineLines()
    try:
        with reporter:
            failed = Runner(catalog, root, VENV_ROOT, reporter, restart=restart).run(runs)
    except KeyboardInterrupt:
        err.print("interrupted: run the same command again to resume")
        raise typer.Exit(130) from None
    if as_json:
        summary = [{"id": r.id, "dir": str(r.dir), "status": r.manifest["status"], "error": r.manifest.get("error"),
                    "outputs": {k: str(r.dir / v) for k, v in r.manifest.get("outputs", {}).items()},
                    "warnings": r.manifest.get("warnings", [])} for r in runs]
        print(json.dumps({"jobs": summary}, indent=2, ensure_ascii=False))
    else:
        for r in runs:
            if not r.failed:
                for w in r.manifest.get("warnings", []):
                    err.print(f"warning: {r.id}: {w}")
                print(f"{r.id}: done")
                for v in r.manifest.get("outputs", {}).values():
                    print(f"  {r.dir / v}")
    for r in failed:
        stage = r.manifest["error"].split(":", 1)[0]
        log = r.dir / r.manifest["stages"][stage]["log"]
        err.print(f"error: job {r.id}: stage {r.manifest['error']} (log: {log})")
    if failed:
        raise typer.Exit(1)


@app.callback()
def _commands() -> None:
    """offline-speech: provision models once, then run speech pipelines offline."""


SHIMS = {"cache-models": "cache-models.sh", "prepare-job": "prepare-job.sh", "run-pipeline": "run-pipeline.sh"}


def main(argv: list[str] | None = None) -> None:
    """Entry point; a shim's command runs under the shim's own name so --help and errors show what users type."""
    argv = sys.argv[1:] if argv is None else argv
    group = typer.main.get_command(app)
    if argv and argv[0] in SHIMS:
        command = group.commands[argv[0]]  # type: ignore[attr-defined]
        command.main(args=argv[1:], prog_name=SHIMS[argv[0]])
    else:
        group.main(args=argv, prog_name="offline-speech")


if __name__ == "__main__":
    main()
