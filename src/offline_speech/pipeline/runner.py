"""The runner: every stage of the registry in turn across all jobs of a call, each as one process per batch.

A stage's jobs share one process when they need the same module, venv and shared models, so a model loads once
for all of them. A job whose stage inputs and outputs are unchanged since the manifest recorded them is skipped,
so a run interrupted anywhere (Ctrl-C, kill -9, a crash) resumes where it stopped. A run's results are listed
only once it is done: starting (or restarting) a run clears the outputs the manifest listed before.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .. import cache
from ..catalog import Catalog
from ..orphans import clean_out_dir, remove_work_dir, work_dir
from ..settings import backend_python, offline_env
from ..stages.base import Event, ModelSpec, StageRequest
from ..util import NO_SPACE, human_bytes, sha256_file, utc_now, write_json
from ..util import digest as value_digest
from .manifest import WORK, JobRun, PreflightError, disk_error, load_job, run_lock, space_needed
from .preflight import preflight
from .process import StageProcess
from .registry import REGISTRY, Built, Context, Io, Stage, StageInputError


class Reporter(Protocol):
    def stage_started(self, stage: str, jobs: list[str], pid: int) -> None: ...
    def job_skipped(self, job: str, stage: str) -> None: ...
    def job_started(self, job: str, stage: str, seconds: float) -> None: ...
    def progress(self, job: str, stage: str, seconds: float) -> None: ...
    def job_done(self, job: str, stage: str, info: dict, duration: float) -> None: ...
    def job_failed(self, job: str, stage: str, error: str, log: Path) -> None: ...


@dataclass
class Batch:
    """Jobs of one stage served by one process."""

    module: str
    venv: str
    models: dict[str, ModelSpec]
    members: list[tuple[JobRun, Built, str]] = field(default_factory=list)  # (job, its part, input digest)

    def accepts(self, module: str, venv: str, models: dict[str, ModelSpec]) -> bool:
        """Same module and venv, and no shared model named differently (e.g. asr jobs of two models)."""
        return (module, venv) == (self.module, self.venv) and all(self.models.get(k, v) == v for k, v in models.items())


def up_to_date(run: JobRun, name: str, digest: str) -> bool:
    """True when the manifest says the stage finished with these inputs and its outputs are still as written."""
    record = run.manifest["stages"].get(name)
    if not record or record.get("status") != "done" or record.get("inputs") != digest:
        return False
    return all(
        (run.dir / o["path"]).is_file() and sha256_file(run.dir / o["path"]) == o["sha256"]
        for o in record.get("outputs", {}).values()
    )


class Logs:
    """The stage's log file of every job in a batch (out/<id>/logs/<stage>.log)."""

    def __init__(self, runs: list[JobRun], stage: str):
        self.files = {run.id: open(run.log(stage), "a", encoding="utf-8") for run in runs}

    def write(self, line: str, job: str | None = None) -> None:
        """Append `line` to one job's log, or to every job's when `job` is None. A line that cannot be written (a
        full disk) is lost, never an error: the manifest and the exit status tell what happened."""
        for jid, f in self.files.items():
            if job is None or jid == job:
                with contextlib.suppress(OSError):
                    f.write(line if line.endswith("\n") else line + "\n")
                    f.flush()

    def close(self) -> None:
        for f in self.files.values():
            with contextlib.suppress(OSError):
                f.close()


class Runner:
    def __init__(
        self,
        catalog: Catalog,
        root: Path,
        venv_root: Path,
        reporter: Reporter,
        restart: bool = False,
        trust_remote_code: bool = False,
    ):
        self.catalog, self.root, self.venv_root, self.reporter, self.restart = (
            catalog,
            root,
            venv_root,
            reporter,
            restart,
        )
        self.trust_remote_code = trust_remote_code  # this run only: never written to the job or its manifest
        self.env = offline_env(root)

    def run(self, runs: list[JobRun]) -> list[JobRun]:
        """Run every stage of every job; returns the jobs that failed."""
        for run in runs:
            (run.dir / WORK).mkdir(exist_ok=True)
            (run.dir / "logs").mkdir(exist_ok=True)
            if self.restart:
                run.manifest["stages"] = {}
            run.manifest |= {"status": "running", "started": utc_now(), "job": run.id}
            for previous in ("error", "outputs", "warnings", "ended"):  # the results of this run are listed at its end
                run.manifest.pop(previous, None)
            run.save()
        for stage in REGISTRY:
            for batch in self._batches(stage, runs):
                self._run_batch(stage, batch)
        for run in runs:
            if not run.failed:
                self._finish(run)
        return [r for r in runs if r.failed]

    def _batches(self, stage: Stage, runs: list[JobRun]) -> list[Batch]:
        """The stage's jobs that must run, grouped into processes; records the others as skipped or failed."""
        ctx = Context(self.catalog, self.root, cache.read_lock(self.root), self.trust_remote_code)
        batches: list[Batch] = []
        for run in runs:
            if run.failed or not stage.applies(run.job):
                continue
            try:
                built = stage.build(ctx, run, Io(run, stage))
            except StageInputError as exc:
                run.manifest["stages"][stage.name] = {
                    "status": "failed",
                    "started": utc_now(),
                    "log": os.path.relpath(run.log(stage.name), run.dir),
                }
                self._record_failed(run, stage.name, str(exc))
                continue
            digest = value_digest({"stage": stage.name, "version": stage.version, **built.key})
            if up_to_date(run, stage.name, digest):
                self.reporter.job_skipped(run.id, stage.name)
                continue
            module, venv = stage.module_for(run.job), stage.venv_for(run.job, built.entry)
            batch = next((b for b in batches if b.accepts(module, venv, built.models)), None)
            if batch is None:
                batch = Batch(module, venv, {})
                batches.append(batch)
            batch.models.update(built.models)
            batch.members.append((run, built, digest))
        return batches

    def _run_batch(self, stage: Stage, batch: Batch) -> None:
        name = stage.name
        by_id = {run.id: (run, built, digest) for run, built, digest in batch.members}
        request = StageRequest(name, tuple(built.entry for _, built, _ in batch.members), batch.models)
        tmpdir = work_dir(batch.members[0][0].dir.parent, f".{name}-")
        write_json(tmpdir / "request.json", request.to_dict())
        logs = Logs([run for run, _, _ in batch.members], name)
        started_at: dict[str, float] = {}
        finished = False
        process = StageProcess(
            backend_python(batch.venv, self.venv_root), batch.module, tmpdir / "request.json", self.env
        )
        pid = process.pid
        try:
            logs.write(
                f"=== {utc_now()} stage {name}: {batch.module} in venv/{batch.venv}, pid {pid}, "
                f"jobs: {', '.join(by_id)}"
            )
            self.reporter.stage_started(name, list(by_id), pid)
            for run, _, _ in batch.members:
                run.manifest["stages"][name] = {
                    "status": "running",
                    "started": utc_now(),
                    "pid": pid,
                    "log": os.path.relpath(run.log(name), run.dir),
                }
                run.save()
            process.copy_stderr(logs.write)
            for event in process.events():
                if isinstance(event, str):
                    logs.write(event)
                    continue
                kind, jid = event.get("event"), event.get("job")
                if kind == Event.MODEL_LOADED:
                    extra = ", ".join(
                        f"{k}={v}" for k, v in event.items() if k not in ("event", "key", "commit", "seconds")
                    )
                    logs.write(
                        f"model loaded: {event['key']} @ {event.get('commit')} "
                        f"in {event['seconds']} s ({extra}) [pid {pid}]"
                    )
                elif kind == Event.FINISHED:
                    finished = True
                    logs.write(
                        f"model loads in this process: {event['model_loads']}; "
                        f"jobs in this process: {len(by_id)} [pid {pid}]"
                    )
                elif jid not in by_id:
                    continue
                elif kind == Event.JOB_STARTED:
                    started_at[jid] = time.monotonic()
                    self.reporter.job_started(jid, name, by_id[jid][0].job.clip.duration)
                elif kind == Event.PROGRESS:
                    self.reporter.progress(jid, name, float(event["seconds"]))
                elif kind == Event.LOG:
                    logs.write(event["message"], jid)
                elif kind == Event.JOB_DONE:
                    run, built, digest = by_id[jid]
                    seconds = time.monotonic() - started_at.get(jid, time.monotonic())
                    self._record_done(run, name, built, digest, event, seconds)
                elif kind == Event.JOB_FAILED:
                    self._record_failed(by_id[jid][0], name, event.get("error", "failed"))
                    logs.write(f"FAILED: {event.get('error')}", jid)
            process.wait()
        except BaseException:
            process.stop()
            for run, _, _ in batch.members:
                record = run.manifest["stages"].get(name, {})
                if record.get("status") == "running":
                    record |= {"status": "interrupted", "ended": utc_now()}
                    run.manifest["status"] = "interrupted"
                    with contextlib.suppress(OSError):  # a full disk: the next run heals what is on disk
                        run.save()
            raise
        finally:
            process.close()
            logs.close()
            remove_work_dir(tmpdir)
        for run, _, _ in batch.members:
            if run.manifest["stages"][name]["status"] == "running":
                why = f"the {name} process exited with code {process.returncode}" + (
                    "" if finished else " before finishing"
                )
                self._record_failed(run, name, why)

    def _record_done(self, run: JobRun, name: str, built: Built, digest: str, event: dict, seconds: float) -> None:
        outs = {}
        for key, path in event.get("outputs", {}).items():
            if not Path(path).is_file():
                return self._record_failed(run, name, f"the stage reported {Path(path).name} but did not write it")
            outs[key] = {"path": os.path.relpath(path, run.dir), "sha256": sha256_file(Path(path))}
        run.manifest["stages"][name] |= {
            "status": "done",
            "ended": utc_now(),
            "duration": round(seconds, 3),
            "inputs": digest,
            "outputs": outs,
            "models": dict(built.uses),
            "info": event.get("info", {}),
            "error": None,
        }
        run.save()
        self.reporter.job_done(run.id, name, event.get("info", {}), seconds)

    def _record_failed(self, run: JobRun, name: str, error: str) -> None:
        if any(f"[Errno {code}]" in error for code in NO_SPACE):  # a stage's write hit a full disk: say where, how much
            error += f" in {run.dir}: free about {human_bytes(space_needed(run, True))} there, then run again"
        run.failed = True
        run.manifest["stages"][name] |= {"status": "failed", "ended": utc_now(), "error": error}
        run.manifest |= {"status": "failed", "error": f"{name}: {error}"}
        run.save()
        self.reporter.job_failed(run.id, name, error, run.log(name))

    def _finish(self, run: JobRun) -> None:
        """The job is done: its results are the outputs of its final stages, its warnings theirs."""
        finals = [run.manifest["stages"].get(s.name, {}) for s in REGISTRY if s.final and s.applies(run.job)]
        run.manifest |= {
            "status": "done",
            "ended": utc_now(),
            "outputs": {k: v["path"] for record in finals for k, v in record.get("outputs", {}).items()},
            "warnings": [w for record in finals for w in record.get("info", {}).get("warnings", [])],
        }
        run.save()


def run_jobs(
    catalog: Catalog,
    root: Path,
    out_dir: Path,
    job_ids: list[str],
    reporter,
    venv_root: Path,
    restart: bool = False,
    trust_remote_code: bool = False,
) -> list[JobRun]:
    """run-pipeline: load the jobs, take their run locks (StateError when another run holds one), preflight them
    (PreflightError lists every problem, nothing runs), then run them with `reporter` (a context manager) shown.
    A job folder that cannot be written is one line (manifest.disk_error). Returns every job, failed or not."""
    problems, runs = [], []
    for job_id in dict.fromkeys(job_ids):
        try:
            run = load_job(out_dir, job_id)
        except PreflightError as exc:
            problems.extend(exc.problems)
            continue
        if all(r.dir.resolve() != run.dir.resolve() for r in runs):  # one job named by its id and by its folder
            runs.append(run)
    with contextlib.ExitStack() as locks:
        for run in runs:
            locks.enter_context(run_lock(run))
        problems.extend(preflight(catalog, root, runs, venv_root, trust_remote_code, restart))
        if problems:
            raise PreflightError(problems)
        clean_out_dir(out_dir, [run.dir for run in runs], [stage.name for stage in REGISTRY])
        try:
            with reporter:
                Runner(catalog, root, venv_root, reporter, restart, trust_remote_code).run(runs)
        except OSError as exc:
            where = Path(exc.filename).parent if exc.filename else out_dir
            problem = disk_error(exc, where, sum(space_needed(r, restart) for r in runs))
            if problem is None:
                raise
            for run in runs:
                _record_stopped(run, str(problem))
            raise problem from None
    return runs


def _record_stopped(run: JobRun, error: str) -> None:
    """Best effort, where the disk may still be full: the run and its running stages stopped with `error`
    (when even this cannot be written, the next run heals the manifest: it trusts no "running")."""
    if run.manifest.get("status") != "running":
        return
    for record in run.manifest["stages"].values():
        if record.get("status") == "running":
            record |= {"status": "interrupted", "ended": utc_now()}
    run.manifest |= {"status": "failed", "error": error}
    with contextlib.suppress(OSError):
        run.save()
