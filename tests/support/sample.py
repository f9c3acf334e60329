"""The committed speech sample (samples/speech-en.*: espeak-ng speech, its text and sentence times) and the checks
the tests make on subtitles of it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import ROOT

CLIP = ROOT / "samples" / "speech-en.opus"
REFERENCE = ROOT / "samples" / "speech-en.txt"  # the whole clip's text, for word error rates
SENTENCES = json.loads((ROOT / "samples" / "speech-en.json").read_text())["sentences"]  # start, end, text each

SRT_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)$")


def text_between(start: float, end: float) -> str:
    """The reference text of the sentences spoken entirely between two media positions."""
    return " ".join(s["text"] for s in SENTENCES if s["start"] >= start - 0.01 and s["end"] <= end + 0.01)


def parse_srt(path: Path) -> list[tuple[float, float, str]]:
    """(start, end, text) of each cue, asserting the SRT is well formed: numbered from 1, 1-2 lines of <= 42."""
    cues = []
    for block in path.read_text(encoding="utf-8").strip().split("\n\n"):
        lines = block.splitlines()
        assert lines[0].isdigit() and int(lines[0]) == len(cues) + 1, block
        m = SRT_TIME.match(lines[1])
        assert m, lines[1]
        g = [int(x) for x in m.groups()]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        assert len(lines) in (3, 4) and all(len(x) <= 42 or " " not in x for x in lines[2:]), block
        cues.append((start, end, " ".join(lines[2:])))
    return cues


def assert_monotonic(cues: list[tuple[float, float, str]], lo: float, hi: float) -> None:
    """Cues in order, none overlapping the previous one, all inside [lo, hi]."""
    last_end = lo
    for start, end, _ in cues:
        assert last_end - 0.001 <= start < end <= hi + 0.001, (start, end, last_end)
        last_end = end
