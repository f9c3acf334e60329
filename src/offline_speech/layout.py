"""Subtitle layout and output formats: what prepare-job takes to shape cues (line width, lines per cue, longest cue,
gap between cues, word-by-word highlighting) and which files a job writes, checked once at prepare time and recorded
in job.json as `layout` (only what was set: {} is the 2x42-character, 7-second default) and `formats` (None: the
default set). Standard library only: the outputs stage reads the same names.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BadInput
from .util import entries_problem

FORMATS = ("srt", "vtt", "txt", "json", "tsv", "ass")
DEFAULT_FORMATS = ("srt", "vtt", "txt", "json")
SUBTITLE_FORMATS = ("srt", "vtt", "ass")  # timed cues, shaped by the layout


@dataclass(frozen=True)
class Layout:
    """How cues are cut and wrapped."""

    max_line_width: int = 42  # characters per line
    max_lines: int = 2  # lines per cue
    max_cue_duration: float = 7.0  # seconds
    min_gap: float = 0.0  # seconds between one cue's end and the next one's start
    highlight_words: bool = False  # karaoke: one cue per word of each cue, the word underlined

    @property
    def max_chars(self) -> int:
        return self.max_line_width * self.max_lines

    @classmethod
    def of(cls, recorded: dict | None) -> Layout:
        return cls(**(recorded or {}))


class LayoutError(BadInput):
    """A layout or format option no subtitle can take."""


def layout_controls(
    *,
    max_line_width: int | None = None,
    max_lines: int | None = None,
    max_cue_duration: float | None = None,
    min_gap: float | None = None,
    highlight_words: bool = False,
) -> dict:
    """The layout options that were set, validated (LayoutError: one line naming the flag)."""
    found: dict = {}
    for flag, value, low, high in (
        ("--max-line-width", max_line_width, 10, 200),
        ("--max-lines", max_lines, 1, 10),
        ("--max-cue-duration", max_cue_duration, 0.5, 60.0),
        ("--min-gap", min_gap, 0.0, 2.0),
    ):
        if value is not None:
            if not low <= value <= high:
                raise LayoutError(f"{flag} {value}: between {low:g} and {high:g}")
            found[flag[2:].replace("-", "_")] = value
    if highlight_words:
        found["highlight_words"] = True
    return found


def parse_formats(text: str | None, workflow: str) -> tuple[str, ...] | None:
    """--formats: the files each document is written as (None: the default set, as before the option)."""
    if text is None:
        return None
    chosen = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    unknown = [f for f in chosen if f not in FORMATS]
    if not chosen or unknown:
        raise LayoutError(f"--formats {text!r}: choose among {', '.join(FORMATS)}, comma-separated")
    if workflow == "subtitle" and "srt" not in chosen:
        raise LayoutError("--formats: a subtitle job muxes SRT tracks into the media: include srt")
    return chosen


TYPES: dict[str, tuple] = {
    "max_line_width": (int,),
    "max_lines": (int,),
    "max_cue_duration": (int, float),
    "min_gap": (int, float),
    "highlight_words": (bool,),
}


def problem(layout: object, formats: object) -> str | None:
    """Why a job.json's `layout` or `formats` cannot be used, or None."""
    if (wrong := entries_problem(layout, TYPES, "layout")) is not None:
        return wrong
    try:
        layout_controls(**layout)
    except LayoutError as exc:
        return f"layout: {exc}"
    if formats is not None and (not isinstance(formats, list) or not formats or not all(f in FORMATS for f in formats)):
        return f"field 'formats' must be a list of {', '.join(FORMATS)}"
    return None
