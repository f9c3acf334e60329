"""outputs: subtitles and transcripts, per language: <stem>.<lang>.srt, .vtt, .txt and .json (the source transcript
and each translation; the translate workflow writes only .txt and .json for its targets).

The JSON is what whisperX writes (segments with words, word_segments, language) plus our own keys, so scripts
written for whisperX read it unchanged. VTT cue text escapes &, < and >; no cue text holds '-->'.
Cues follow subtitle conventions: at most two lines of 42 characters and 7 seconds, broken at word boundaries
(preferably after sentence punctuation), never overlapping. With word timestamps a cue spans its words exactly;
without them a long segment is divided in proportion to characters. Core venv, standard library only.
"""

from __future__ import annotations

from pathlib import Path

from ..schema import read_transcript
from ..util import atomic_write, write_json
from .base import Events, for_each_job, main
from .words import ends_sentence

NAME = "outputs"
LINE = 42
MAX_CHARS = 2 * LINE
MAX_SECONDS = 7.0


def _pieces(segment: dict) -> list[tuple[str, float, float]]:
    """(word, start, end) for a segment: aligned words, or words timed by character position."""
    if segment.get("words"):
        return [(w["word"].strip(), w["start"], w["end"]) for w in segment["words"] if w["word"].strip()]
    words = segment["text"].split()
    total = sum(len(w) + 1 for w in words) or 1
    span, pos, out = segment["end"] - segment["start"], 0, []
    for w in words:
        start = segment["start"] + span * pos / total
        pos += len(w) + 1
        out.append((w, start, segment["start"] + span * pos / total))  # the last word ends with the segment
    return out


def cues(segments: list[dict]) -> list[tuple[float, float, str]]:
    """Subtitle cues (start, end, text) for the segments, in order and without overlaps."""
    result: list[tuple[float, float, str]] = []
    for seg in segments:
        label = f"[{seg['speaker']}] " if seg.get("speaker") else ""  # a diarized job: who speaks, on every cue
        current: list[tuple[str, float, float]] = []
        for piece in _pieces(seg):
            if current:
                text = " ".join(p[0] for p in current + [piece])
                sentence_end = ends_sentence(current[-1][0]) and len(" ".join(p[0] for p in current)) > LINE // 2
                if len(label + text) > MAX_CHARS or piece[2] - current[0][1] > MAX_SECONDS or sentence_end:
                    result.append((current[0][1], current[-1][2], label + " ".join(p[0] for p in current)))
                    current = []
            current.append(piece)
        if current:
            result.append((current[0][1], current[-1][2], label + " ".join(p[0] for p in current)))
    fixed: list[tuple[float, float, str]] = []
    for start, end, text in result:
        if fixed and start < fixed[-1][1]:
            start = fixed[-1][1]
        fixed.append((start, max(end, start + 0.001), text))
    return fixed


def wrap(text: str) -> str:
    """One line, or two balanced lines when longer than LINE characters."""
    if len(text) <= LINE:
        return text
    words, best, best_cost = text.split(), text, None
    for i in range(1, len(words)):
        a, b = " ".join(words[:i]), " ".join(words[i:])
        cost = max(len(a), len(b))
        if best_cost is None or cost < best_cost:
            best, best_cost = f"{a}\n{b}", cost
    return best


def timestamp(seconds: float, sep: str) -> str:
    ms = int(round(max(seconds, 0.0) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cue_text(text: str) -> str:
    """Cue text no parser can take for a timing line or a cue end: one space between words, no '-->'."""
    return " ".join(text.replace("-->", "->").split())


def vtt_escape(text: str) -> str:
    """WebVTT cue text: &, < and > as character references (a bare '<' opens a tag and hides the rest)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_srt(items: list[tuple[float, float, str]]) -> str:
    blocks = [
        f"{i}\n{timestamp(a, ',')} --> {timestamp(b, ',')}\n{wrap(_cue_text(t))}\n"
        for i, (a, b, t) in enumerate(items, 1)
    ]
    return "\n".join(blocks)


def to_vtt(items: list[tuple[float, float, str]]) -> str:
    blocks = [f"{timestamp(a, '.')} --> {timestamp(b, '.')}\n{vtt_escape(wrap(_cue_text(t)))}\n" for a, b, t in items]
    return "WEBVTT\n\n" + "\n".join(blocks)


def whisperx_document(doc: dict) -> dict:
    """The transcript as whisperX writes its JSON (top-level segments, word_segments, language), our keys beside."""
    words = [w for seg in doc["segments"] for w in seg.get("words") or []]
    return {**doc, "stage": NAME, "word_segments": words}


def to_txt(segments: list[dict]) -> str:
    """One line per segment; with speakers, one paragraph per speaker turn, led by the speaker's name."""
    if not any(seg.get("speaker") for seg in segments):
        return "".join(seg["text"] + "\n" for seg in segments)
    turns: list[tuple[str, list[str]]] = []
    for seg in segments:
        who = seg.get("speaker") or "?"
        if turns and turns[-1][0] == who:
            turns[-1][1].append(seg["text"].strip())
        else:
            turns.append((who, [seg["text"].strip()]))
    return "\n".join(f"[{who}] {' '.join(texts)}\n" for who, texts in turns)


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def write_documents(doc: dict, outputs: dict[str, str]) -> int:
    """Write the formats named in `outputs` (srt, vtt, txt, json) for one transcript; returns the cue count."""
    items = cues(doc["segments"])
    writers = {
        "srt": lambda path: _write_text(path, to_srt(items)),
        "vtt": lambda path: _write_text(path, to_vtt(items)),
        "txt": lambda path: _write_text(path, to_txt(doc["segments"])),
        "json": lambda path: write_json(path, whisperx_document(doc)),
    }
    for ext, path in outputs.items():
        writers[ext](Path(path))
    return len(items)


def run(request: dict, events: Events) -> None:
    def work(job: dict) -> dict:
        cue_counts, warnings = {}, []
        for document in job["documents"]:
            doc = read_transcript(Path(document["transcript"]))
            cue_counts[document["language"]] = write_documents(doc, document["outputs"])
            warnings += [w for w in doc["warnings"] if w not in warnings]
            events.log(
                job["id"],
                f"{document['language']}: {cue_counts[document['language']]} cues from "
                f"{len(doc['segments'])} segments -> {', '.join(sorted(document['outputs']))}",
            )
        return {"cues": cue_counts, "warnings": warnings}

    for_each_job(request, events, work)


if __name__ == "__main__":
    main(run)
