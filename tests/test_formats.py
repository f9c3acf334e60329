"""Outputs every tool reads: SRT and VTT through three independent parsers (srt, webvtt-py, pysubs2) with nasty
text, and the JSON through whisperX's own writers, as a whisperX user's script would use it."""

from __future__ import annotations

import html
import json
import subprocess

import pysubs2
import pytest
import srt
import webvtt

from offline_speech.schema import TRANSCRIPT_KIND, TRANSCRIPT_SCHEMA
from offline_speech.stages.outputs import cues, to_srt, to_vtt, write_documents
from support.shell import venv_python

NASTY = [
    "if x <y and a & b then stop",
    "the arrow --> is not a timing line",
    "<i>not italic</i> & <b>not bold</b>",
    "5 > 3 && 2 < 4 &amp; done",
    "नमस्ते दुनिया। आप कैसे हैं?",
    "emoji 🎬 and quotes \"double\" 'single'",
]


def document(texts: list[str], words: bool = True) -> dict:
    segments, t = [], 0.0
    for text in texts:
        seg = {"start": t, "end": t + 2.0, "text": text}
        if words:
            parts = text.split()
            step = 2.0 / len(parts)
            seg["words"] = [
                {"word": w, "start": round(t + i * step, 3), "end": round(t + (i + 1) * step, 3), "score": 0.9}
                for i, w in enumerate(parts)
            ]
        segments.append(seg)
        t += 2.5
    return {
        "kind": TRANSCRIPT_KIND,
        "schema": TRANSCRIPT_SCHEMA,
        "job": "j",
        "stage": "align",
        "language": "en",
        "clip": {"start": 0.0, "end": t},
        "model": {},
        "warnings": [],
        "segments": segments,
    }


def expected(items) -> list[str]:
    return [" ".join(text.replace("-->", "->").split()) for _, _, text in items]


@pytest.mark.parametrize("words", [True, False])
def test_srt_and_vtt_parse_back_to_the_same_text_and_times_in_three_parsers(tmp_path, words):
    items = cues(document(NASTY, words)["segments"])
    want = expected(items)
    srt_text, vtt_text = to_srt(items), to_vtt(items)

    parsed = list(srt.parse(srt_text))
    assert [" ".join(s.content.split()) for s in parsed] == want
    assert [round(s.start.total_seconds(), 3) for s in parsed] == [round(a, 3) for a, _, _ in items]

    (tmp_path / "x.vtt").write_text(vtt_text, encoding="utf-8")
    captions = webvtt.read(str(tmp_path / "x.vtt"))
    assert [" ".join(html.unescape(c.text).split()) for c in captions] == want  # WebVTT's character references

    for fmt, text in (("srt", srt_text), ("vtt", vtt_text)):
        subs = pysubs2.SSAFile.from_string(text, format_=fmt)
        assert len(subs) == len(items), fmt
        assert [e.start for e in subs] == [round(a * 1000) for a, _, _ in items], fmt
    vtt_subs = pysubs2.SSAFile.from_string(vtt_text, format_="vtt")
    assert [" ".join(html.unescape(e.plaintext).split()) for e in vtt_subs] == want  # nothing swallowed as a tag


def test_vtt_escapes_what_would_open_a_tag_and_no_cue_holds_an_arrow():
    vtt_text = to_vtt(cues(document(NASTY)["segments"]))
    body = vtt_text.split("\n\n", 1)[1]
    cue_lines = [line for line in body.splitlines() if line and " --> " not in line]
    assert all("-->" not in line and "<" not in line for line in cue_lines)
    assert "if x &lt;y and a &amp; b" in body


def test_a_hindi_danda_ends_a_cue_as_it_ends_a_segment():
    long = "यह एक बहुत लंबा वाक्य है जो कई शब्दों से बना है। और यह दूसरा वाक्य है जो भी लंबा है"
    items = cues(document([long])["segments"])
    assert items[0][2].endswith("।") and len(items) == 2


def test_the_json_is_what_whisperx_writes_and_its_own_writers_read_it(tmp_path):
    doc = document(NASTY[:3])
    paths = {ext: str(tmp_path / f"talk.en.{ext}") for ext in ("json", "srt")}
    write_documents(doc, paths)
    result = json.loads((tmp_path / "talk.en.json").read_text())
    assert result["language"] == "en"
    assert [s["text"] for s in result["segments"]] == NASTY[:3]
    assert result["word_segments"] == [w for s in doc["segments"] for w in s["words"]]
    # a whisperX user's script: whisperX's own writers on our JSON, in the whisperx venv
    script = (
        "import json, sys\n"
        "from whisperx.utils import get_writer\n"
        "result = json.load(open(sys.argv[1]))\n"
        "opts = {'max_line_width': None, 'max_line_count': None, 'highlight_words': False}\n"
        "for fmt in ('srt', 'vtt', 'txt', 'tsv', 'json'):\n"
        "    get_writer(fmt, sys.argv[2])(result, 'talk.wav', opts)\n"
    )
    out = tmp_path / "whisperx-out"
    out.mkdir()
    proc = subprocess.run(
        [str(venv_python("whisperx")), "-c", script, str(tmp_path / "talk.en.json"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "if x" in (out / "talk.txt").read_text() and len(list(srt.parse((out / "talk.srt").read_text()))) >= 3
