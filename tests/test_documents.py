"""The documents stages exchange and the subtitle rules, as pure functions (the stages themselves are tested
end to end in test_pipeline.py and test_align.py)."""

from __future__ import annotations

import pytest

from offline_speech.schema import TRANSCRIPT_KIND, TRANSCRIPT_SCHEMA, SchemaError, validate_transcript
from offline_speech.stages.outputs import LINE, MAX_SECONDS, cues, timestamp, to_srt, to_vtt, wrap


def doc(segments, **extra):
    return {
        "kind": TRANSCRIPT_KIND,
        "schema": TRANSCRIPT_SCHEMA,
        "job": "j",
        "language": "en",
        "model": {},
        "warnings": [],
        "clip": {"start": 10.0, "end": 40.0},
        "segments": segments,
        **extra,
    }


def test_a_valid_transcript_passes():
    seg = {
        "start": 10.5,
        "end": 12.0,
        "text": "hello there",
        "words": [{"word": "hello", "start": 10.5, "end": 11.0}, {"word": "there", "start": 11.2, "end": 12.0}],
    }
    assert validate_transcript(doc([seg]))["segments"][0] is seg


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"kind": "other"}, "not an offline-speech transcript"),
        ({"schema": 99}, "transcript schema 99"),
        ({"segments": [{"start": 5.0, "end": 6.0, "text": "x"}]}, "outside the clip"),
        ({"segments": [{"start": 12.0, "end": 11.0, "text": "x"}]}, "out of order"),
        (
            {"segments": [{"start": 12.0, "end": 13.0, "text": "x"}, {"start": 11.0, "end": 12.0, "text": "y"}]},
            "out of order",
        ),
        ({"segments": [{"start": 11.0, "end": float("nan"), "text": "x"}]}, "not a finite number"),
        (
            {
                "segments": [
                    {"start": 11.0, "end": 12.0, "text": "x", "words": [{"word": "x", "start": 13.0, "end": 13.5}]}
                ]
            },
            "word 0",
        ),
        ({"segments": [{"start": 11.0, "end": 12.0}]}, "needs start, end and text"),
        ({"language": None}, "field 'language'"),
    ],
)
def test_invalid_transcripts_name_the_problem(bad, message):
    with pytest.raises(SchemaError, match=message):
        validate_transcript(
            doc([], **{k: v for k, v in bad.items() if k != "segments"})
            | ({"segments": bad["segments"]} if "segments" in bad else {})
        )


def test_timestamps():
    assert timestamp(3661.25, ",") == "01:01:01,250"
    assert timestamp(0, ".") == "00:00:00.000" and timestamp(-1, ",") == "00:00:00,000"
    assert timestamp(59.9999, ",") == "00:01:00,000"


def test_wrap_balances_two_lines():
    assert wrap("short line") == "short line"
    text = "the quick brown fox jumps over the lazy dog near the river bank"
    a, b = wrap(text).split("\n")
    assert f"{a} {b}" == text and max(len(a), len(b)) <= LINE and abs(len(a) - len(b)) < 12


def test_long_segments_become_cues_within_limits_in_order():
    words = [{"word": f"word{i}.", "start": 10 + i * 0.5, "end": 10 + i * 0.5 + 0.4} for i in range(40)]
    plain = [{"start": 30.0, "end": 39.0, "text": " ".join(f"w{i}" for i in range(60))}]
    items = cues([{"start": 10.0, "end": 29.9, "text": " ".join(w["word"] for w in words), "words": words}] + plain)
    assert " ".join(t for _, _, t in items).split() == [w["word"] for w in words] + plain[0]["text"].split()
    last = 0.0
    for start, end, text in items:
        assert last <= start < end and len(text) <= 2 * LINE and end - start <= MAX_SECONDS + 1e-6
        last = end
    assert items[-1][1] == pytest.approx(39.0, abs=0.2)


def test_srt_and_vtt_render_the_same_cues():
    items = [(1.0, 2.5, "one"), (3.0, 4.0, "two words")]
    assert to_srt(items) == "1\n00:00:01,000 --> 00:00:02,500\none\n\n2\n00:00:03,000 --> 00:00:04,000\ntwo words\n"
    assert to_vtt(items) == "WEBVTT\n\n00:00:01.000 --> 00:00:02.500\none\n\n00:00:03.000 --> 00:00:04.000\ntwo words\n"
