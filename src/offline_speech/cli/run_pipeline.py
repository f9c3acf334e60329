"""run-pipeline: run prepared jobs' stages offline, each stage once across all jobs, resuming where a run stopped."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..catalog import load_catalog
from ..errors import BadInput, Stopped, WorkFailed
from ..settings import DEFAULT_OUT_DIR, VENV_ROOT, cache_root
from .app import app
from .options import AsJson, CacheDir, OutDir, Version
from .output import PipelineLines, PipelineProgress, err, live

if TYPE_CHECKING:
    from ..pipeline import JobRun

RUN_PIPELINE_EPILOG = """\b
Examples:
  ./run-pipeline.sh -j 20261122-101500.123-talk-3f2a
  ./run-pipeline.sh -j ID1 -j ID2 -j ID3     stage by stage: each model loads once for all three
  ./run-pipeline.sh -j ID --restart           redo every stage
  ./run-pipeline.sh -j ID --trust-remote-code IndicTrans2 code the catalog has not pinned may run (this run only)
  ./run-pipeline.sh -b BATCH                  every unfinished job of a batch (prepare-job with several media)
  ./run-pipeline.sh -b BATCH --status         done / running / failed / waiting, per job
Every stage runs offline (HF_HUB_OFFLINE=1, project cache). Stages by the job's workflow: transcribe = demux,
asr, align, outputs; translate adds translate; subtitle adds translate and mux. Outputs in out/<id>/:
<stem>.<lang>.srt/.vtt/.txt/.json for the source and each target (translate: .txt/.json for targets), and for
subtitle <stem>.subtitled.mkv (or .mp4) with one tagged track per language.
out/<id>/manifest.json and out/<id>/logs/<stage>.log tell what ran. Exit 0 done, 1 a stage failed, 2 bad input
or a missing venv/model, or the job is being run already (nothing is run), 130 interrupted (run again to
resume). One run-pipeline at a time per job: a second one on the same job refuses (exit 2).
"""


@app.command("run-pipeline", epilog=RUN_PIPELINE_EPILOG)
def run_pipeline(
    job_ids: Annotated[
        list[str] | None,
        typer.Option(
            "-j",
            "--job",
            metavar="ID|DIR",
            help="A job id from prepare-job.sh (or a job folder); repeat for several jobs.",
        ),
    ] = None,
    batches: Annotated[
        list[str] | None,
        typer.Option(
            "-b",
            "--batch",
            metavar="ID|FILE",
            help="A batch id from prepare-job.sh (or its out/batches/<id>.json): its unfinished jobs; repeatable.",
        ),
    ] = None,
    status: Annotated[
        bool,
        typer.Option("--status", help="Say where each job stands (done, running, failed, waiting); run nothing."),
    ] = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Redo every stage, even those whose inputs are unchanged.")
    ] = False,
    trust_remote_code: Annotated[
        bool,
        typer.Option(
            "--trust-remote-code",
            help=(
                "Let a model's own code (IndicTrans2) run although the catalog pins no reviewed hashes for its commit; "
                "for this run only, recorded nowhere."
            ),
        ),
    ] = False,
    as_json: AsJson = False,
    out_dir: OutDir = None,
    cache_dir: CacheDir = None,
    version: Version = None,
) -> None:
    """Run the prepared jobs' stages offline, each stage once across all jobs, resuming where a run stopped."""
    from ..batches import read_batch
    from ..pipeline import run_jobs

    out = Path(os.path.abspath(out_dir or DEFAULT_OUT_DIR))
    wanted = list(job_ids or [])
    for ref in batches or []:
        wanted += read_batch(out, ref).jobs
    if not wanted:
        raise BadInput("name the jobs: -j ID (repeatable) or -b BATCH")
    if status:
        _show_status(out, wanted, as_json)
        return
    if batches and not restart:
        from ..pipeline.status import unfinished

        todo = unfinished(out, wanted)
        if len(todo) < len(wanted):
            err.print(f"note: {len(wanted) - len(todo)} of {len(wanted)} jobs are done or being run: left out")
        if not todo:
            if as_json:
                print(json.dumps({"jobs": []}, indent=2))
            return
        wanted = todo
    reporter = PipelineProgress() if live(err) and not as_json else PipelineLines()
    try:
        runs = run_jobs(
            load_catalog(),
            cache_root(cache_dir),
            out,
            wanted,
            reporter,
            VENV_ROOT,
            restart=restart,
            trust_remote_code=trust_remote_code,
        )
    except KeyboardInterrupt:
        raise Stopped() from None
    failed = [r for r in runs if r.failed]
    if as_json:
        summary = [
            {
                "id": r.id,
                "dir": str(r.dir),
                "status": r.manifest["status"],
                "error": r.manifest.get("error"),
                "outputs": {k: str(r.dir / v) for k, v in r.manifest.get("outputs", {}).items()},
                "warnings": r.manifest.get("warnings", []),
                "notes": _notes(r.manifest),
            }
            for r in runs
        ]
        print(json.dumps({"jobs": summary}, indent=2, ensure_ascii=False))
    else:
        for r in runs:
            if not r.failed:
                for w in r.manifest.get("warnings", []):
                    err.print(f"warning: {r.id}: {w}")
                print(f"{r.id}: done")
                for note in _notes(r.manifest):
                    print(f"  {note}")
                for v in r.manifest.get("outputs", {}).values():
                    print(f"  {r.dir / v}")
    if failed:
        raise WorkFailed("\n".join(_failure(r) for r in failed))


def _show_status(out_dir: Path, job_ids: list[str], as_json: bool) -> None:
    from ..pipeline.status import STATES, statuses

    found = statuses(out_dir, job_ids)
    counts = {state: sum(s.status == state for s in found) for state in STATES}
    if as_json:
        rows = [{"id": s.id, "status": s.status, "detail": s.detail, "media": s.media, "dir": s.dir} for s in found]
        print(json.dumps({"jobs": rows, "counts": counts}, indent=2, ensure_ascii=False))
        return
    for s in found:
        print(f"{s.id}  {s.status:<8} {s.media}" + (f"  ({s.detail})" if s.detail else ""))
    print(", ".join(f"{state} {n}" for state, n in counts.items()))


def _failure(run: JobRun) -> str:
    """One line for a failed job: the stage, its error and its log."""
    stage = run.manifest["error"].split(":", 1)[0]
    log = run.dir / run.manifest["stages"][stage]["log"]
    return f"job {run.id}: stage {run.manifest['error']} (log: {log})"


def _notes(manifest: dict) -> list[str]:
    """What the job's stages said for the user to read at the end (diarize: each enrolled person's best score, to
    tune --speaker-threshold by), as `<stage>: <note>`."""
    return [
        f"{name}: {note}"
        for name, record in manifest.get("stages", {}).items()
        for note in (record.get("info") or {}).get("notes", [])
    ]
