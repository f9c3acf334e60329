"""prepare-job: validate a media file and the job's settings, write out/<id>/job.json, print the id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..catalog import load_catalog
from ..errors import BadInput
from ..job_options import DEFAULTS, JobOptions
from ..settings import DEFAULT_OUT_DIR, cache_root
from .app import app
from .options import CacheDir, Version
from .output import err, out

PREPARE_EXAMPLES = """\b
Examples:
  ./prepare-job.sh --media in/talk.mp4 -s hi
  ./prepare-job.sh --media in/film.mp4 --workflow subtitle -s hi -t en,ta,bn
  ./prepare-job.sh --media in/meeting.wav --diarize --speakers speakers/ --min-speakers 2 --max-speakers 6
  ./prepare-job.sh --media in/meeting.mkv --start-time 00:05:00 --end-time 00:10:30 --asr-model large-v3-turbo
  ./prepare-job.sh --media in/archive/ --recursive -s auto        # a batch: one job per media file found
  ./prepare-job.sh --media-list files.txt --workflow subtitle -t en
"""


@app.command(
    "prepare-job",
    epilog=PREPARE_EXAMPLES,
    help="Validate a media file and the job's settings, write out/<id>/job.json, and print the job id as the "
    "last line. Several media (--media repeated, a folder, --media-list) make a batch: one job per media file, "
    "recorded in out/batches/<id>.json, whose id is printed last (run-pipeline.sh -b ID runs it). Bad input exits 2 "
    "with one line and leaves nothing behind.",
)
def prepare_job(
    media: Annotated[
        list[Path] | None,
        typer.Option(
            "--media",
            help="A media file (audio or video with an audio stream), or a folder of them (a batch); repeatable.",
        ),
    ] = None,
    media_list: Annotated[
        Path | None,
        typer.Option("--media-list", metavar="FILE", help="A batch of the media listed in FILE, one path per line."),
    ] = None,
    recursive: Annotated[
        bool, typer.Option("--recursive", help="With a --media folder: its sub-folders' media too.")
    ] = False,
    workflow: Annotated[
        str,
        typer.Option(
            help="transcribe, translate (needs -t) or subtitle (muxes the source subtitles, and each -t language's)."
        ),
    ] = DEFAULTS.workflow,
    source: Annotated[
        str, typer.Option("-s", "--source-language", help="Spoken language (Whisper code) or auto.")
    ] = DEFAULTS.source,
    targets: Annotated[
        str | None,
        typer.Option(
            "-t",
            "--target-languages",
            help="Comma-separated target languages (translate; subtitle, where they are optional).",
        ),
    ] = DEFAULTS.targets,
    start_time: Annotated[
        str | None, typer.Option("--start-time", help="Clip start, HH:MM:SS[.mmm] or seconds (absolute).")
    ] = DEFAULTS.start,
    end_time: Annotated[
        str | None, typer.Option("--end-time", help="Clip end, HH:MM:SS[.mmm] or seconds (absolute).")
    ] = DEFAULTS.end,
    asr_model: Annotated[
        str, typer.Option(help="ASR model name (tiny.en ... large-v3, large-v3-turbo, distil-*).")
    ] = DEFAULTS.asr_model,
    backend: Annotated[
        str, typer.Option(help="auto (MLX on Apple Silicon with venv/mlx, else whisperx), whisperx or mlx.")
    ] = DEFAULTS.backend,
    align: Annotated[
        bool,
        typer.Option(
            "--align/--no-align",
            help=(
                "Word timestamps with the language's aligner (./cache-models.sh --align); --no-align keeps segment "
                "timestamps."
            ),
        ),
    ] = DEFAULTS.align,
    align_languages: Annotated[
        str | None,
        typer.Option(
            "--align-languages",
            metavar="LANG[,LANG...]",
            help=(
                "With -s auto: the languages whose aligners the job is provisioned with (default en,hi); the detected "
                "language's aligner is used when cached."
            ),
        ),
    ] = DEFAULTS.align_languages,
    diarize: Annotated[
        bool,
        typer.Option(
            "--diarize", help="Who spoke: speaker labels on segments and words (./cache-models.sh --diarization)."
        ),
    ] = DEFAULTS.diarize,
    speakers: Annotated[
        Path | None,
        typer.Option(
            "--speakers",
            metavar="DIR",
            help=(
                "With --diarize: enrolled voice samples, <name>[_N].<audio> (anna_1.wav, anna_2.m4a, ravi.wav); "
                "matching speakers get the name."
            ),
        ),
    ] = DEFAULTS.speakers,
    min_speakers: Annotated[
        int | None, typer.Option("--min-speakers", help="With --diarize: at least this many speakers.")
    ] = DEFAULTS.min_speakers,
    max_speakers: Annotated[
        int | None, typer.Option("--max-speakers", help="With --diarize: at most this many speakers.")
    ] = DEFAULTS.max_speakers,
    speaker_threshold: Annotated[
        float,
        typer.Option(
            "--speaker-threshold",
            help=(
                "With --speakers: the cosine score at or above which a voice is named (the job's speakers.json lists "
                "every score)."
            ),
        ),
    ] = DEFAULTS.speaker_threshold,
    nllb_model: Annotated[
        str,
        typer.Option(
            help="NLLB size for pairs IndicTrans2 does not cover: 3.3B, 1.3B, distilled-1.3B, distilled-600M."
        ),
    ] = DEFAULTS.nllb_model,
    initial_prompt: Annotated[
        str | None,
        typer.Option("--initial-prompt", metavar="TEXT", help="Text the ASR sees as what came before: names, style."),
    ] = DEFAULTS.initial_prompt,
    hotwords: Annotated[
        str | None,
        typer.Option("--hotwords", metavar="W[,W...]", help="Words to favour: names and jargon (whisperx backend)."),
    ] = DEFAULTS.hotwords,
    beam_size: Annotated[
        int | None, typer.Option("--beam-size", metavar="N", help="Beam search width (default 5).")
    ] = DEFAULTS.beam_size,
    temperature: Annotated[
        str | None,
        typer.Option(
            "--temperature", metavar="T[,T...]", help="Sampling temperatures, tried in turn (default 0,0.2,...,1)."
        ),
    ] = DEFAULTS.temperature,
    vad_onset: Annotated[
        float | None, typer.Option("--vad-onset", help="Speech probability where speech starts (default 0.5).")
    ] = DEFAULTS.vad_onset,
    vad_offset: Annotated[
        float | None,
        typer.Option("--vad-offset", help="Speech probability below which speech ends (default onset - 0.15)."),
    ] = DEFAULTS.vad_offset,
    chunk_size: Annotated[
        float | None,
        typer.Option("--chunk-size", metavar="S", help="Longest speech chunk the VAD hands on, seconds (default 30)."),
    ] = DEFAULTS.chunk_size,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", metavar="N", help="Chunks decoded at once (default 8 CPU, 16 GPU).")
    ] = DEFAULTS.batch_size,
    compute_type: Annotated[
        str | None,
        typer.Option("--compute-type", help="CTranslate2 compute type (default int8 on CPU, float16 on CUDA)."),
    ] = DEFAULTS.compute_type,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu, cuda or auto (default: CUDA when a GPU is visible).")
    ] = DEFAULTS.device,
    suppress_numerals: Annotated[
        bool, typer.Option("--suppress-numerals", help="Spell numbers out (no digit tokens): better alignment.")
    ] = DEFAULTS.suppress_numerals,
    condition_on_previous_text: Annotated[
        bool | None,
        typer.Option(
            "--condition-on-previous-text/--no-condition-on-previous-text",
            help="Feed each window the text before it (default off: fewer repetition loops).",
        ),
    ] = DEFAULTS.condition_on_previous_text,
    max_line_width: Annotated[
        int | None, typer.Option("--max-line-width", metavar="N", help="Subtitle characters per line (default 42).")
    ] = DEFAULTS.max_line_width,
    max_lines: Annotated[
        int | None, typer.Option("--max-lines", metavar="N", help="Subtitle lines per cue (default 2).")
    ] = DEFAULTS.max_lines,
    max_cue_duration: Annotated[
        float | None, typer.Option("--max-cue-duration", metavar="S", help="Longest cue, seconds (default 7).")
    ] = DEFAULTS.max_cue_duration,
    min_gap: Annotated[
        float | None, typer.Option("--min-gap", metavar="S", help="Seconds between cues (default 0).")
    ] = DEFAULTS.min_gap,
    highlight_words: Annotated[
        bool, typer.Option("--highlight-words", help="Karaoke subtitles: each word underlined as it is spoken.")
    ] = DEFAULTS.highlight_words,
    formats: Annotated[
        str | None,
        typer.Option(
            "--formats",
            metavar="F[,F...]",
            help="Files per language: srt, vtt, txt, json, tsv, ass (default the first 4).",
        ),
    ] = DEFAULTS.formats,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help='Print the job as one JSON document (its "id" is the job id) instead of the id line.'
        ),
    ] = False,
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", help="Where job folders go (default <project>/out).")
    ] = None,
    cache_dir: CacheDir = None,
    version: Version = None,
) -> None:
    options = JobOptions(
        workflow=workflow,
        source=source,
        targets=targets,
        start=start_time,
        end=end_time,
        asr_model=asr_model,
        backend=backend,
        align=align,
        align_languages=align_languages,
        nllb_model=nllb_model,
        diarize=diarize,
        speakers=speakers,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
        speaker_threshold=speaker_threshold,
        initial_prompt=initial_prompt,
        hotwords=hotwords,
        beam_size=beam_size,
        temperature=temperature,
        vad_onset=vad_onset,
        vad_offset=vad_offset,
        chunk_size=chunk_size,
        batch_size=batch_size,
        compute_type=compute_type,
        device=device,
        suppress_numerals=suppress_numerals,
        condition_on_previous_text=condition_on_previous_text,
        max_line_width=max_line_width,
        max_lines=max_lines,
        max_cue_duration=max_cue_duration,
        min_gap=min_gap,
        highlight_words=highlight_words,
        formats=formats,
    )
    given = media or []
    if not given and media_list is None:
        raise BadInput(
            "Missing option '--media' (a file or folder, repeatable) or '--media-list' (see prepare-job.sh --help)"
        )
    out_dir = out_dir or DEFAULT_OUT_DIR
    if len(given) == 1 and media_list is None and not given[0].is_dir():
        _prepare_one(given[0], options, out_dir, cache_dir, as_json)
    else:
        _prepare_batch(given, media_list, recursive, options, out_dir, cache_dir, as_json)


def _prepare_one(media: Path, options: JobOptions, out_dir: Path, cache_dir: Path | None, as_json: bool) -> None:
    from ..jobs import prepare

    job, folder = prepare(load_catalog(), cache_root(cache_dir), media, options, out_dir)
    for w in job.warnings:
        err.print(f"note: {w}")
    if as_json:  # one JSON document: the job, whose "id" is the id
        print(job.to_json(), end="")
        return
    summary = (
        f"job {folder}: {job.workflow} {job.clip.duration:.1f} s of {Path(job.media.path).name}, backend {job.backend}"
    )
    out.print(summary, soft_wrap=True)  # one line however long: a pipe is not 80 columns wide
    print(job.id)


def _prepare_batch(
    given: list[Path],
    media_list: Path | None,
    recursive: bool,
    options: JobOptions,
    out_dir: Path,
    cache_dir: Path | None,
    as_json: bool,
) -> None:
    from ..batches import find_media, prepare_batch

    files, skipped = find_media(given, media_list, recursive)

    def said(path: Path, what: str) -> None:
        if not as_json:
            out.print(f"{what}: {path}", soft_wrap=True)

    batch, jobs = prepare_batch(load_catalog(), cache_root(cache_dir), files, skipped, options, out_dir, said)
    notes = sorted({w for job in jobs for w in job.warnings})
    for note in notes:
        err.print(f"note: {note}")
    for skip in batch.skipped:
        err.print(f"skipped: {skip.path}: {skip.why}")
    if as_json:  # one JSON document: the batch, whose "id" is the id, with its jobs
        print(json.dumps(batch.to_dict() | {"dir": str(out_dir)}, indent=2, ensure_ascii=False))
        return
    seconds = sum(job.clip.duration for job in jobs)
    out.print(
        f"batch {out_dir / 'batches' / batch.id}.json: {len(jobs)} jobs ({len(batch.reused)} prepared before), "
        f"{seconds / 60:.1f} min of media, {len(batch.skipped)} skipped",
        soft_wrap=True,
    )
    print(batch.id)
