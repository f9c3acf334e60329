"""run-pipeline: run prepared jobs' stages offline, each stage once across all jobs, resuming where a run stopped."""

from __future__ import annotations

import dataclasses
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
from .output import out as out_console

if TYPE_CHECKING:
    from ..pipeline import JobRun
    from ..pipeline.slurm import SlurmOptions

RUN_PIPELINE_EPILOG = """\b
Examples:
  ./run-pipeline.sh -j 20261122-101500.123-talk-3f2a
  ./run-pipeline.sh -j ID1 -j ID2 -j ID3     stage by stage: each model loads once for all three
  ./run-pipeline.sh -j ID --restart           redo every stage
  ./run-pipeline.sh -j ID --trust-remote-code IndicTrans2 code the catalog has not pinned may run (this run only)
  ./run-pipeline.sh -b BATCH                  every unfinished job of a batch (prepare-job with several media)
  ./run-pipeline.sh -b BATCH --status         done / running / failed / waiting, per job
  ./run-pipeline.sh -b BATCH --slurm --partition gpu --gpus-per-task 1 --tasks 40 --time 04:00:00
Every stage runs offline (HF_HUB_OFFLINE=1, project cache). Stages by the job's workflow: transcribe = demux,
asr, align, outputs; translate adds translate; subtitle adds translate and mux. Outputs in out/<id>/:
<stem>.<lang>.srt/.vtt/.txt/.json for the source and each target (translate: .txt/.json for targets; or the
job's --formats), <stem>.html (the transcript page: open it in a browser, offline), and for subtitle
<stem>.subtitled.mkv (or .mp4) with one tagged track per language.
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
    slurm: Annotated[
        bool,
        typer.Option(
            "--slurm",
            help="With -b: submit the unfinished jobs to Slurm as a job array (sbatch), each task running its shard "
            "of jobs offline; prints the Slurm job id last.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --slurm: print the sbatch script and the shards; submit nothing.")
    ] = False,
    tasks: Annotated[
        int | None,
        typer.Option("--tasks", help="With --slurm: array tasks; jobs balanced by duration (default: one per job)."),
    ] = None,
    array_limit: Annotated[
        int | None, typer.Option("--array-limit", help="With --slurm: at most this many tasks at once (%K).")
    ] = None,
    partition: Annotated[str | None, typer.Option("--partition", help="With --slurm: sbatch --partition.")] = None,
    time_limit: Annotated[
        str | None, typer.Option("--time", help="With --slurm: sbatch --time, per task (e.g. 04:00:00).")
    ] = None,
    cpus_per_task: Annotated[
        int | None, typer.Option("--cpus-per-task", help="With --slurm: sbatch --cpus-per-task.")
    ] = None,
    gpus_per_task: Annotated[
        int | None, typer.Option("--gpus-per-task", help="With --slurm: sbatch --gpus-per-task.")
    ] = None,
    mem: Annotated[str | None, typer.Option("--mem", help="With --slurm: sbatch --mem (e.g. 16G).")] = None,
    account: Annotated[str | None, typer.Option("--account", help="With --slurm: sbatch --account.")] = None,
    sbatch_args: Annotated[
        list[str] | None,
        typer.Option("--sbatch-arg", metavar="ARG", help="With --slurm: one more sbatch option; repeatable."),
    ] = None,
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
    from ..pipeline import run_jobs
    from ..pipeline.slurm import SlurmOptions

    out = Path(os.path.abspath(out_dir or DEFAULT_OUT_DIR))
    batch_ids, wanted = [], list(job_ids or [])
    if batches:  # read once; a run of -j jobs only never imports batch code
        from ..batches import read_batch

        for batch in (read_batch(out, ref) for ref in batches):
            batch_ids.append(batch.id)
            wanted += batch.jobs
    if not wanted:
        raise BadInput("Missing option '-j' / '--job' (repeatable) or '-b' / '--batch' (see run-pipeline.sh --help)")
    slurm_options = SlurmOptions(
        tasks,
        array_limit,
        partition,
        time_limit,
        cpus_per_task,
        gpus_per_task,
        mem,
        account,
        tuple(sbatch_args or ()),
    )
    if not slurm and (dry_run or slurm_options != SlurmOptions()):
        raise BadInput("--dry-run, --tasks, --array-limit and the sbatch options go with --slurm")
    if status:
        _show_status(out, wanted, as_json, batch_ids)
        return
    if slurm:
        if len(batch_ids) != 1 or job_ids:
            raise BadInput("--slurm runs one batch: -b BATCH (prepare-job with several media prints its id)")
        _submit(out, batch_ids[0], wanted, slurm_options, dry_run, cache_dir, trust_remote_code)
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


def _submit(
    out: Path,
    batch_id: str,
    wanted: list[str],
    options: SlurmOptions,
    dry_run: bool,
    cache_dir: Path | None,
    trust_remote_code: bool,
) -> None:
    """--slurm: preflight the unfinished jobs here (models, venvs, media), then shard and submit them."""
    from ..pipeline import PreflightError, load_job, preflight
    from ..pipeline.slurm import node_command, queued_jobs, readable_by_nodes, slurm_folder, submit
    from ..pipeline.status import UNFINISHED, status_of

    root = cache_root(cache_dir)
    queued = queued_jobs(slurm_folder(out, batch_id))
    runs = [load_job(out, job_id) for job_id in dict.fromkeys(wanted)]  # a broken job: one line, nothing submitted
    runs = [run for run in runs if status_of(run).status in UNFINISHED and run.id not in queued]
    if len(runs) < len(wanted):
        err.print(f"note: {len(wanted) - len(runs)} of {len(wanted)} jobs are done, running or queued: left out")
    if problem := readable_by_nodes(root):
        raise BadInput(problem)
    problems = preflight(load_catalog(), root, runs, VENV_ROOT, trust_remote_code)
    if problems:
        raise PreflightError(problems)
    command = node_command(Path(__file__).resolve().parents[3], out, root)
    if trust_remote_code:
        command.append("--trust-remote-code")
    jobs = [(run.id, run.job.clip.duration) for run in runs]
    sub = submit(out, batch_id, jobs, options, command, dry_run=dry_run)
    if dry_run:
        print(sub.text, end="")
        for k, ids in enumerate(sub.shards):
            print(f"# task {k}: {' '.join(ids)}")
        return
    out_console.print(
        f"batch {batch_id}: {len(jobs)} jobs in {len(sub.shards)} array tasks (script {sub.script}, logs in "
        f"{sub.folder / 'logs'})",
        soft_wrap=True,
    )
    print(sub.slurm_job)


def _show_status(out_dir: Path, job_ids: list[str], as_json: bool, batch_ids: list[str]) -> None:
    from ..pipeline.slurm import queued_jobs, slurm_folder
    from ..pipeline.status import STATES, statuses

    queued = {k: v for b in batch_ids for k, v in queued_jobs(slurm_folder(out_dir, b)).items()}
    found = [
        dataclasses.replace(s, detail=f"slurm {queued[s.id]}") if s.status == "waiting" and s.id in queued else s
        for s in statuses(out_dir, job_ids)
    ]
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
