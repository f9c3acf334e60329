"""Subtitle layout and output formats: cues cut and wrapped to --max-line-width/--max-lines/--max-cue-duration,
--min-gap between them, never across a speaker turn; karaoke cues with --highlight-words; TSV as whisperX writes it
and ASS with a style per speaker; every file read back by the common libraries (srt, webvtt-py, pysubs2), and a real
job on tiny.en honouring all of it."""

from __future__ import annotations

import io
import json
import re

import pysubs2
import pytest
import srt
import webvtt

from offline_speech.layout import Layout, LayoutError, layout_controls, parse_formats
from offline_speech.stages.outputs import cues, highlighted, timed_cues, to_ass, to_srt, to_tsv, to_vtt, wrap
from support.shell import shim

WORDS = (
    "the committee met on tuesday to discuss the budget for the coming year and agreed that the library would "
    "stay open later on weekends while the pool closes for repairs in the spring"
).split()


def segment(words: list[str], start: float, step: float = 0.4, speaker: str | None = None) -> dict:
    timed = [{"word": w, "start": start + i * step, "end": start + i * step + step * 0.8} for i, w in enumerate(words)]
    seg = {"start": timed[0]["start"], "end": timed[-1]["end"], "text": " ".join(words), "words": timed}
    return seg | ({"speaker": speaker} if speaker else {})


def visible(text: str) -> str:
    return re.sub(r"</?u>", "", text)


def test_options_are_checked_and_only_what_is_set_is_recorded():
    assert layout_controls() == {}
    assert layout_controls(max_line_width=37, highlight_words=True) == {"max_line_width": 37, "highlight_words": True}
    for bad in ({"max_line_width": 5}, {"max_lines": 0}, {"max_cue_duration": 100}, {"min_gap": -1}):
        with pytest.raises(LayoutError):
            layout_controls(**bad)
    assert parse_formats(None, "transcribe") is None
    assert parse_formats("SRT, tsv,srt", "transcribe") == ("srt", "tsv")
    with pytest.raises(LayoutError, match="include srt"):
        parse_formats("vtt,ass", "subtitle")
    with pytest.raises(LayoutError, match="choose among"):
        parse_formats("docx", "transcribe")


@pytest.mark.parametrize(("width", "lines", "seconds"), [(42, 2, 7.0), (37, 2, 5.0), (20, 3, 3.0), (30, 1, 10.0)])
def test_cues_keep_to_the_layout(width, lines, seconds):
    layout = Layout(max_line_width=width, max_lines=lines, max_cue_duration=seconds, min_gap=0.2)
    segments = [segment(WORDS, 0.0), segment(WORDS[:9], 40.0, speaker="ANNA"), segment(WORDS[9:20], 44.0)]
    items = cues(segments, layout)
    assert " ".join(t for _, _, t in items).replace("[ANNA] ", "") == " ".join(WORDS + WORDS[:20])  # every word once
    for start, end, text in items:
        assert end - start <= seconds + 1e-9
        shaped = wrap(text, width, lines).split("\n")
        assert len(shaped) <= lines and all(len(line) <= width for line in shaped), shaped
    for (_, end, _), (start, _, _) in zip(items, items[1:]):
        assert start - end >= 0.2 - 1e-9
    anna = [t for _, _, t in items if t.startswith("[ANNA]")]
    assert anna and all(t.startswith("[ANNA]") for t in anna)  # one speaker's turn never shares a cue
    assert not any(w in " ".join(anna) for w in WORDS[9:20] if w not in WORDS[:9])


def test_karaoke_cues_underline_each_word_in_turn():
    timed = timed_cues([segment(WORDS[:6], 1.0)], Layout())
    karaoke = highlighted(timed)
    assert len(karaoke) == 6
    for i, (start, end, text) in enumerate(karaoke):
        assert text.count("<u>") == 1 and f"<u>{WORDS[i]}</u>" in text and visible(text) == " ".join(WORDS[:6])
        assert start < end
    assert [k[0] for k in karaoke][1:] == [1.0 + 0.4 * i for i in range(1, 6)]
    parsed = list(srt.parse(to_srt(karaoke)))
    assert len(parsed) == 6 and "<u>the</u>" in parsed[0].content
    vtt = webvtt.from_buffer(io.StringIO(to_vtt(highlighted(timed, lambda t: t), Layout())))
    assert len(vtt.captions) == 6


def test_tsv_is_whisperx_s_and_ass_has_a_style_per_speaker():
    segments = [segment(WORDS[:8], 0.5, speaker="ANNA"), segment(WORDS[8:14], 5.0, speaker="RAVI")]
    segments[1]["text"] = "tab\there " + segments[1]["text"]
    rows = to_tsv(segments).splitlines()
    assert rows[0] == "start\tend\ttext" and rows[1].split("\t")[:2] == ["500", str(round(1000 * segments[0]["end"]))]
    assert all(len(r.split("\t")) == 3 for r in rows)
    subs = pysubs2.SSAFile.from_string(to_ass(timed_cues(segments, Layout(max_line_width=20)), Layout(20)))
    assert set(subs.styles) == {"Default", "Speaker ANNA", "Speaker RAVI"}
    assert subs.styles["Speaker ANNA"].primarycolor != subs.styles["Speaker RAVI"].primarycolor
    assert {e.style for e in subs.events} == {"Speaker ANNA", "Speaker RAVI"} and subs.events[0].name == "ANNA"
    assert all(len(line) <= 20 for e in subs.events for line in e.plaintext.split("\n"))
    plain = pysubs2.SSAFile.from_string(to_ass(timed_cues([segment(WORDS[:5], 0.0)])))
    assert set(plain.styles) == {"Default"} and plain.events[0].plaintext == " ".join(WORDS[:5])


def test_a_job_writes_the_formats_and_layout_it_was_prepared_with(provisioned, tmp_path):
    from support.sample import CLIP

    out = tmp_path / "out"
    common = [
        "--media",
        str(CLIP),
        "--asr-model",
        "tiny.en",
        "-s",
        "en",
        "--no-align",
        "--end-time",
        "25",
        "--out-dir",
        str(out),
    ]
    shaped = ["--max-line-width", "30", "--max-lines", "2", "--max-cue-duration", "4", "--min-gap", "0.1"]
    layout_id = shim(
        "prepare-job.sh", *common, *shaped, "--formats", "srt,vtt,tsv,ass,json", cache=provisioned
    ).stdout.split()[-1]
    karaoke_id = shim(
        "prepare-job.sh", *common, "--highlight-words", "--formats", "srt,vtt", cache=provisioned
    ).stdout.split()[-1]
    bad = shim("prepare-job.sh", *common, "--formats", "srt,pdf", cache=provisioned, code=2)
    assert "--formats 'srt,pdf'" in bad.stderr and len(bad.stderr.splitlines()) == 1
    job = json.loads((out / layout_id / "job.json").read_text())
    assert job["layout"] == {"max_line_width": 30, "max_lines": 2, "max_cue_duration": 4.0, "min_gap": 0.1}
    assert job["formats"] == ["srt", "vtt", "tsv", "ass", "json"]
    shim("run-pipeline.sh", "-j", layout_id, "-j", karaoke_id, "--out-dir", str(out), cache=provisioned, netns=True)

    folder = out / layout_id
    assert sorted(p.suffix for p in folder.glob("speech-en.en.*")) == [".ass", ".json", ".srt", ".tsv", ".vtt"]
    subs = list(srt.parse((folder / "speech-en.en.srt").read_text()))
    assert len(subs) > 5
    for sub in subs:
        assert (sub.end - sub.start).total_seconds() <= 4.0 + 1e-3
        assert all(len(line) <= 30 for line in sub.content.split("\n")) and len(sub.content.split("\n")) <= 2
    for a, b in zip(subs, subs[1:]):
        assert (b.start - a.end).total_seconds() >= 0.1 - 1e-3
    assert len(webvtt.read(str(folder / "speech-en.en.vtt")).captions) == len(subs)
    assert len(pysubs2.load(str(folder / "speech-en.en.ass")).events) == len(subs)
    rows = (folder / "speech-en.en.tsv").read_text().splitlines()
    assert rows[0] == "start\tend\ttext" and len(rows) > 2

    karaoke = list(srt.parse((out / karaoke_id / "speech-en.en.srt").read_text()))
    words = sum(len(visible(k.content).split()) for k in karaoke if k.content.count("<u>") == 1)
    assert all(k.content.count("<u>") == 1 for k in karaoke) and words > len(karaoke)
    assert len(webvtt.read(str(out / karaoke_id / "speech-en.en.vtt")).captions) == len(karaoke)
