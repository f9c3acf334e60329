"""What a user chooses for a job: every prepare-job option in one dataclass, with its default.

The CLI takes its defaults from `DEFAULTS`, `jobs.prepare` validates a `JobOptions` and turns it into the job
(schema.Job, job.json), and the catalog's defaults (the ASR model, the NLLB size) come from the catalog module.
An option added here, in the CLI's signature and where `jobs.prepare` applies it, is added everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .catalog import DEFAULT_ASR_MODEL, DEFAULT_NLLB_MODEL
from .decoding import decoding_controls
from .languages import AUTO
from .layout import layout_controls
from .speakers import DEFAULT_THRESHOLD


@dataclass(frozen=True)
class JobOptions:
    """prepare-job's options as typed (strings where the user types text: jobs.prepare parses them)."""

    workflow: str = "transcribe"  # transcribe | translate | subtitle (schema.WORKFLOWS)
    source: str = AUTO  # -s: a language code, or auto
    targets: str | None = None  # -t: comma-separated target languages
    start: str | None = None  # --start-time: HH:MM:SS[.mmm] or seconds
    end: str | None = None  # --end-time
    asr_model: str = DEFAULT_ASR_MODEL
    backend: str = "auto"  # auto | whisperx | mlx (schema.BACKENDS)
    align: bool = True
    align_languages: str | None = None  # -s auto: comma-separated languages whose aligners the job is provisioned with
    nllb_model: str = DEFAULT_NLLB_MODEL
    diarize: bool = False
    speakers: Path | None = None  # enrolled voice samples
    min_speakers: int | None = None
    max_speakers: int | None = None
    speaker_threshold: float = DEFAULT_THRESHOLD
    # decoding controls (decoding.py): None leaves the backend's default
    initial_prompt: str | None = None
    hotwords: str | None = None  # comma-separated
    beam_size: int | None = None
    temperature: str | None = None  # comma-separated fallback temperatures
    vad_onset: float | None = None
    vad_offset: float | None = None
    chunk_size: float | None = None
    batch_size: int | None = None
    compute_type: str | None = None
    device: str | None = None
    suppress_numerals: bool = False
    condition_on_previous_text: bool | None = None
    # subtitle layout and output formats (layout.py): None leaves today's 2x42 characters, 7 s, srt/vtt/txt/json
    max_line_width: int | None = None
    max_lines: int | None = None
    max_cue_duration: float | None = None
    min_gap: float | None = None
    highlight_words: bool = False
    formats: str | None = None  # comma-separated

    def decoding(self) -> dict:
        """The decoding controls that were set, validated (decoding.DecodingError for a bad one)."""
        return decoding_controls(**{name: getattr(self, name) for name in DECODING_FIELDS})

    def layout(self) -> dict:
        """The layout options that were set, validated (layout.LayoutError for a bad one)."""
        return layout_controls(**{name: getattr(self, name) for name in LAYOUT_FIELDS})


DECODING_FIELDS = (
    "initial_prompt",
    "hotwords",
    "beam_size",
    "temperature",
    "vad_onset",
    "vad_offset",
    "chunk_size",
    "batch_size",
    "compute_type",
    "device",
    "suppress_numerals",
    "condition_on_previous_text",
)
LAYOUT_FIELDS = ("max_line_width", "max_lines", "max_cue_duration", "min_gap", "highlight_words")
DEFAULTS = JobOptions()
