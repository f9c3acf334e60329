"""Enrolled voice samples: how a speakers folder names people, and what `--diarize --speakers` defaults to.

Standard library only: prepare-job (core venv) checks a folder with it before writing a job, and the diarize stage
(whisperx venv) reads the same folder with it.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import BadInput

DEFAULT_THRESHOLD = 0.5  # cosine at or above which an enrolled person names a diarized speaker
MIN_SAMPLE_SECONDS = 1.0  # of the person speaking, per sample
ANONYMOUS = re.compile(r"^SPEAKER_\d+$")  # how unnamed speakers are labelled
SAMPLE_NAME = re.compile(r"^(?P<name>.+?)(?:_\d+)?$")  # <name>[_N].<audio ext>


class SpeakersError(BadInput):
    """A speakers folder whose samples cannot be told apart (or that holds none)."""


def enrolled_samples(folder: Path) -> dict[str, list[Path]]:
    """person -> sample files; the name is the stem up to an optional `_N`. Refuses what cannot be told apart."""
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is a file, not a folder (one sub-folder per person)"
        raise SpeakersError(f"speakers folder {folder} {what}")
    people: dict[str, list[Path]] = {}
    seen: dict[str, str] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        name = SAMPLE_NAME.match(path.stem).group("name")
        if ANONYMOUS.match(name):
            raise SpeakersError(f"{path}: {name!r} is how unnamed speakers are labelled; rename the file")
        if seen.setdefault(name.casefold(), name) != name:
            raise SpeakersError(f"{path}: {name!r} and {seen[name.casefold()]!r} differ only in case; rename one")
        people.setdefault(name, []).append(path)
    if not people:
        raise SpeakersError(f"speakers folder {folder} holds no samples")
    return people
