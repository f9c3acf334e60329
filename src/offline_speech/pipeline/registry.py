"""The stages: one table, in run order. Each entry says which workflows include the stage, which module runs it in
which venv, its version, which catalog entries it needs for a job (what prepare-job records and cache-models --job
fetches), what preflight checks for it, and how it builds a job's request entry (inputs, outputs, its own fields),
the values that decide whether it must run again, and the models it loads.

Each stage declares the documents it consumes and produces by kind (audio, transcript, translation, documents);
a consumed kind comes from the latest earlier stage of the job that produces it (`Io`), so no stage names another
or another's files. Adding a stage is one module in offline_speech/stages/ and one entry here (plus its models in
catalog.toml). The runner knows no stage by name: it only walks this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..catalog import Catalog, CatalogError
from ..errors import WorkFailed
from ..languages import AUTO, lookup
from ..remote_code import remote_code_refusal
from ..requirements import (
    Need,
    aligner_entries,
    aligner_needs,
    asr_needs,
    diarization_needs,
    resolve_aligner,
    resolve_asr,
    resolve_diarization,
    translation_plan,
    translator_needs,
)
from ..schema import WORKFLOWS, Job, output_name, read_transcript
from ..stages.base import JobEntry, ModelSpec
from ..util import digest as digest_text
from ..util import sha256_file

if TYPE_CHECKING:
    from .manifest import JobRun

STAGES_PACKAGE = "offline_speech.stages"
DOCUMENT_FORMATS = ("srt", "vtt", "txt", "json")


class StageInputError(WorkFailed):
    """A job cannot enter a stage (e.g. a translation model a detected language needs is not cached)."""


@dataclass(frozen=True)
class Context:
    """What building a stage's entries reads: the catalog, the cache root and its lock at that moment, and what
    this run allows (run-pipeline --trust-remote-code: unreviewed remote code may run, this run only)."""

    catalog: Catalog
    root: Path
    lock: dict
    trust_remote_code: bool = False


@dataclass(frozen=True)
class Built:
    """A job's part of a stage run: its request entry, the values whose digest decides whether the stage must run
    again, the models the process loads once for all its jobs (by the name the stage reads them under), and the
    models the job uses (catalog key -> commit, recorded in the manifest)."""

    entry: JobEntry
    key: dict
    models: dict[str, ModelSpec] = field(default_factory=dict)
    uses: dict[str, str | None] = field(default_factory=dict)


def _no_problems(ctx: Context, job: Job) -> list[str]:
    return []


def _no_models(catalog: Catalog, job: Job) -> tuple[list[Need], list[str]]:
    return [], []


@dataclass(frozen=True)
class Stage:
    """One stage. `module` (in offline_speech.stages) and `venv` are names, or functions of the job (and of its
    built entry, for the venv) where they depend on it."""

    name: str
    version: int  # bump when the stage's outputs change for the same inputs: every job runs it again
    workflows: tuple[str, ...]
    module: str | Callable[[Job], str]
    venv: str | Callable[[Job, JobEntry | None], str]  # entry None: before the build (preflight), what it may need
    build: Callable[[Context, JobRun, Io], Built]
    needs: Callable[[Catalog, Job], tuple[list[Need], list[str]]] = _no_models  # catalog entries it loads, notes
    check: Callable[[Context, Job], list[str]] = _no_problems  # preflight problems, each with its fix
    final: bool = False  # its outputs are the job's results, its warnings the job's warnings
    when: Callable[[Job], bool] = lambda job: True  # within its workflows, whether this job needs it
    consumes: tuple[str, ...] = ()  # document kinds it reads ("media" is the job's own)
    # document kind -> file name: in the job's work folder, or (with {stem}: a result) in the job folder itself
    produces: dict[str, str] = field(default_factory=dict)

    def applies(self, job: Job) -> bool:
        """Whether the stage runs for `job`: its workflow includes it and the job asks for what it does."""
        return job.workflow in self.workflows and self.when(job)

    def module_for(self, job: Job) -> str:
        """The module to run as `python -m`."""
        return f"{STAGES_PACKAGE}.{self.module if isinstance(self.module, str) else self.module(job)}"

    def venv_for(self, job: Job, entry: JobEntry | None = None) -> str:
        return self.venv if isinstance(self.venv, str) else self.venv(job, entry)


@dataclass(frozen=True)
class Io:
    """Where one stage reads and writes its documents for one job: a consumed kind is the output of the latest
    earlier stage of the job producing it; a produced kind is the file the stage's entry names."""

    run: JobRun
    stage: Stage

    def _earlier(self) -> list[Stage]:
        stages = stages_of(self.run.job)
        return stages[: stages.index(self.stage)]

    def has(self, kind: str) -> bool:
        """Whether an earlier stage of the job produces `kind` (a job without -t has no translation)."""
        return any(kind in stage.produces for stage in self._earlier())

    def producer(self, kind: str) -> Stage:
        """The latest stage before this one (in the job's run order) that produces `kind`."""
        found = next((stage for stage in reversed(self._earlier()) if kind in stage.produces), None)
        if found is None or kind not in self.stage.consumes:
            raise AssertionError(
                f"stage {self.stage.name}: nothing before it produces {kind!r}, or it does not consume it"
            )
        return found

    def input(self, kind: str) -> Path:
        return _document(self.run, self.producer(kind).produces[kind])

    def recorded(self, kind: str) -> dict[str, Path]:
        """Every output (key -> file) the stage producing `kind` recorded for the job (translations: by language)."""
        outputs = self.run.manifest["stages"].get(self.producer(kind).name, {}).get("outputs", {})
        return {key: self.run.dir / out["path"] for key, out in outputs.items()}

    def output(self, kind: str, **names: str) -> Path:
        return _document(self.run, self.stage.produces[kind], **names)

    def consumed_later(self, kind: str) -> bool:
        """Whether a later stage of the job reads what this one produces as `kind`."""
        later = stages_of(self.run.job)
        return any(kind in s.consumes for s in later[later.index(self.stage) + 1 :])


def _document(run: JobRun, name: str, **names: str) -> Path:
    """A declared file name, filled in: a result (named after the job's stem) in the job folder, else in work/."""
    filled = name.format(stem=run.job.stem, **names)
    return run.dir / filled if "{stem}" in name else run.path(filled)


def _digest(path: Path) -> str | None:
    return sha256_file(path) if path.is_file() else None


def _entry(run: JobRun, inputs: dict | None = None, outputs: dict | None = None, **fields) -> JobEntry:
    job = run.job
    return JobEntry(job.id, str(run.dir), asdict(job), inputs or {}, outputs or {}, fields)


# ---- demux: the clip as 16 kHz mono WAV -----------------------------------------------------------------------


def _build_demux(ctx: Context, run: JobRun, io: Io) -> Built:
    job = run.job
    entry = _entry(run, {"media": job.media.path}, {"audio": str(io.output("audio"))})
    return Built(entry, {"media": run.media_sha256, "clip": [job.clip.start, job.clip.end]})


# ---- asr: the transcript, by the job's backend ------------------------------------------------------------------


def _check_asr(ctx: Context, job: Job) -> list[str]:
    try:
        _, problem = resolve_asr(ctx.catalog, ctx.root, ctx.lock, job)
    except CatalogError as exc:
        return [str(exc)]
    return [problem] if problem else []


def _build_asr(ctx: Context, run: JobRun, io: Io) -> Built:
    spec, problem = resolve_asr(ctx.catalog, ctx.root, ctx.lock, run.job)
    if spec is None:
        raise StageInputError(problem)
    audio = io.input("audio")
    entry = _entry(run, {"audio": str(audio)}, {"transcript": str(io.output("transcript"))})
    key = {
        "audio": _digest(audio),
        "model": [spec["key"], spec["commit"]],
        "language": run.job.source_language,
        **({"decoding": run.job.decoding} if run.job.decoding else {}),  # unset: digests as before the controls
    }
    return Built(entry, key, models={"asr": spec}, uses={spec["key"]: spec["commit"]})


# ---- align: word timestamps where an aligner exists for the language --------------------------------------------


def _check_align(ctx: Context, job: Job) -> list[str]:
    if job.align and job.source_language == AUTO:
        # before the language is known: at least one of the aligners the job was prepared for must be there
        with_aligner = [lang for lang in job.align_languages if aligner_entries(ctx.catalog, lang)]
        if with_aligner and not any(resolve_aligner(ctx.catalog, ctx.root, ctx.lock, lang)[0] for lang in with_aligner):
            return [
                f"job {job.id}: no aligner for {', '.join(with_aligner)} is cached: ./cache-models.sh --job {job.id} "
                f"(or prepare the job with --no-align)"
            ]
        return []
    if not job.align or not aligner_entries(ctx.catalog, job.source_language):
        return []  # a language without aligner is a warning
    spec, reason = resolve_aligner(ctx.catalog, ctx.root, ctx.lock, job.source_language)
    return [] if spec else [f"{reason} (or prepare the job with --no-align)"]


def _build_align(ctx: Context, run: JobRun, io: Io) -> Built:
    transcript = io.input("transcript")
    language = read_transcript(transcript)["language"]
    if run.job.align:
        spec, reason = resolve_aligner(ctx.catalog, ctx.root, ctx.lock, language)
    else:
        spec, reason = None, "the job was prepared with --no-align"
    entry = _entry(
        run,
        {"audio": str(io.input("audio")), "transcript": str(transcript)},
        {"transcript": str(io.output("transcript"))},
        aligner=spec,
        no_aligner_reason=reason,
    )
    key = {
        "transcript": _digest(transcript),
        "aligner": spec and [spec["key"], spec["commit"]],
        "reason": reason,
    }
    return Built(entry, key, uses={spec["key"]: spec["commit"]} if spec else {})


def _align_venv(job: Job, entry: JobEntry | None) -> str:
    """whisperx (torch) when there is something to align; with nothing to align the stage only carries the
    transcript on, in the core venv."""
    aligning = entry.fields["aligner"] if entry else job.align
    return "whisperx" if aligning else "core"


# ---- diarize: who spoke, named from enrolled samples --------------------------------------------------------------


def _check_diarize(ctx: Context, job: Job) -> list[str]:
    spec, problem = resolve_diarization(ctx.catalog, ctx.root, ctx.lock)
    return [] if spec else [f"job {job.id}: {problem}"]


def _speaker_files(folder: str | None) -> list[list]:
    """[name, sha256] of every sample in the speakers folder: a changed folder diarizes (and names) again."""
    if not folder or not Path(folder).is_dir():
        return []
    return [
        [p.name, sha256_file(p)] for p in sorted(Path(folder).iterdir()) if p.is_file() and not p.name.startswith(".")
    ]


def _build_diarize(ctx: Context, run: JobRun, io: Io) -> Built:
    spec, problem = resolve_diarization(ctx.catalog, ctx.root, ctx.lock)
    if spec is None:
        raise StageInputError(problem)
    job = run.job
    folder = job.speakers_dir
    enrolment = str(ctx.root / "offline-speech" / "enrolment" / f"{digest_text(folder)}.json") if folder else None
    options = {
        "min_speakers": job.min_speakers,
        "max_speakers": job.max_speakers,
        "speakers_dir": folder,
        "speaker_threshold": job.speaker_threshold,
        "enrolment_cache": enrolment,
    }
    entry = _entry(
        run,
        {"audio": str(io.input("audio")), "transcript": str(io.input("transcript"))},
        {"transcript": str(io.output("transcript")), "speakers": str(io.output("speakers"))},
        diarize=options,
    )
    key = {
        "audio": _digest(io.input("audio")),
        "transcript": _digest(io.input("transcript")),
        "model": spec["commit"],
        "options": {k: v for k, v in options.items() if k != "enrolment_cache"},
        "samples": _speaker_files(folder),
    }
    return Built(entry, key, models={"diarization": spec}, uses={spec["key"]: spec["commit"]})


# ---- translate: every target language, by the route of the (detected) source ------------------------------------


def _translators(ctx: Context, job: Job, language: str) -> tuple[list[dict], dict[str, ModelSpec], list[str]]:
    """translation_plan, with this run's leave for remote code on each spec and the refusals among the problems."""
    targets, models, problems = translation_plan(ctx.catalog, ctx.root, ctx.lock, job, language)
    for spec in models.values():
        if spec.get("trust_remote_code"):
            spec["remote_code_allowed"] = ctx.trust_remote_code
    return targets, models, problems + [why for spec in models.values() if spec and (why := remote_code_refusal(spec))]


def _check_translate(ctx: Context, job: Job) -> list[str]:
    if job.source_language == AUTO:
        return []  # routed once Whisper has detected the language
    return _translators(ctx, job, job.source_language)[2]


def _build_translate(ctx: Context, run: JobRun, io: Io) -> Built:
    source = io.input("transcript")  # diarized: the translations keep each segment's speaker
    language = read_transcript(source)["language"]
    targets, models, problems = _translators(ctx, run.job, language)
    if problems:
        raise StageInputError("; ".join(problems))
    entry = _entry(
        run,
        {"transcript": str(source)},
        {t["language"]: str(io.output("translation", language=t["language"])) for t in targets},
        targets=targets,
    )
    key = {
        "transcript": _digest(source),
        "targets": targets,
        "models": {k: [m["commit"], m["ct2"]] for k, m in models.items()},
    }
    return Built(entry, key, models=models, uses={k: m["commit"] for k, m in models.items()})


# ---- outputs: subtitles and transcripts per language; mux: them as tracks of the original media ------------------


def _documents(run: JobRun, io: Io) -> list[dict]:
    """The transcripts the outputs stage turns into files: the source, then each translation, with their files: the
    job's --formats for every language, else the default set for the source and, for translations, subtitles only
    where a later stage takes the documents (mux makes them tracks)."""
    source = io.input("transcript")
    language = read_transcript(source)["language"]
    if run.job.formats:
        source_formats = formats = tuple(run.job.formats)
    else:
        source_formats = DOCUMENT_FORMATS
        formats = DOCUMENT_FORMATS if io.consumed_later("documents") else ("txt", "json")
    translations = io.recorded("translation") if io.has("translation") else {}
    return [
        {
            "language": lang,
            "transcript": str(path),
            "outputs": {ext: str(io.output("documents", language=lang, format=ext)) for ext in exts},
        }
        for lang, path, exts in [(language, source, source_formats)]
        + [(t, p, formats) for t, p in translations.items()]
    ]


def _build_outputs(ctx: Context, run: JobRun, io: Io) -> Built:
    documents = _documents(run, io)
    outputs = {f"{d['language']}.{ext}": path for d in documents for ext, path in d["outputs"].items()}
    outputs["page"] = str(io.output("page"))
    page = {"path": outputs["page"], "media": run.job.media.path}
    key = {
        "inputs": {d["transcript"]: _digest(Path(d["transcript"])) for d in documents},
        "outputs": sorted(outputs.values()),
        **({"layout": run.job.layout} if run.job.layout else {}),  # unset: digests as before the options
    }
    return Built(_entry(run, outputs=outputs, documents=documents, layout=run.job.layout, page=page), key)


def _build_mux(ctx: Context, run: JobRun, io: Io) -> Built:
    subtitles = [
        (key.rsplit(".", 1)[0], path) for key, path in io.recorded("documents").items() if key.endswith(".srt")
    ]
    tracks = [
        {"path": str(path), "iso639_2": lookup(language).iso639_2, "title": lookup(language).name}
        for language, path in subtitles
    ]
    media = run.dir / output_name(run.job.media.path, run.job.stem)
    key = {"media": run.media_sha256, "tracks": [[t["iso639_2"], _digest(Path(t["path"]))] for t in tracks]}
    return Built(_entry(run, outputs={"media": str(media)}, tracks=tracks), key)


# ---- the table ----------------------------------------------------------------------------------------------------


ALL = WORKFLOWS
REGISTRY: tuple[Stage, ...] = (
    Stage("demux", 2, ALL, "demux", "core", _build_demux, consumes=("media",), produces={"audio": "audio.wav"}),
    Stage(
        "asr",
        1,
        ALL,
        lambda job: f"asr_{job.backend}",
        lambda job, entry: job.backend,
        _build_asr,
        asr_needs,
        _check_asr,
        consumes=("audio",),
        produces={"transcript": "asr.json"},
    ),
    Stage(
        "align",
        1,
        ALL,
        "align",
        _align_venv,
        _build_align,
        aligner_needs,
        _check_align,
        consumes=("audio", "transcript"),
        produces={"transcript": "aligned.json"},
    ),
    Stage(
        "diarize",
        1,
        ALL,
        "diarize",
        "whisperx",
        _build_diarize,
        diarization_needs,
        _check_diarize,
        final=True,  # <stem>.speakers.json (who matched whom, every score) is a result
        when=lambda job: job.diarize,
        consumes=("audio", "transcript"),
        produces={"transcript": "diarized.json", "speakers": "{stem}.speakers.json"},
    ),
    Stage(
        "translate",
        1,
        ("translate", "subtitle"),
        "translate",
        "translation",
        _build_translate,
        translator_needs,
        _check_translate,
        when=lambda job: bool(job.target_languages),  # subtitle without -t: the source only
        consumes=("transcript",),
        produces={"translation": "translated.{language}.json"},
    ),
    Stage(
        "outputs",
        3,
        ALL,
        "outputs",
        "core",
        _build_outputs,
        final=True,
        consumes=("transcript", "translation"),
        produces={"documents": "{stem}.{language}.{format}", "page": "{stem}.html"},
    ),
    Stage("mux", 2, ("subtitle",), "mux", "core", _build_mux, final=True, consumes=("media", "documents")),
)


def stages_for(workflow: str) -> list[Stage]:
    """The stages of a workflow, in run order."""
    return [s for s in REGISTRY if workflow in s.workflows]


def stages_of(job: Job) -> list[Stage]:
    """The stages that run for one job, in run order."""
    return [s for s in REGISTRY if s.applies(job)]


def job_needs(catalog: Catalog, job: Job) -> tuple[list[Need], list[str]]:
    """(every catalog entry the job's stages load, each once, with the command fetching it; notes such as a
    language without aligner). CatalogError / LanguageError for a model or a pair the catalog cannot serve."""
    needs: list[Need] = []
    notes: list[str] = []
    for stage in stages_of(job):
        found, said = stage.needs(catalog, job)
        needs += [n for n in found if n.item.key not in {m.item.key for m in needs}]
        notes += said
    return needs, notes
