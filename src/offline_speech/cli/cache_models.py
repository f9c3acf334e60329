"""cache-models: provision models into the project cache, then plan, verify, repair, show or clear them."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .. import cache, derive, provision
from ..catalog import (
    DEFAULT_ASR_MODEL,
    DEFAULT_LANGUAGES,
    DEFAULT_NLLB_MODEL,
    GROUPS,
    CatalogError,
    Item,
    Model,
    all_groups_for,
    load_catalog,
)
from ..errors import BadInput
from ..settings import VENV_ROOT, asset_mirror, cache_root, host_platform, hub_endpoint, user_token
from .app import app
from .options import AsJson, CacheDir
from .output import LineReporter, RichReporter, emit_json as _emit_json, err, human, out

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
    as_json: AsJson = False,
    cache_dir: CacheDir = None,
    asset_mirror: Annotated[Optional[str], typer.Option("--asset-mirror", envvar="OFFLINE_SPEECH_ASSET_MIRROR", help="Base URL replacing download.pytorch.org / GitHub for non-hub assets.")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, max=32, help="Files downloaded at once (default: one per CPU core, 2 to 8).")] = None,
) -> None:
    raise typer.Exit(_cache_models(**locals()))


def _job_models(job: str) -> list[str]:
    """The catalog keys a prepared job needs: `job` is an id under out/ or a job folder (a path has a /)."""
    from ..pipeline import job_needs, load_job
    from ..settings import DEFAULT_OUT_DIR

    needs, _ = job_needs(load_catalog(), load_job(DEFAULT_OUT_DIR, job, flag="--job", folders=True).job)
    return [need.item.key for need in needs]


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
    remote = provision.Remote(hub_endpoint(), user_token(), asset_mirror(o["asset_mirror"]))
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
        remote = provision.Remote(hub_endpoint(), user_token(), asset_mirror(o["asset_mirror"]))
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
