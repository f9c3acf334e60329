"""Jobs: validate the request, decide the backend and the output names, write out/<id>/job.json (or nothing at all).

The output names are decided here, once: <stem>.<lang>.<ext> with the stem from schema.output_stem (no leading
dots, shortened with a hash where the media's name would not fit a file name), recorded in job.json.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import cache
from .catalog import APPLE_SILICON, DEFAULT_LANGUAGES, Catalog
from .decoding import ignored_by
from .errors import BadInput
from .job_options import DEFAULTS, JobOptions
from .languages import AUTO, LanguageError, lookup, route, source_language
from .layout import parse_formats
from .media import MediaError, Probe, probe
from .pipeline import job_needs
from .pipeline.manifest import disk_error
from .schema import BACKENDS, WORKFLOWS, Clip, Job, Media, output_stem
from .settings import DEFAULT_OUT_DIR, VENV_ROOT, backend_python, host_platform
from .speakers import MIN_SAMPLE_SECONDS, SpeakersError, enrolled_samples
from .util import last_line, sha256_file, utc_now

TIME_RE = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


class JobError(BadInput, ValueError):
    """Bad input for a job: one line, exit code 2."""


def parse_time(text: str, flag: str) -> float:
    """Seconds from `HH:MM:SS[.mmm]`, `MM:SS[.mmm]` or plain seconds."""
    text = text.strip()
    m = TIME_RE.match(text)
    try:
        seconds = float(int(m[1] or 0) * 3600 + int(m[2]) * 60 + float(m[3])) if m else float(text)
    except ValueError:
        raise JobError(f"{flag} {text!r}: use HH:MM:SS[.mmm] or seconds") from None
    if m and float(m[3]) >= 60:
        raise JobError(f"{flag} {text!r}: seconds must be below 60")
    if seconds < 0 or seconds != seconds:
        raise JobError(f"{flag} {text!r}: must be a time >= 0")
    return seconds


def check_speakers(
    diarize: bool, folder: Path | None, low: int | None, high: int | None, threshold: float
) -> str | None:
    """--diarize's options, checked before anything is written; the speakers folder as an absolute path."""
    if not diarize:
        given = [
            flag
            for flag, value in (("--speakers", folder), ("--min-speakers", low), ("--max-speakers", high))
            if value is not None
        ]
        if given:
            raise JobError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --diarize")
        return None
    if low is not None and low < 1 or high is not None and high < 1:
        raise JobError("--min-speakers and --max-speakers are at least 1")
    if low is not None and high is not None and low > high:
        raise JobError(f"--min-speakers {low} is more than --max-speakers {high}")
    if not 0 < threshold <= 1:
        raise JobError(f"--speaker-threshold {threshold}: a cosine between 0 and 1")
    if folder is None:
        return None
    folder = Path(os.path.abspath(folder))
    try:
        people = enrolled_samples(folder)
    except SpeakersError as exc:
        raise JobError(f"--speakers: {exc}") from None
    for samples in people.values():
        for sample in samples:
            try:
                seconds = probe(sample).duration
            except MediaError as exc:
                raise JobError(f"--speakers: {exc}") from None
            if seconds < MIN_SAMPLE_SECONDS:
                raise JobError(
                    f"--speakers: {sample} is {seconds:.2f} s long: a sample needs at least "
                    f"{MIN_SAMPLE_SECONDS:g} s of speech"
                )
    return str(folder)


def parse_align_languages(value: str | None, source: str, align: bool) -> tuple[str, ...]:
    """--align-languages: for -s auto, the languages whose aligners the job is provisioned with (default
    DEFAULT_LANGUAGES); the detected language's aligner is used when cached. Empty for a known source."""
    if value is not None and (source != AUTO or not align):
        raise JobError("--align-languages is for -s auto jobs that align (a known -s has its own aligner)")
    if source != AUTO or not align:
        return ()
    codes: list[str] = []
    for raw in value.split(",") if value is not None else DEFAULT_LANGUAGES:
        if raw.strip():
            try:
                code = lookup(raw.strip()).code
            except LanguageError as exc:
                raise JobError(f"--align-languages {raw.strip()}: {exc}") from None
            codes += [code] if code not in codes else []
    return tuple(codes)


def parse_languages(source: str, targets: str | None, workflow: str) -> tuple[str, tuple[str, ...]]:
    """(source, targets) as table codes; every (source, target) pair must have a translation route."""
    source = source.strip().lower()
    try:
        if source != AUTO:
            source = source_language(source).code
    except LanguageError as exc:
        raise JobError(f"-s {source}: {exc}") from None
    target_list: list[str] = []
    for raw in (t.strip() for t in (targets or "").split(",")):
        if not raw:
            continue
        try:
            code = lookup(raw).code
        except LanguageError as exc:
            raise JobError(f"-t {raw}: {exc}") from None
        if code == source:
            raise JobError(f"-t {raw}: the target equals the source language")
        if source != AUTO:
            try:
                route(source, code)
            except LanguageError as exc:
                raise JobError(f"-s {source} -t {raw}: {exc}") from None
        if code not in target_list:
            target_list.append(code)
    if workflow == "translate" and not target_list:
        raise JobError("--workflow translate needs -t LANG[,LANG...]")
    if workflow == "transcribe" and target_list:
        raise JobError("-t is for --workflow translate or subtitle")
    return source, tuple(target_list)


def mlx_importable(mlx_python: Path) -> tuple[bool, str]:
    """Whether venv/mlx can import mlx.core (a broken or half-built venv cannot), and why not."""
    if not mlx_python.exists():
        return False, "venv/mlx is missing (./venv-setup mlx)"
    try:
        proc = subprocess.run([str(mlx_python), "-c", "import mlx.core"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"venv/mlx does not run ({exc})"
    if proc.returncode != 0:
        return False, f"venv/mlx cannot import mlx.core ({last_line(proc.stderr)}): ./venv-setup mlx --force"
    return True, ""


def decide_backend(requested: str, platform_id: str, mlx_python: Path) -> tuple[str, str]:
    """MLX on Apple Silicon (macOS arm64) whose venv/mlx imports mlx.core; whisperx elsewhere.
    Returns (backend, reason); the reason goes into job.json."""
    if requested == "whisperx":
        return "whisperx", "requested with --backend whisperx"
    if platform_id != APPLE_SILICON:
        if requested == "mlx":
            raise JobError(
                f"--backend mlx cannot run here: this machine is {platform_id}, MLX needs Apple Silicon (darwin-arm64)"
            )
        return "whisperx", f"auto: {platform_id} is not Apple Silicon"
    ok, why = mlx_importable(mlx_python)
    if requested == "mlx":
        if not ok:
            raise JobError(f"--backend mlx cannot run here: {why}")
        return "mlx", "requested with --backend mlx (darwin-arm64, venv/mlx imports mlx.core)"
    if ok:
        return "mlx", "auto: darwin-arm64 and venv/mlx imports mlx.core"
    return "whisperx", f"auto: darwin-arm64 but {why}"


def new_job_id(media: Path, now: float | None = None) -> str:
    """Unique, sortable by creation time, only [A-Za-z0-9._-]."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"
    stem = re.sub(r"[^A-Za-z0-9]+", "-", media.stem).strip("-")[:40] or "media"
    return f"{stamp}-{stem}-{secrets.token_hex(2)}"


def prepare(
    catalog: Catalog,
    cache_root: Path,
    media_path: Path,
    options: JobOptions = DEFAULTS,
    out_dir: Path = DEFAULT_OUT_DIR,
) -> tuple[Job, Path]:
    """Validate everything, then write out/<id>/job.json atomically; on any error nothing is left behind."""
    job = build_job(catalog, cache_root, media_path, options)
    return job, write_job(out_dir, job)


@dataclass(frozen=True)
class Settings:
    """What a job's options come to before any media is looked at: checked once, however many media share them."""

    options: JobOptions
    source: str
    targets: tuple[str, ...]
    align_languages: tuple[str, ...]
    speakers_dir: str | None
    backend: str
    backend_reason: str
    decoding: dict
    layout: dict
    formats: list[str] | None


def check_options(options: JobOptions = DEFAULTS) -> Settings:
    """Every option that does not depend on the media, validated (JobError and its kin: one line naming the flag)."""
    o = options
    if o.workflow not in WORKFLOWS:
        raise JobError(f"--workflow {o.workflow}: choose {', '.join(WORKFLOWS)}")
    if o.backend not in BACKENDS:
        raise JobError(f"--backend {o.backend}: choose {', '.join(BACKENDS)}")
    decoding = o.decoding()  # DecodingError: one line naming the flag
    layout, formats = o.layout(), parse_formats(o.formats, o.workflow)  # LayoutError: likewise
    source, targets = parse_languages(o.source, o.targets, o.workflow)
    aligned_for = parse_align_languages(o.align_languages, source, o.align)
    speakers_dir = check_speakers(o.diarize, o.speakers, o.min_speakers, o.max_speakers, o.speaker_threshold)
    backend, reason = decide_backend(o.backend, host_platform(), backend_python("mlx", VENV_ROOT))
    if o.asr_model.endswith(".en") and source not in ("auto", "en"):
        raise JobError(f"--asr-model {o.asr_model} is English-only and -s is {source}: use a multilingual model")
    return Settings(
        o, source, targets, aligned_for, speakers_dir, backend, reason, decoding, layout, list(formats or ()) or None
    )


def build_job(
    catalog: Catalog,
    cache_root: Path,
    media_path: Path,
    options: JobOptions | Settings = DEFAULTS,
    info: Probe | None = None,
) -> Job:
    """The job for one media file, validated (JobError for bad input), not written; `options` already checked
    (Settings) when many media share them; `info`: the media's probe, if taken."""
    settings = options if isinstance(options, Settings) else check_options(options)
    o = settings.options
    media_path = Path(os.path.abspath(media_path))
    info = info or probe(media_path)
    clip_start = parse_time(o.start, "--start-time") if o.start is not None else 0.0
    clip_end = parse_time(o.end, "--end-time") if o.end is not None else info.duration
    if clip_start >= info.duration:
        raise JobError(f"--start-time {clip_start:g} s is past the end of the media ({info.duration:.3f} s)")
    if clip_end <= clip_start:
        raise JobError(f"--end-time {clip_end:g} s must be after --start-time {clip_start:g} s")
    if clip_end > info.duration + 0.001:
        raise JobError(f"--end-time {clip_end:g} s is past the end of the media ({info.duration:.3f} s)")
    job = Job(
        id=new_job_id(media_path),
        media=Media(
            str(media_path), sha256_file(media_path), media_path.stat().st_size, info.duration, info.audio_streams
        ),
        workflow=o.workflow,
        source_language=settings.source,
        target_languages=settings.targets,
        clip=Clip(clip_start, clip_end),
        backend=settings.backend,
        backend_reason=settings.backend_reason,
        asr_model=o.asr_model,
        models={},
        created=utc_now(),
        align=o.align,
        nllb_model=o.nllb_model,
        align_languages=settings.align_languages,
        diarize=o.diarize,
        speakers_dir=settings.speakers_dir,
        min_speakers=o.min_speakers,
        max_speakers=o.max_speakers,
        speaker_threshold=o.speaker_threshold,
        output_stem=output_stem(str(media_path)),
        decoding=settings.decoding,
        layout=settings.layout,
        formats=settings.formats,
    )
    needs, warnings = job_needs(catalog, job)
    if ignored := ignored_by(job.backend, settings.decoding):
        warnings.append(f"the mlx backend ignores {', '.join(ignored)} (mlx-whisper has no such control)")
    lock = cache.read_lock(cache_root)
    models: dict[str, str | None] = {}
    for need in needs:
        state = cache.item_state(cache_root, need.item, lock)
        models[need.item.key] = state.commit if state.status == "complete" else None
        if state.status != "complete":
            warnings.append(f"{need.item.key} is not cached yet: {need.fetch}")
    if job.output_stem != Path(job.media.path).stem:
        warnings.append(
            f"outputs are named {job.output_stem}.* (the media's name would not make a visible file name that fits)"
        )
    return dataclasses.replace(job, models=models, warnings=tuple(warnings))


def write_job(out_dir: Path, job: Job) -> Path:
    """out/<id>/job.json, made in a staging folder and renamed into place: all of it or nothing. A folder that
    cannot be written is one line (read-only, or full: with the space needed)."""
    staging = out_dir / f".{job.id}.tmp"
    text = job.to_json().encode("utf-8")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        (staging / "job.json").write_bytes(text)
        os.rename(staging, out_dir / job.id)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        where = out_dir if out_dir.is_dir() else out_dir.parent
        raise disk_error(exc, where, len(text) + 8192) or exc from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir / job.id
