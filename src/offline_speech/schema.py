"""Versioned JSON documents shared by the CLI and every stage (standard library only: every venv imports it)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

JOB_SCHEMA = 1
JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
WORKFLOWS = ("transcribe", "translate", "subtitle")
BACKENDS = ("auto", "whisperx", "mlx")

# Whisper's language codes (whisper.tokenizer.LANGUAGES), the codes -s accepts.
WHISPER_LANGUAGES = frozenset(
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th ur hr bg lt la mi "
    "ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr pa si km sn yo so af oc ka be tg sd "
    "gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha ba jw su yue".split()
)


class SchemaError(ValueError):
    """A document is not valid for its schema version."""


@dataclass(frozen=True)
class Media:
    path: str
    sha256: str
    size: int
    duration: float
    audio_streams: int


@dataclass(frozen=True)
class Clip:
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Job:
    """out/<id>/job.json: everything run-pipeline.sh needs, fixed at prepare time."""

    id: str
    media: Media
    workflow: str
    source_language: str  # a Whisper code, or "auto"
    target_languages: tuple[str, ...]
    clip: Clip
    backend: str  # whisperx | mlx (decided at prepare time)
    backend_reason: str
    asr_model: str
    models: dict[str, str | None]  # catalog key -> commit from the lock (None: not cached at prepare time)
    created: str
    schema: int = JOB_SCHEMA
    warnings: tuple[str, ...] = field(default=())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"


def read_job(path: Path) -> Job:
    """Parse and validate a job.json; SchemaError says what is wrong."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("schema") != JOB_SCHEMA:
        raise SchemaError(f"{path}: not a job.json of schema {JOB_SCHEMA}")
    try:
        job = Job(
            **{
                **raw,
                "media": Media(**raw["media"]),
                "clip": Clip(**raw["clip"]),
                "target_languages": tuple(raw["target_languages"]),
                "warnings": tuple(raw.get("warnings", ())),
            }
        )
    except (KeyError, TypeError) as exc:
        raise SchemaError(f"{path}: missing or unexpected field ({exc})") from None
    if not JOB_ID_RE.match(job.id) or job.workflow not in WORKFLOWS or job.backend not in BACKENDS[1:]:
        raise SchemaError(f"{path}: invalid id, workflow or backend")
    if not 0 <= job.clip.start < job.clip.end:
        raise SchemaError(f"{path}: invalid clip {job.clip.start}..{job.clip.end}")
    return job
