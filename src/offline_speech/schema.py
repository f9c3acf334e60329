"""Versioned JSON documents shared by the CLI and every stage (standard library only: every venv imports it)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .decoding import problem as decoding_problem
from .errors import StateError
from .languages import AUTO, LanguageError, lookup
from .layout import problem as layout_problem
from .speakers import DEFAULT_THRESHOLD
from .util import of_types

JOB_SCHEMA = 4  # 2 records --nllb-model, 3 the output stem, 4 decoding, layout, formats; older jobs are still read
READABLE_JOB_SCHEMAS = (1, 2, 3, 4)
# An output is <stem>.<suffix> (longest: ".subtitled.mkv", ".speakers.json"), written through a temporary
# ".<name>.XXXXXXXX.tmp" beside it; file names may be 255 bytes (NAME_MAX), so the stem may take 200.
MAX_STEM_BYTES = 200
JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MP4_FAMILY = (".mp4", ".m4v", ".mov")  # muxed into the same container; anything else into Matroska
WORKFLOWS = ("transcribe", "translate", "subtitle")
BACKENDS = ("auto", "whisperx", "mlx")


class SchemaError(StateError, ValueError):
    """A document is not valid for its schema version."""


@dataclass(frozen=True)
class Media:
    path: str
    sha256: str
    size: int
    duration: float
    audio_streams: int


def output_name(media: str, stem: str | None = None) -> str:
    """`<stem>.subtitled.<ext>` (the job's output stem, default the media's): the input's own extension for
    MP4-family inputs, else mkv."""
    path = Path(media)
    ext = path.suffix.lower() if path.suffix.lower() in MP4_FAMILY else ".mkv"
    return f"{stem or path.stem}.subtitled{ext}"


def output_stem(media_path: str) -> str:
    """The stem of a job's output names, decided at prepare time: the media's own stem, without leading dots or
    spaces (a media named "...mp4" must not give hidden files), and when too long for a file name, its first bytes
    (whole characters) plus a short hash of all of it, so it stays readable and unique."""
    stem = Path(media_path).stem.lstrip(". ").rstrip() or "media"
    raw = stem.encode("utf-8")
    if len(raw) <= MAX_STEM_BYTES:
        return stem
    tag = hashlib.sha256(raw).hexdigest()[:8]
    head = raw[: MAX_STEM_BYTES - len(tag) - 1].decode("utf-8", "ignore").rstrip(". ")
    return f"{head}-{tag}"


def safe_stem(stem: str) -> bool:
    """Whether a recorded stem can name output files: one visible path component that fits NAME_MAX."""
    return (
        bool(stem)
        and "/" not in stem
        and "\0" not in stem
        and not stem.startswith((".", " "))
        and len(stem.encode("utf-8")) <= MAX_STEM_BYTES
    )


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
    align: bool = True  # word timestamps with the catalog's aligner for the language (--no-align: segments only)
    nllb_model: str | None = None  # --nllb-model: NLLB for pairs IndicTrans2 does not cover (None: a schema 1 job)
    align_languages: tuple[str, ...] = ()  # -s auto: the languages whose aligners are provisioned for the job
    diarize: bool = False  # --diarize: who spoke (pyannote community-1), named from speakers_dir when given
    speakers_dir: str | None = None  # enrolled voice samples: <name>[_N].<audio ext>
    min_speakers: int | None = None
    max_speakers: int | None = None
    speaker_threshold: float = DEFAULT_THRESHOLD  # cosine at or above which an enrolled person names a speaker
    output_stem: str | None = None  # outputs are <output_stem>.<lang>.<ext> (None: a job of schema < 3)
    decoding: dict = field(default_factory=dict)  # the ASR decoding controls set (decoding.py); {}: the defaults
    layout: dict = field(default_factory=dict)  # the subtitle layout options set (layout.py); {}: 2x42, 7 s
    formats: list[str] | None = None  # the files each document is written as (None: srt, vtt, txt, json)

    @property
    def stem(self) -> str:
        """The stem of the job's output names: recorded at prepare time (schema 3), else decided the same way."""
        return self.output_stem or output_stem(self.media.path)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"


_NUMBER = (int, float)
# The type of every job.json field (hand edits are checked before anything uses them).
_JOB_TYPES: dict[str, tuple] = {
    "id": (str,),
    "workflow": (str,),
    "source_language": (str,),
    "backend": (str,),
    "backend_reason": (str,),
    "asr_model": (str,),
    "created": (str,),
    "schema": (int,),
    "align": (bool,),
    "nllb_model": (str, type(None)),
    "target_languages": (list,),
    "warnings": (list,),
    "align_languages": (list,),
    "models": (dict,),
    "media": (dict,),
    "clip": (dict,),
    "diarize": (bool,),
    "speakers_dir": (str, type(None)),
    "min_speakers": (int, type(None)),
    "max_speakers": (int, type(None)),
    "speaker_threshold": _NUMBER,
    "output_stem": (str, type(None)),
    "decoding": (dict,),
    "layout": (dict,),
    "formats": (list, type(None)),
}
CLIP_SLACK = 0.5  # seconds: container and stream durations differ by a frame or a packet
_MEDIA_TYPES = {"path": (str,), "sha256": (str,), "size": (int,), "duration": _NUMBER, "audio_streams": (int,)}
_CLIP_TYPES = {"start": _NUMBER, "end": _NUMBER}


def _check_types(raw: dict, types: dict[str, tuple], where: str) -> None:
    for name, kinds in types.items():
        if name not in raw:
            continue
        value = raw[name]
        if not of_types(value, kinds):
            wanted = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise SchemaError(f"{where}: field {name!r} is {type(value).__name__}, not {wanted}")


def _check_job_values(raw: dict, where: str) -> None:
    """Types, and the language codes a job names (a hand-edited '../../x' never reaches a file name)."""
    _check_types(raw, _JOB_TYPES, where)
    _check_types(raw.get("media") or {}, _MEDIA_TYPES, f"{where}: media")
    _check_types(raw.get("clip") or {}, _CLIP_TYPES, f"{where}: clip")
    if (problem := decoding_problem(raw.get("decoding", {}))) is not None:
        raise SchemaError(f"{where}: {problem}")
    if (problem := layout_problem(raw.get("layout", {}), raw.get("formats"))) is not None:
        raise SchemaError(f"{where}: {problem}")
    for name in ("target_languages", "warnings", "align_languages"):
        if not all(isinstance(v, str) for v in raw.get(name, ())):
            raise SchemaError(f"{where}: field {name!r} must hold strings")
    if not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in raw.get("models", {}).items()):
        raise SchemaError(f"{where}: field 'models' must map catalog keys to commits")
    if raw.get("output_stem") is not None and not safe_stem(raw["output_stem"]):
        raise SchemaError(
            f"{where}: field 'output_stem' must be a visible file name stem of at most {MAX_STEM_BYTES} bytes"
        )
    for code in [*raw.get("target_languages", ()), *raw.get("align_languages", ()), raw.get("source_language", AUTO)]:
        try:
            if code != AUTO and lookup(code).code != code:
                raise LanguageError(f"'{code}' is not a table code")
        except LanguageError as exc:
            raise SchemaError(f"{where}: language {code!r}: {exc}") from None


def read_job(path: Path) -> Job:
    """Parse and validate a job.json; SchemaError says what is wrong."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("schema") not in READABLE_JOB_SCHEMAS:
        readable = " or ".join(str(v) for v in READABLE_JOB_SCHEMAS)
        raise SchemaError(f"{path}: not a job.json of schema {readable}")
    if raw["schema"] >= 2 and not isinstance(raw.get("nllb_model"), str):
        raise SchemaError(f"{path}: schema {raw['schema']} needs nllb_model")
    _check_job_values(raw, str(path))
    try:
        job = Job(
            **{
                **raw,
                "media": Media(**raw["media"]),
                "clip": Clip(**raw["clip"]),
                "target_languages": tuple(raw["target_languages"]),
                "warnings": tuple(raw.get("warnings", ())),
                "align_languages": tuple(raw.get("align_languages", ())),
            }
        )
    except (KeyError, TypeError) as exc:
        raise SchemaError(f"{path}: missing or unexpected field ({exc})") from None
    if not JOB_ID_RE.match(job.id) or job.workflow not in WORKFLOWS or job.backend not in BACKENDS[1:]:
        raise SchemaError(f"{path}: invalid id, workflow or backend")
    if not 0 <= job.clip.start < job.clip.end:
        raise SchemaError(f"{path}: invalid clip {job.clip.start}..{job.clip.end}")
    if job.clip.end > job.media.duration + CLIP_SLACK:  # prepare-job clamps --end-time to the media's end
        raise SchemaError(
            f"{path}: clip end {job.clip.end:g} s is past the end of the media ({job.media.duration:g} s)"
        )
    return job


# ---- Documents the stages exchange -------------------------------------------------------------------------
# A transcript is what asr writes and align rewrites with words. Times are seconds in the MEDIA (the clip's
# start already added), so subtitles line up with the original file.
TRANSCRIPT_SCHEMA = 1
TRANSCRIPT_KIND = "offline-speech/transcript"


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SchemaError(f"{what}: not a finite number ({value!r})")
    return float(value)


def validate_transcript(doc: object, where: str = "transcript") -> dict:
    """Check a transcript document; returns it, or raises SchemaError naming the first problem."""
    if not isinstance(doc, dict) or doc.get("kind") != TRANSCRIPT_KIND:
        raise SchemaError(f"{where}: not an offline-speech transcript")
    if doc.get("schema") != TRANSCRIPT_SCHEMA:
        raise SchemaError(f"{where}: transcript schema {doc.get('schema')!r}, this version reads {TRANSCRIPT_SCHEMA}")
    for name, kind in (("job", str), ("language", str), ("segments", list), ("model", dict), ("warnings", list)):
        if not isinstance(doc.get(name), kind):
            raise SchemaError(f"{where}: field {name!r} missing or not a {kind.__name__}")
    clip = doc.get("clip")
    if not isinstance(clip, dict):
        raise SchemaError(f"{where}: field 'clip' missing")
    lo, hi = _number(clip.get("start"), f"{where}: clip.start"), _number(clip.get("end"), f"{where}: clip.end")
    previous = lo
    for i, seg in enumerate(doc["segments"]):
        at = f"{where}: segment {i}"
        if not isinstance(seg, dict) or not isinstance(seg.get("text"), str):
            raise SchemaError(f"{at}: needs start, end and text")
        start, end = _number(seg.get("start"), f"{at} start"), _number(seg.get("end"), f"{at} end")
        if not (lo - 0.01 <= start <= end <= hi + 0.01) or start < previous - 0.01:
            raise SchemaError(f"{at}: times {start}..{end} out of order or outside the clip {lo}..{hi}")
        previous = start
        words = seg.get("words")
        if words is None:
            continue
        if not isinstance(words, list):
            raise SchemaError(f"{at}: words must be a list")
        last = start
        for j, w in enumerate(words):
            if not isinstance(w, dict) or not isinstance(w.get("word"), str):
                raise SchemaError(f"{at} word {j}: needs word, start, end")
            ws, we = _number(w.get("start"), f"{at} word {j} start"), _number(w.get("end"), f"{at} word {j} end")
            if not (start - 0.01 <= ws <= we <= end + 0.01) or ws < last - 0.01:
                raise SchemaError(f"{at} word {j}: times {ws}..{we} out of order or outside {start}..{end}")
            last = ws
    return doc


def read_transcript(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(f"{path}: not readable JSON ({exc})") from None
    return validate_transcript(doc, str(path))
