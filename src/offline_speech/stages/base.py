"""The protocol between the runner (core venv) and a stage process (any venv). Standard library only.

The runner writes a request file and starts `python -m offline_speech.stages.<stage> REQUEST`:

    {"schema": REQUEST_SCHEMA, "stage": "asr", "models": {name: model spec},
     "jobs": [{"id": ..., "dir": ..., "job": {job.json}, "inputs": {name: path}, "outputs": {name: path}, ...}]}

`models` holds the models the process loads once for all its jobs (asr: {"asr": spec}; translate: key -> spec);
a job entry carries what is its own (align: its "aligner" spec; translate: its "targets"; outputs: its
"documents"). The runner builds StageRequest and JobEntry below and serialises them; a stage reads the JSON.

The stage loads its models once, serves every job in the request and reports on its original stdout, one JSON
object per line (the runner shows progress and writes the manifest from these):

    {"event": "model_loaded", "key": ..., "commit": ..., "seconds": ...}
    {"event": "job_started", "job": ID}
    {"event": "progress", "job": ID, "seconds": AUDIO_SECONDS_DONE}
    {"event": "log", "job": ID, "message": ...}
    {"event": "job_done", "job": ID, "outputs": {name: path}, "info": {...}}
    {"event": "job_failed", "job": ID, "error": ONE_LINE}
    {"event": "finished", "model_loads": N, "pid": PID}

Everything libraries print (Python or C level) goes to stderr, which the runner copies into each job's log.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypedDict

from ..errors import OfflineSpeechError

REQUEST_SCHEMA = 1


class Event:
    """The kinds of event a stage reports (the "event" field of each line); the runner matches on the same names."""

    MODEL_LOADED = "model_loaded"
    JOB_STARTED = "job_started"
    PROGRESS = "progress"
    LOG = "log"
    JOB_DONE = "job_done"
    JOB_FAILED = "job_failed"
    FINISHED = "finished"


class ModelSpec(TypedDict, total=False):
    """A model as a stage loads it: resolved against the cache by the runner (offline_speech.requirements)."""

    key: str  # catalog key
    repo: str
    commit: str | None
    path: str  # snapshot folder (hub) or file (torchaudio checkpoint)
    kind: str  # aligner: hub | torchaudio; translator: nllb | indictrans2
    language: str  # aligner
    trust_remote_code: bool  # the model needs its repo's own code (IndicTrans2)
    code_sha256: dict[str, str] | None  # the catalog's pins for its commit: the reviewed .py files
    remote_code_allowed: bool  # run-pipeline --trust-remote-code: this run may run unreviewed code
    ct2: str | None  # NLLB's CTranslate2 conversion, when made
    fetch: str  # the cache-models.sh command that fetches it and what it needs (a stage's hint)
    device: str  # asr: the job's --device (cpu | cuda), absent for auto
    compute_type: str  # asr: the job's --compute-type, absent for the device's default


@dataclass(frozen=True)
class JobEntry:
    """One job in a stage request: job.json, where its inputs are, where its outputs go, and what is its own."""

    id: str
    dir: str
    job: dict  # job.json as written
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    fields: dict = field(default_factory=dict)  # the stage's own per-job fields (aligner, targets, documents, tracks)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "dir": self.dir,
            "job": self.job,
            "inputs": self.inputs,
            "outputs": self.outputs,
            **self.fields,
        }


@dataclass(frozen=True)
class StageRequest:
    """What one stage process serves: its jobs and the models it loads once for all of them."""

    stage: str
    jobs: tuple[JobEntry, ...]
    models: dict[str, ModelSpec] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "schema": REQUEST_SCHEMA,
            "stage": self.stage,
            "models": self.models,
            "jobs": [job.to_dict() for job in self.jobs],
        }


class StageFailure(Exception):
    """An error for one job that deserves a one-line message, not a traceback."""


class Events:
    """Writes protocol events to the runner; counts model loads."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._lock = threading.Lock()  # jobs may run in threads: one whole line at a time
        self.model_loads = 0

    def emit(self, event: str, **fields) -> None:
        line = json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n"
        with self._lock:
            self._stream.write(line)
            self._stream.flush()

    def log(self, job: str, message: str) -> None:
        self.emit(Event.LOG, job=job, message=message)

    def progress(self, job: str, seconds: float) -> None:
        self.emit(Event.PROGRESS, job=job, seconds=round(seconds, 3))

    def model_loaded(self, key: str, commit: str | None, started: float, **info) -> None:
        self.model_loads += 1
        self.emit(Event.MODEL_LOADED, key=key, commit=commit, seconds=round(time.monotonic() - started, 3), **info)

    def job_started(self, job: str) -> None:
        self.emit(Event.JOB_STARTED, job=job)

    def job_done(self, job: str, outputs: dict[str, str], info: dict) -> None:
        self.emit(Event.JOB_DONE, job=job, outputs=outputs, info=info)

    def job_failed(self, job: str, error: str) -> None:
        self.emit(Event.JOB_FAILED, job=job, error=error)

    def finished(self) -> None:
        self.emit(Event.FINISHED, model_loads=self.model_loads, pid=os.getpid())


def read_request(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        request = json.load(f)
    if request.get("schema") != REQUEST_SCHEMA or not isinstance(request.get("jobs"), list):
        raise SystemExit(f"{path}: not a stage request of schema {REQUEST_SCHEMA}")
    return request


def for_each_job(request: dict, events: Events, work: Callable[[dict], dict | None], workers: int = 1) -> int:
    """Run `work(job)` for every job (in `workers` threads when > 1); a failure ends that job only.
    Returns the number of failed jobs."""

    def one(job: dict) -> bool:
        events.job_started(job["id"])
        try:
            info = work(job) or {}
        except (StageFailure, OfflineSpeechError) as exc:  # a message for the user
            events.job_failed(job["id"], str(exc))
            return False
        except Exception as exc:  # reported per job, with the traceback in its log
            traceback.print_exc()
            events.job_failed(job["id"], f"{type(exc).__name__}: {exc}".splitlines()[0])
            return False
        events.job_done(job["id"], job["outputs"], info)
        return True

    if workers <= 1 or len(request["jobs"]) <= 1:
        results = [one(job) for job in request["jobs"]]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, request["jobs"]))
    return results.count(False)


def main(run: Callable[[dict, Events], None]) -> None:
    """Entry point of a stage module: protocol on the real stdout, everything else to stderr."""
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: python -m {sys.argv[0]} REQUEST.json")
    events_stream = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # a library's print() or C-level write to stdout lands in the log, not in the protocol
    sys.stdout = sys.stderr
    events = Events(events_stream)
    request = read_request(sys.argv[1])
    try:
        run(request, events)
    except (StageFailure, OfflineSpeechError) as exc:  # before any job (the model did not load): every job fails
        for job in request["jobs"]:
            events.job_failed(job["id"], str(exc))
    except Exception as exc:
        traceback.print_exc()
        for job in request["jobs"]:
            events.job_failed(job["id"], f"{type(exc).__name__}: {exc}".splitlines()[0])
    events.finished()
    events_stream.close()
