"""outputs: subtitles and transcripts, per language: <stem>.<lang>.srt, .vtt, .txt and .json by default (the source
transcript and each translation; the translate workflow writes only .txt and .json for its targets), or the job's
--formats among srt, vtt, txt, json, tsv (whisperX's: start and end in milliseconds, text) and ass (one style per
speaker for diarized jobs).

The JSON is what whisperX writes (segments with words, word_segments, language) plus our own keys, so scripts
written for whisperX read it unchanged. VTT cue text escapes &, < and >; no cue text holds '-->'.
Cues follow subtitle conventions, shaped by the job's layout (layout.py; default at most two lines of 42 characters
and 7 seconds): broken at word boundaries (preferably after sentence punctuation), never across a speaker turn,
never overlapping, at least the layout's gap apart; with --highlight-words each cue is repeated word by word with the
spoken word underlined (karaoke). With word timestamps a cue spans its words exactly;
without them a long segment is divided in proportion to characters. Core venv, standard library only.
"""

from __future__ import annotations

from pathlib import Path

from ..layout import Layout
from ..schema import read_transcript
from ..util import atomic_write, write_json
from .base import Events, for_each_job, main
from .page import page_html
from .words import ends_sentence

NAME = "outputs"
DEFAULT = Layout()
LINE = DEFAULT.max_line_width
MAX_SECONDS = DEFAULT.max_cue_duration
Piece = tuple[str, float, float]  # a word and its times


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


def timed_cues(segments: list[dict], layout: Layout = DEFAULT) -> list[tuple[float, float, str, str, list[Piece]]]:
    """(start, end, text, speaker label, words) for every cue of the segments, in order, without overlaps and at
    least `layout.min_gap` apart where the words leave room."""
    result: list[tuple[float, float, str, list[Piece]]] = []
    for seg in segments:
        label = f"[{seg['speaker']}] " if seg.get("speaker") else ""  # a diarized job: who speaks, on every cue
        current: list[Piece] = []
        for piece in _pieces(seg):
            if current:
                text = " ".join(p[0] for p in current + [piece])
                sentence_end = ends_sentence(current[-1][0]) and len(" ".join(p[0] for p in current)) > (
                    layout.max_line_width // 2
                )
                too_long = not fits(label + text, layout) or piece[2] - current[0][1] > layout.max_cue_duration
                if too_long or sentence_end:
                    result.append((current[0][1], current[-1][2], label, current))
                    current = []
            current.append(piece)
        if current:
            result.append((current[0][1], current[-1][2], label, current))
    fixed: list[tuple[float, float, str, str, list[Piece]]] = []
    for start, end, label, words in result:
        if fixed and start < fixed[-1][1] + layout.min_gap:
            prev = fixed[-1]
            gap_end = max(prev[0] + 0.001, start - layout.min_gap)  # shorten the cue before, never to nothing
            fixed[-1] = (prev[0], min(prev[1], gap_end), *prev[2:])
            start = max(start, fixed[-1][1])
        fixed.append((start, max(end, start + 0.001), label + " ".join(w[0] for w in words), label, words))
    return fixed


def fits(text: str, layout: Layout) -> bool:
    """Whether the text wraps into the layout's lines within its width (a single word longer than a line fits
    alone: it cannot be broken)."""
    if len(text) > layout.max_chars:
        return len(text.split()) == 1
    return all(
        len(line) <= layout.max_line_width for line in wrap(text, layout.max_line_width, layout.max_lines).split("\n")
    )


def cues(segments: list[dict], layout: Layout = DEFAULT) -> list[tuple[float, float, str]]:
    """Subtitle cues (start, end, text) for the segments, in order and without overlaps."""
    return [(start, end, text) for start, end, text, _, _ in timed_cues(segments, layout)]


def wrap(text: str, width: int = LINE, lines: int = 2) -> str:
    """The text in at most `lines` lines of about equal length, each within `width` where the words allow: the
    break points that make the longest line shortest."""
    words = text.split()
    if len(text) <= width or lines <= 1 or len(words) < 2:
        return text
    best: list[str] | None = None
    for count in range(2, min(lines, len(words)) + 1):
        candidate = _balanced(words, count)
        if best is None or max(map(len, candidate)) < max(map(len, best)):
            best = candidate
        if max(map(len, best)) <= width:
            break
    return "\n".join(best or [text])


def _balanced(words: list[str], count: int) -> list[str]:
    """`words` in `count` lines, the longest as short as it can be (a small dynamic programme)."""
    n = len(words)
    length = [[len(" ".join(words[i:j])) for j in range(n + 1)] for i in range(n + 1)]
    best: dict[tuple[int, int], tuple[int, list[int]]] = {}

    def solve(i: int, k: int) -> tuple[int, list[int]]:
        if k == 1:
            return length[i][n], [n]
        if (i, k) not in best:
            options = []
            for j in range(i + 1, n - k + 2):
                rest, cuts = solve(j, k - 1)
                options.append((max(length[i][j], rest), [j, *cuts]))
            best[(i, k)] = min(options)
        return best[(i, k)]

    _, cuts = solve(0, count)
    starts = [0, *cuts[:-1]]
    return [" ".join(words[a:b]) for a, b in zip(starts, cuts)]


def highlighted(
    items: list[tuple[float, float, str, str, list[Piece]]], escape=lambda t: t
) -> list[tuple[float, float, str]]:
    """Karaoke cues: each cue repeated once per word, from that word's start to the next one's, the word underlined
    (<u>, which SRT players and WebVTT both take); `escape` applies to the text around the tags."""
    out: list[tuple[float, float, str]] = []
    for start, end, _, label, words in items:
        for i, (_, word_start, _) in enumerate(words):
            a = start if i == 0 else max(start, word_start)
            b = end if i == len(words) - 1 else max(a + 0.001, min(end, words[i + 1][1]))
            text = " ".join(f"<u>{escape(w[0])}</u>" if j == i else escape(w[0]) for j, w in enumerate(words))
            out.append((a, b, escape(label) + text))
    return out


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


def to_srt(items: list[tuple[float, float, str]], layout: Layout = DEFAULT) -> str:
    """SRT cues, wrapped to the layout (karaoke cues keep their <u> tags out of the line widths)."""
    blocks = [
        f"{i}\n{timestamp(a, ',')} --> {timestamp(b, ',')}\n{_wrapped(t, layout)}\n"
        for i, (a, b, t) in enumerate(items, 1)
    ]
    return "\n".join(blocks)


def to_vtt(items: list[tuple[float, float, str]], layout: Layout = DEFAULT, escaped: bool = False) -> str:
    """WebVTT cues, wrapped to the layout, their text escaped unless `escaped` says it already is."""
    blocks = [
        f"{timestamp(a, '.')} --> {timestamp(b, '.')}\n"
        f"{_wrapped(t, layout) if escaped else vtt_escape(_wrapped(t, layout))}\n"
        for a, b, t in items
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _wrapped(text: str, layout: Layout) -> str:
    """Wrapped by its visible words: tags (<u>...</u>) do not count towards a line's width."""
    text = _cue_text(text)
    if "<u>" not in text:
        return wrap(text, layout.max_line_width, layout.max_lines)
    visible = text.replace("<u>", "").replace("</u>", "")
    lines = wrap(visible, layout.max_line_width, layout.max_lines).split("\n")
    words, out = text.split(), []
    for line in lines:
        count = len(line.split())
        out.append(" ".join(words[:count]))
        words = words[count:]
    return "\n".join(out)


def to_tsv(segments: list[dict]) -> str:
    """whisperX's TSV: a header, then start and end in integer milliseconds and the text, one segment per row."""
    rows = ["start\tend\ttext"]
    for seg in segments:
        text = " ".join(seg["text"].replace("\t", " ").split())
        rows.append(f"{round(1000 * seg['start'])}\t{round(1000 * seg['end'])}\t{text}")
    return "\n".join(rows) + "\n"


ASS_COLOURS = ("&H00FFFFFF", "&H0000FFFF", "&H00FFFF00", "&H0000FF00", "&H00FF80FF", "&H000080FF", "&H00FF8000")


def to_ass(items: list[tuple[float, float, str, str, list[Piece]]], layout: Layout = DEFAULT) -> str:
    """Advanced SubStation Alpha: one style per speaker (its own colour) for a diarized job, else one Default style;
    lines wrapped to the layout (\\N), speaker labels moved from the text into the Name field."""
    speakers = list(dict.fromkeys(label[1:-2] for _, _, _, label, _ in items if label))
    styles = ["Default", *(f"Speaker {s}" for s in speakers)]
    header = [
        "[Script Info]",
        "ScriptType: v4.00+",
        "WrapStyle: 2",
        "PlayResX: 1280",
        "PlayResY: 720",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
        "Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, "
        "MarginR, MarginV, Encoding",
    ]
    for i, style in enumerate(styles):
        colour = ASS_COLOURS[i % len(ASS_COLOURS)]
        header.append(
            f"Style: {style},Arial,48,{colour},&H000000FF,&H00000000,&H80000000,0,0,0,0,100,100,0,0,1,2,1,2,40,40,40,1"
        )
    header += ["", "[Events]", "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text"]
    events = []
    for start, end, _, label, words in items:
        speaker = label[1:-2] if label else ""
        text = _wrapped(" ".join(w[0] for w in words), layout).replace("\n", "\\N")
        text = text.replace("{", "(").replace("}", ")")  # braces open override tags in ASS
        style = f"Speaker {speaker}" if speaker else "Default"
        events.append(f"Dialogue: 0,{_ass_time(start)},{_ass_time(end)},{style},{speaker},0,0,0,,{text}")
    return "\n".join(header + events) + "\n"


def _ass_time(seconds: float) -> str:
    cs = int(round(max(seconds, 0.0) * 100))
    h, cs = divmod(cs, 360_000)
    m, cs = divmod(cs, 6000)
    s, cs = divmod(cs, 100)
    return f"{h}:{m:02d}:{s:02d}.{cs:02d}"


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


def write_documents(doc: dict, outputs: dict[str, str], layout: Layout = DEFAULT) -> int:
    """Write the formats named in `outputs` (srt, vtt, txt, json, tsv, ass) for one transcript; the cue count."""
    timed = timed_cues(doc["segments"], layout)
    items = [(start, end, text) for start, end, text, _, _ in timed]
    srt_items, vtt_items = items, items
    if layout.highlight_words:  # karaoke: the cues word by word, each word's text escaped around its <u> tags
        srt_items = highlighted(timed, lambda t: t.replace("<", "‹").replace(">", "›"))  # no stray tags in SRT
        vtt_items = highlighted(timed, vtt_escape)
    writers = {
        "srt": lambda path: _write_text(path, to_srt(srt_items, layout)),
        "vtt": lambda path: _write_text(path, to_vtt(vtt_items, layout, escaped=layout.highlight_words)),
        "txt": lambda path: _write_text(path, to_txt(doc["segments"])),
        "json": lambda path: write_json(path, whisperx_document(doc)),
        "tsv": lambda path: _write_text(path, to_tsv(doc["segments"])),
        "ass": lambda path: _write_text(path, to_ass(timed, layout)),
    }
    for ext, path in outputs.items():
        writers[ext](Path(path))
    return len(items)


def run(request: dict, events: Events) -> None:
    def work(job: dict) -> dict:
        cue_counts, warnings, read = {}, [], []
        for document in job["documents"]:
            doc = read_transcript(Path(document["transcript"]))
            read.append(doc | {"language": document["language"]})
            cue_counts[document["language"]] = write_documents(doc, document["outputs"], Layout.of(job.get("layout")))
            warnings += [w for w in doc["warnings"] if w not in warnings]
            events.log(
                job["id"],
                f"{document['language']}: {cue_counts[document['language']]} cues from "
                f"{len(doc['segments'])} segments -> {', '.join(sorted(document['outputs']))}",
            )
        if job.get("page"):
            page = Path(job["page"]["path"])
            clip = job["job"]["clip"]
            _write_text(
                page, page_html(job["job"]["output_stem"] or page.stem, job["job"]["media"]["path"], page, read, clip)
            )
        return {"cues": cue_counts, "warnings": warnings}

    for_each_job(request, events, work)


if __name__ == "__main__":
    main(run)
