"""run-pipeline: preflight, then every stage as a subprocess of its backend venv, offline, resumable.

registry.py is the table of stages; runner.py walks it stage by stage across all jobs of a call; process.py runs
one stage process; manifest.py finds jobs and keeps their manifests; preflight.py says what would stop them.
"""

from .manifest import JobRun, PreflightError, load_job
from .preflight import preflight
from .registry import REGISTRY, Stage, job_needs, stages_for
from .runner import Runner, run_jobs

__all__ = [
    "REGISTRY",
    "JobRun",
    "PreflightError",
    "Runner",
    "Stage",
    "job_needs",
    "load_job",
    "preflight",
    "run_jobs",
    "stages_for",
]
