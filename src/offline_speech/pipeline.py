"""run-pipeline.sh: preflight, then every stage as a subprocess of its backend venv, offline, resumable.

Stages run stage by stage across all jobs of a call: one process per stage (per backend and model), which loads
its model once and serves every job. Each job's out/<id>/manifest.json records every stage's status, times,
input digest, outputs (with sha256), model commits and error; a stage whose inputs and outputs are unchanged is
skipped on the next run, so a run interrupted anywhere (Ctrl-C, kill -9, a crash) resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from . import cache
from .cache import sha256_file
from .catalog import APPLE_SILICON, DEFAULT_NLLB_MODEL, Catalog, CatalogError, Model, host_platform
from .settings import PROJECT_ROOT, offline_env
from .util import digest as value_digest, utc_now
from .schema import JOB_ID_RE, Job, SchemaError, read_job, read_transcript, write_json
from .languages import LanguageError, lookup, route, indictrans2_model
from .stages import align, asr_mlx, asr_whisperx, demux, mux, outputs, translate
from .errors import BadInput

MANIFEST_KIND = "offline-speech/manifest"
MANIFEST_SCHEMA = 1
STAGES = {
    "transcribe": ("demux", "asr", "align", "outputs"),
    "translate": ("demux", "asr", "align", "translate", "outputs"),
    "subtitle": ("demux", "asr", "align", "translate", "outputs", "mux"),
}
ORDER = ("demux", "asr", "align", "translate", "outputs", "mux")
WORK = "work"  # intermediate files inside the job folder


class PreflightError(BadInput):
    """The jobs cannot start; `problems` lists each one with its fix. Exit code 2."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class StageInputError(Exception):
    """A job cannot enter a stage (e.g. a translation model a detected language needs is not cached)."""


class Reporter(Protocol):
    def stage_started(self, stage: str, jobs: list[str], pid: int) -> None: ...
    def job_skipped(self, job: str, stage: str) -> None: ...
    def job_started(self, job: str, stage: str, seconds: float) -> None: ...
    def progress(self, job: str, stage: str, seconds: float) -> None: ...
    def job_done(self, job: str, stage: str, info: dict, duration: float) -> None: ...
    def job_failed(self, job: str, stage: str, error: str, log: Path) -> None: ...


@dataclass
class JobRun:
    """One job during a run: its job.json, folder, manifest and what preflight resolved for it."""

    job: Job
    dir: Path
    manifest: dict
    media_sha256: str = ""
    asr: dict = field(default_factory=dict)  # model spec for the asr stage
    failed: bool = False

    @property
    def id(self) -> str:
        return self.job.id

    def path(self, name: str) -> Path:
        return self.dir / WORK / name

    def log(self, stage: str) -> Path:
        return self.dir / "logs" / f"{stage}.log"

    def save(self) -> None:
        self.manifest["updated"] = utc_now()
        write_json(self.dir / "manifest.json", self.manifest)


# ---- loading and preflight ---------------------------------------------------------------------------------


def load_job(out_dir: Path, job_id: str) -> JobRun:
    """The job folder for an id typed by the user; PreflightError for anything that is not a prepared job."""
    if not JOB_ID_RE.match(job_id) or ".." in job_id:
        raise PreflightError([f"-j {job_id!r}: not a job id (ids contain only A-Z a-z 0-9 . _ -; no / or ..)"])
    folder = out_dir / job_id
    if not (folder / "job.json").is_file():
        raise PreflightError([f"-j {job_id}: unknown job id (no {folder}/job.json): ./prepare-job.sh --media FILE prints one"])
    try:
        job = read_job(folder / "job.json")
    except SchemaError as exc:
        raise PreflightError([f"-j {job_id}: job.json is corrupt ({exc}): prepare the job again"]) from None
    if job.id != job_id:
        raise PreflightError([f"-j {job_id}: job.json belongs to job {job.id}: prepare the job again"])
    manifest = _read_manifest(folder / "manifest.json", job_id)
    return JobRun(job, folder, manifest)


def _read_manifest(path: Path, job_id: str) -> dict:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("kind") == MANIFEST_KIND and manifest.get("schema") == MANIFEST_SCHEMA:
            return manifest
    except (OSError, ValueError):
        pass  # no manifest yet, or an unreadable one: start from nothing (every stage runs)
    return {"kind": MANIFEST_KIND, "schema": MANIFEST_SCHEMA, "job": job_id, "status": "new", "stages": {}}


def asr_model_for(catalog: Catalog, job: Job) -> Model:
    return catalog.asr_model(job.asr_model, "mlx" if job.backend == "mlx" else "whisperx")


def preflight(catalog: Catalog, root: Path, runs: list[JobRun], venv_root: Path) -> list[str]:
    """Everything that would stop the jobs, each with its fix; also resolves the models and hashes the media."""
    problems: list[str] = []
    lock = cache.read_lock(root)
    needed_venvs = {"core"}
    for run in runs:
        job = run.job
        if job.workflow not in STAGES:
            problems.append(f"job {job.id}: unknown workflow {job.workflow!r} (this version runs {', '.join(STAGES)})")
            continue
        needed_venvs.add(job.backend)
        if job.align:
            needed_venvs.add("whisperx")  # the align stage runs there whatever the ASR backend
        try:
            model = asr_model_for(catalog, job)
        except CatalogError as exc:
            problems.append(f"job {job.id}: {exc}")
            continue
        state = cache.model_state(root, model, lock)
        if state.status != "complete":
            problems.append(
                f"job {job.id}: model {model.key} is {state.status} in the cache {root}: "
                f"./cache-models.sh --{model.group} --asr-model {job.asr_model}"
            )
        elif job.backend == "mlx" and host_platform() != APPLE_SILICON:
            problems.append(f"job {job.id}: the mlx backend needs Apple Silicon and this machine is {host_platform()}: "
                            "prepare the job with --backend whisperx")
        else:
            run.asr = {"key": model.key, "repo": model.repo, "commit": state.commit,
                       "path": str(cache.snapshot_dir(root, model.repo, state.commit))}
        if job.target_languages:
            needed_venvs.add("translation")
            if job.source_language != "auto":
                problems += [f"job {job.id}: {p}" for p in translation_plan(catalog, root, lock, job, job.source_language)[2]]
        if job.align and job.source_language != "auto":
            spec, reason = resolve_aligner(catalog, root, lock, job.source_language)
            if spec is None and reason.endswith("--languages " + job.source_language):
                problems.append(f"job {job.id}: {reason} (or prepare the job with --no-align)")
        media = Path(job.media.path)
        if not media.is_file():
            problems.append(f"job {job.id}: the media {media} is gone: put it back or prepare a new job")
            continue
        run.media_sha256 = _media_hash(run, media)
        if run.media_sha256 != job.media.sha256:
            problems.append(f"job {job.id}: the media {media} changed since the job was prepared (sha256 differs): prepare a new job")
    for name in sorted(needed_venvs):
        if not (venv_root / name / "bin" / "python").exists():
            problems.append(f"venv/{name} is missing: ./venv-setup {name}")
    return problems


def _media_hash(run: JobRun, media: Path) -> str:
    """sha256 of the media, reusing the manifest's figure while size and mtime are those it was taken at."""
    st = media.stat()
    seen = run.manifest.get("media")
    if seen and seen.get("size") == st.st_size and seen.get("mtime_ns") == st.st_mtime_ns and seen.get("sha256"):
        return seen["sha256"]
    digest = sha256_file(media)
    run.manifest["media"] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    return digest


def resolve_aligner(catalog: Catalog, root: Path, lock: dict, language: str) -> tuple[dict | None, str]:
    """The aligner spec for a language, or None and why (no aligner exists / not cached)."""
    items = catalog.aligners(language)
    if not items:
        return None, f"no word aligner exists for '{language}'"
    item = items[0]
    fix = f"./cache-models.sh --align --languages {language}"
    state = cache.item_state(root, item, lock)
    if state.status != "complete":
        return None, f"aligner {item.key} is {state.status} in the cache: {fix}"
    punkt = next(i for i in catalog.items if i.group == "align" and i.language == "*")
    punkt_state = cache.item_state(root, punkt, lock)
    if punkt_state.status != "complete":
        return None, f"{punkt.key} (sentence splitter for alignment) is {punkt_state.status} in the cache: {fix}"
    if isinstance(item, Model):
        return {"key": item.key, "kind": "hub", "language": language, "commit": state.commit,
                "path": str(cache.snapshot_dir(root, item.repo, state.commit))}, ""
    return {"key": item.key, "kind": "torchaudio", "language": language, "commit": state.commit,
            "path": str(root / item.dest)}, ""


def nllb_for(catalog: Catalog, job: Job) -> Model:
    """The NLLB entry the job was prepared with (its --nllb-model), else the default."""
    for key in job.models:
        with contextlib.suppress(CatalogError):
            item = catalog.get(key)
            if item.group == "nllb" and isinstance(item, Model):
                return item
    return catalog.nllb_model(DEFAULT_NLLB_MODEL)


def translation_plan(catalog: Catalog, root: Path, lock: dict, job: Job, language: str) -> tuple[list[dict], dict, list[str]]:
    """For a job whose source is `language`: (targets with their route, model specs by key, problems with fixes).

    A target equal to the source (possible when the source was "auto") is left out: the source transcript is it."""
    targets: list[dict] = []
    models: dict[str, dict] = {}
    problems: list[str] = []
    source = lookup(language).code
    for target in job.target_languages:
        if lookup(target).code == source:
            continue
        try:
            r = route(source, target)
        except LanguageError as exc:
            problems.append(str(exc))
            continue
        model = indictrans2_model(catalog, r.direction) if r.model_group == "indictrans2" else nllb_for(catalog, job)
        targets.append({"language": target, "model": model.key, "src": r.src_code, "tgt": r.tgt_code})
        if model.key in models:
            continue
        state = cache.model_state(root, model, lock)
        if state.status != "complete":
            fix = "--indictrans2" if model.group == "indictrans2" else f"--nllb --nllb-model {model.variant[0]}"
            problems.append(f"translation model {model.key} ({source} -> {target}) is {state.status} in the cache: ./cache-models.sh {fix}")
            models[model.key] = {}
            continue
        ct2 = cache.derived_state(root, model, lock) if model.group == "nllb" else None
        models[model.key] = {
            "key": model.key, "repo": model.repo, "commit": state.commit, "kind": r.model_group,
            "path": str(cache.snapshot_dir(root, model.repo, state.commit)), "trust_remote_code": model.trust_remote_code,
            "ct2": str(ct2.location) if ct2 and ct2.status == "complete" else None,
        }
    return targets, models, problems


# ---- stages ------------------------------------------------------------------------------------------------


@dataclass
class StageSpec:
    name: str
    module: str
    venv: str
    version: int


def stage_spec(name: str, job: Job) -> StageSpec:
    asr = asr_mlx if job.backend == "mlx" else asr_whisperx
    module = {"demux": demux, "asr": asr, "align": align, "translate": translate, "outputs": outputs, "mux": mux}[name]
    return StageSpec(name, module.__name__, module.VENV, module.VERSION)


def _file_digest(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def stage_request(run: JobRun, name: str, catalog: Catalog, root: Path, lock: dict) -> tuple[dict, dict]:
    """(the job's entry in the stage request, the digest inputs that decide whether the stage must run)."""
    job = run.job
    entry: dict = {"id": job.id, "dir": str(run.dir), "job": json.loads(job.to_json())}
    if name == "demux":
        entry |= {"inputs": {"media": job.media.path}, "outputs": {"audio": str(run.path("audio.wav"))}}
        key = {"media": run.media_sha256, "clip": [job.clip.start, job.clip.end]}
    elif name == "asr":
        entry |= {"inputs": {"audio": str(run.path("audio.wav"))}, "outputs": {"transcript": str(run.path("asr.json"))}}
        key = {"audio": _file_digest(run.path("audio.wav")), "model": [run.asr.get("key"), run.asr.get("commit")],
               "language": job.source_language}
    elif name == "align":
        language = read_transcript(run.path("asr.json"))["language"]
        if job.align:
            spec, reason = resolve_aligner(catalog, root, lock, language)
        else:
            spec, reason = None, "the job was prepared with --no-align"
        entry |= {
            "inputs": {"audio": str(run.path("audio.wav")), "transcript": str(run.path("asr.json"))},
            "outputs": {"transcript": str(run.path("aligned.json"))},
            "aligner": spec,
            "no_aligner_reason": reason,
        }
        key = {"transcript": _file_digest(run.path("asr.json")), "aligner": spec and [spec["key"], spec["commit"]],
               "reason": reason}
    elif name == "translate":
        language = read_transcript(run.path("aligned.json"))["language"]
        targets, models, problems = translation_plan(catalog, root, lock, job, language)
        if problems:
            raise StageInputError("; ".join(problems))
        entry |= {
            "inputs": {"transcript": str(run.path("aligned.json"))},
            "outputs": {t["language"]: str(run.path(f"translated.{t['language']}.json")) for t in targets},
            "targets": targets,
            "models": models,
        }
        key = {"transcript": _file_digest(run.path("aligned.json")), "targets": targets,
               "models": {k: [m["commit"], m["ct2"]] for k, m in models.items()}}
    elif name == "outputs":
        documents = _documents(run)
        entry |= {"documents": documents, "outputs": {f"{d['language']}.{ext}": path for d in documents
                                                      for ext, path in d["outputs"].items()}}
        key = {"inputs": {d["transcript"]: _file_digest(Path(d["transcript"])) for d in documents},
               "outputs": sorted(entry["outputs"].values())}
    else:
        tracks = [{"path": path, "iso639_2": lookup(d["language"]).iso639_2, "title": lookup(d["language"]).name}
                  for d in _documents(run) for ext, path in d["outputs"].items() if ext == "srt"]
        media = run.dir / mux.output_name(job.media.path)
        entry |= {"tracks": tracks, "outputs": {"media": str(media)}}
        key = {"media": run.media_sha256, "tracks": [[t["iso639_2"], _file_digest(Path(t["path"]))] for t in tracks]}
    return entry, key


def _documents(run: JobRun) -> list[dict]:
    """The transcripts the outputs stage turns into files: the source, then each translation, with their files."""
    job = run.job
    stem = Path(job.media.path).stem
    language = read_transcript(run.path("aligned.json"))["language"]
    docs = [{"language": language, "transcript": str(run.path("aligned.json")),
             "outputs": {ext: str(run.dir / f"{stem}.{language}.{ext}") for ext in ("srt", "vtt", "txt", "json")}}]
    if "translate" in STAGES[job.workflow]:
        record = run.manifest["stages"].get("translate", {})
        formats = ("srt", "vtt", "txt", "json") if job.workflow == "subtitle" else ("txt", "json")
        for target, out in record.get("outputs", {}).items():
            docs.append({"language": target, "transcript": str(run.dir / out["path"]),
                         "outputs": {ext: str(run.dir / f"{stem}.{target}.{ext}") for ext in formats}})
    return docs


def up_to_date(run: JobRun, name: str, digest: str) -> bool:
    """True when the manifest says the stage finished with these inputs and its outputs are still as written."""
    record = run.manifest["stages"].get(name)
    if not record or record.get("status") != "done" or record.get("inputs") != digest:
        return False
    return all(_file_digest(run.dir / o["path"]) == o["sha256"] for o in record.get("outputs", {}).values())


def _die_with_parent() -> None:
    """Child side of fork: on Linux, get SIGKILL when the runner dies (kill -9 included), so nothing half-runs."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the runner's own handlers stop the child


class Runner:
    def __init__(self, catalog: Catalog, root: Path, venv_root: Path, reporter: Reporter, restart: bool = False):
        self.catalog, self.root, self.venv_root, self.reporter, self.restart = catalog, root, venv_root, reporter, restart
        self.env = offline_env(root)

    def run(self, runs: list[JobRun]) -> list[JobRun]:
        """Run every stage of every job; returns the jobs that failed."""
        for run in runs:
            (run.dir / WORK).mkdir(exist_ok=True)
            (run.dir / "logs").mkdir(exist_ok=True)
            if self.restart:
                run.manifest["stages"] = {}
            run.manifest |= {"status": "running", "started": utc_now(), "job": run.id}
            run.manifest.pop("error", None)
            run.save()
        for name in ORDER:
            lock = cache.read_lock(self.root)
            batches: dict[tuple, list[tuple[JobRun, dict, str]]] = {}
            for run in runs:
                if run.failed or name not in STAGES[run.job.workflow]:
                    continue
                spec = stage_spec(name, run.job)
                try:
                    entry, key = stage_request(run, name, self.catalog, self.root, lock)
                except StageInputError as exc:
                    run.manifest["stages"][name] = {"status": "failed", "started": utc_now()}
                    self._record_failed(run, name, str(exc))
                    continue
                digest = value_digest({"stage": name, "version": spec.version, **key})
                if up_to_date(run, name, digest):
                    self.reporter.job_skipped(run.id, name)
                    continue
                model_key = run.asr.get("key") if name == "asr" else None
                venv = spec.venv
                if name == "align" and not entry.get("aligner"):
                    venv = "core"  # nothing to align: the stage only carries the transcript on, no torch needed
                batches.setdefault((spec.module, venv, model_key), []).append((run, entry, digest))
            for (module, venv, model_key), members in batches.items():
                self._run_process(name, module, venv, members)
        for run in runs:
            if not run.failed:
                run.manifest["status"] = "done"
                run.manifest["ended"] = utc_now()
                final = {**run.manifest["stages"].get("outputs", {}).get("outputs", {}),
                         **run.manifest["stages"].get("mux", {}).get("outputs", {})}
                run.manifest["outputs"] = {k: v["path"] for k, v in final.items()}
                run.manifest["warnings"] = list(run.manifest["stages"].get("outputs", {}).get("info", {}).get("warnings", []))
                run.save()
        return [r for r in runs if r.failed]

    def _run_process(self, name: str, module: str, venv: str, members: list[tuple[JobRun, dict, str]]) -> None:
        by_id = {run.id: (run, entry, digest) for run, entry, digest in members}
        request = {"schema": 1, "stage": name, "options": {}, "jobs": [e for _, e, _ in members]}
        if name == "asr":
            request["models"] = {"asr": members[0][0].asr}
        elif name == "translate":
            request["models"] = {k: m for _, e, _ in members for k, m in e["models"].items()}
        python = self.venv_root / venv / "bin" / "python"
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=members[0][0].dir.parent))
        request_path = tmpdir / "request.json"
        write_json(request_path, request)
        logs = {run.id: open(run.log(name), "a", encoding="utf-8") for run, _, _ in members}
        started_at: dict[str, float] = {}

        def to_logs(line: str, job: str | None = None) -> None:
            for jid, f in logs.items():
                if job is None or jid == job:
                    f.write(line if line.endswith("\n") else line + "\n")
                    f.flush()

        proc = subprocess.Popen(
            [str(python), "-m", module, str(request_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=str(PROJECT_ROOT),
            text=True,
            encoding="utf-8",
            errors="replace",
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        ids = ", ".join(by_id)
        stderr_thread = threading.Thread(target=lambda: [to_logs(line) for line in proc.stderr], daemon=True)
        finished = False
        try:
            to_logs(f"=== {utc_now()} stage {name}: {module} in venv/{venv}, pid {proc.pid}, jobs: {ids}")
            self.reporter.stage_started(name, list(by_id), proc.pid)
            for run, _, _ in members:
                run.manifest["stages"][name] = {"status": "running", "started": utc_now(), "pid": proc.pid,
                                                "log": os.path.relpath(run.log(name), run.dir)}
                run.save()
            stderr_thread.start()
            for line in proc.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    to_logs(line)
                    continue
                kind, jid = event.get("event"), event.get("job")
                if kind == "model_loaded":
                    extra = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "key", "commit", "seconds"))
                    to_logs(f"model loaded: {event['key']} @ {event.get('commit')} in {event['seconds']} s ({extra}) [pid {proc.pid}]")
                elif kind == "job_started" and jid in by_id:
                    started_at[jid] = time.monotonic()
                    self.reporter.job_started(jid, name, by_id[jid][0].job.clip.duration)
                elif kind == "progress" and jid in by_id:
                    self.reporter.progress(jid, name, float(event["seconds"]))
                elif kind == "log" and jid in by_id:
                    to_logs(event["message"], jid)
                elif kind == "job_done" and jid in by_id:
                    run, entry, digest = by_id[jid]
                    seconds = time.monotonic() - started_at.get(jid, time.monotonic())
                    self._record_done(run, name, entry, digest, event, seconds)
                elif kind == "job_failed" and jid in by_id:
                    run = by_id[jid][0]
                    self._record_failed(run, name, event.get("error", "failed"))
                    to_logs(f"FAILED: {event.get('error')}", jid)
                elif kind == "finished":
                    finished = True
                    to_logs(f"model loads in this process: {event['model_loads']}; jobs in this process: {len(by_id)} [pid {proc.pid}]")
            proc.wait()
        except BaseException:
            _stop(proc)
            for run, _, _ in members:
                record = run.manifest["stages"].get(name, {})
                if record.get("status") == "running":
                    record |= {"status": "interrupted", "ended": utc_now()}
                    run.manifest["status"] = "interrupted"
                    run.save()
            raise
        finally:
            if stderr_thread.is_alive():
                stderr_thread.join(timeout=5)
            for f in logs.values():
                f.close()
            shutil.rmtree(tmpdir, ignore_errors=True)
        for run, _, _ in members:
            if run.manifest["stages"][name]["status"] == "running":
                why = f"the {name} process exited with code {proc.returncode}" + ("" if finished else " before finishing")
                self._record_failed(run, name, why)

    def _record_done(self, run: JobRun, name: str, entry: dict, digest: str, event: dict, seconds: float) -> None:
        record = run.manifest["stages"][name]
        outs = {}
        for key, path in event.get("outputs", {}).items():
            if not Path(path).is_file():
                return self._record_failed(run, name, f"the stage reported {Path(path).name} but did not write it")
            outs[key] = {"path": os.path.relpath(path, run.dir), "sha256": sha256_file(Path(path))}
        models = {}
        if name == "asr":
            models[run.asr["key"]] = run.asr["commit"]
        if entry.get("aligner"):
            models[entry["aligner"]["key"]] = entry["aligner"]["commit"]
        for key, spec in entry.get("models", {}).items():
            models[key] = spec["commit"]
        record |= {"status": "done", "ended": utc_now(), "duration": round(seconds, 3), "inputs": digest,
                   "outputs": outs, "models": models, "info": event.get("info", {}), "error": None}
        run.save()
        self.reporter.job_done(run.id, name, event.get("info", {}), seconds)

    def _record_failed(self, run: JobRun, name: str, error: str) -> None:
        run.failed = True
        run.manifest["stages"][name] |= {"status": "failed", "ended": utc_now(), "error": error}
        run.manifest |= {"status": "failed", "error": f"{name}: {error}"}
        run.save()
        self.reporter.job_failed(run.id, name, error, run.log(name))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
