"""--diarize jobs through the whole toolkit, as a user runs them: prepare-job.sh, then run-pipeline.sh offline in a
network namespace, on community-1-shaped repos built here (tests/support/tiny_diarization.py), served by the test
hub as the gated catalog repo and provisioned by cache-models.sh with a token.

Random weights (the real loader, meaningless speakers): two jobs with one model load, a speaker label in every
output. Real weights (whisperx's trained segmentation + resemblyzer's trained encoder): an espeak-ng meeting of a
male and a female voice is split into its two voices (DER <= 0.1), the enrolled samples name them in the SRT, VTT,
JSON and TXT, the run prints each person's score, and a subtitle job's French documents carry the same names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from offline_speech.catalog import load_catalog
from offline_speech.schema import read_transcript
from support.builders import tiny_translator
from support.sample import CLIP, parse_srt
from support.shell import prepare, provision, run_pipeline, shim
from support.tiny_diarization import ENROL, FEMALE, MALE, REPO, build_repo, conversation, der, speak, write_wav

KEY = "pyannote-speaker-diarization-community-1"
NAMES = {MALE: "ravi", FEMALE: "anna"}
LABEL = re.compile(r"^\[(anna|ravi)\] \S")


def repo_files(built: Path) -> dict[str, bytes]:
    """A built repo as the test hub serves it."""
    return {p.relative_to(built).as_posix(): p.read_bytes() for p in built.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def diarization_cache(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("diarize-pipeline")
    files = repo_files(build_repo(work / "built"))
    cache = work / "cache"
    gated = provision(cache, "--diarization", overrides={REPO: files}, code=1)  # no token: refused, said how
    assert f"{REPO} is gated" in gated.stdout + gated.stderr
    provision(cache, "--diarization", "--whisperx", "--asr-model", "tiny.en", overrides={REPO: files}, token=True)
    assert not list(cache.rglob("README.md"))  # exactly the five files the loader reads
    return cache


def test_diarize_jobs_run_offline_with_one_load_and_label_every_output(diarization_cache, tmp_path):
    cache, out = diarization_cache, tmp_path / "out"
    ids = [
        prepare(out, cache, "-s", "en", "--no-align", "--diarize", "--max-speakers", "3", "--end-time", end)
        for end in ("9", "12")
    ]
    job = json.loads((out / ids[0] / "job.json").read_text())
    assert job["diarize"] is True and job["max_speakers"] == 3 and KEY in job["models"]
    run_pipeline(out, cache, *ids, netns=True)
    for job_id in ids:
        folder = out / job_id
        result = json.loads((folder / "speech-en.en.json").read_text())
        assert result["segments"] and all(s["speaker"].startswith("SPEAKER_") for s in result["segments"])
        assert all("speaker" in w for s in result["segments"] for w in s.get("words") or [])
        srt = (folder / "speech-en.en.srt").read_text()
        assert srt.count("[SPEAKER_") == srt.count(" --> ")  # every cue says who speaks
        txt = (folder / "speech-en.en.txt").read_text()
        assert txt.startswith("[SPEAKER_")
        report = json.loads((folder / "speech-en.speakers.json").read_text())
        assert report["speakers"] and report["model"]["key"] == KEY
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["stages"]["diarize"]["status"] == "done"
    for job_id in ids:  # one process served both jobs, loading the pipeline once
        log = (out / job_id / "logs" / "diarize.log").read_text()
        assert len(re.findall(rf"model loaded: {KEY} ", log)) == 1, log
        assert "model loads in this process: 1; jobs in this process: 2" in log


def test_a_diarize_job_needs_the_model_and_says_how_to_get_it(tmp_path, provisioned):
    out = tmp_path / "out"
    job_id = prepare(out, provisioned, "-s", "en", "--no-align", "--diarize", "--end-time", "4")
    proc = run_pipeline(out, provisioned, job_id, code=2)
    assert f"{KEY} is missing" in proc.stderr and "./cache-models.sh --diarization" in proc.stderr
    assert "accept its licence" in proc.stderr and "needs no token" in proc.stderr


@pytest.mark.parametrize(
    "files, args, says",
    [
        ({}, ["--speakers", "{dir}"], "holds no samples"),
        (None, ["--speakers", "{dir}/nowhere"], "does not exist"),
        ({"anna.txt": b"not audio at all"}, ["--speakers", "{dir}"], "anna.txt"),
        ({"anna.wav": "short"}, ["--speakers", "{dir}"], "needs at least 1 s"),
        ({"anna_1.wav": "ok", "Anna_2.wav": "ok"}, ["--speakers", "{dir}"], "differ only in case"),
        ({}, ["--min-speakers", "3", "--max-speakers", "2"], "--min-speakers 3 is more than --max-speakers 2"),
        ({}, ["--min-speakers", "0"], "are at least 1"),
        ({}, ["--speakers", "{dir}", "--speaker-threshold", "1.5"], "a cosine between 0 and 1"),
        ({}, ["--speakers-NOT-diarize"], "--speakers goes with --diarize"),
    ],
)
def test_bad_diarize_input_is_refused_at_prepare_time_and_nothing_is_written(tmp_path, files, args, says):
    folder = tmp_path / "speakers"
    if files is not None:
        folder.mkdir()
        for name, content in files.items():
            if content == "ok":
                write_wav(folder / name, speak(FEMALE, "This is a sample that is long enough to enrol a voice."))
            elif content == "short":
                write_wav(folder / name, speak(FEMALE, "Hi")[:16000])
            else:
                (folder / name).write_bytes(content)
    out = tmp_path / "out"
    if args == ["--speakers-NOT-diarize"]:
        argv = ["--speakers", str(folder)]
    else:
        argv = ["--diarize", *[a.format(dir=folder) for a in args]]
    proc = shim("prepare-job.sh", "--media", str(CLIP), "--out-dir", str(out), *argv, cache=tmp_path / "cache", code=2)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], proc.stderr
    assert not out.exists() or not any(out.iterdir())


# ---- real weights: a meeting of two voices, named from enrolled samples -------------------------------------------


@dataclass(frozen=True)
class Meeting:
    """A cache with tiny.en and the real-weight repo, the meeting (its reference turns: start, end, voice, text), the
    speakers folder, and the folder and run-pipeline.sh output of a --diarize --speakers job run on it."""

    cache: Path
    audio: Path
    spans: list
    speakers: Path
    job: Path
    run: object


@pytest.fixture(scope="module")
def meeting(tmp_path_factory) -> Meeting:
    work = tmp_path_factory.mktemp("diarize-meeting")
    cache = work / "cache"
    files = repo_files(build_repo(work / "built", real=True))
    provision(cache, "--diarization", "--whisperx", "--asr-model", "tiny.en", overrides={REPO: files}, token=True)
    audio = work / "meeting.wav"
    spans = conversation(audio)
    speakers = work / "speakers"
    speakers.mkdir()
    for voice, person in NAMES.items():
        for i, sentence in enumerate(ENROL[voice], 1):  # other sentences than the meeting's
            write_wav(speakers / f"{person}_{i}.wav", speak(voice, sentence))
    out = work / "out"
    # resemblyzer's embeddings are non-negative, so its scores sit higher than WeSpeaker's: threshold 0.8, not 0.5
    job_id = prepare(
        out,
        cache,
        "-s",
        "en",
        "--no-align",
        "--diarize",
        "--speakers",
        str(speakers),
        "--speaker-threshold",
        "0.8",
        media=audio,
    )
    return Meeting(cache, audio, spans, speakers, out / job_id, run_pipeline(out, cache, job_id, netns=True))


def reference_voice(spans, start: float, end: float) -> str | None:
    """The voice speaking through at least 80 % of the reference speech a segment overlaps (None: a mix)."""
    overlap: dict[str, float] = {}
    for a, b, voice, _ in spans:
        overlap[voice] = overlap.get(voice, 0.0) + max(0.0, min(b, end) - max(a, start))
    voice, most = max(overlap.items(), key=lambda item: item[1])
    return voice if most >= 0.8 * sum(overlap.values()) > 0 else None


def turn_speakers(names: list[str]) -> list[str]:
    """The names in order with repeats collapsed: who spoke, turn by turn."""
    return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


def test_real_weights_name_both_voices_in_every_output_of_a_job_run_through_run_pipeline(meeting):
    folder, stem = meeting.job, meeting.audio.stem
    report = json.loads((folder / f"{stem}.speakers.json").read_text())
    assert sorted(s["name"] for s in report["speakers"]) == ["anna", "ravi"], report["enrolled"]
    reference = [(a, b, voice) for a, b, voice, _ in meeting.spans]
    assert der(reference, [(t["start"], t["end"], t["speaker"]) for t in report["turns"]]) <= 0.1
    enrolled = {e["name"]: e for e in report["enrolled"]}
    for person, other in (("anna", "ravi"), ("ravi", "anna")):  # same voice >= 0.88, the other voice <= 0.75
        assert enrolled[person]["speaker"] and enrolled[person]["score"] >= 0.88, enrolled
        assert enrolled[person]["scores"][enrolled[other]["speaker"]] <= 0.75, enrolled
    for person in ("anna", "ravi"):  # printed at the end of the run, to tune --speaker-threshold by
        line = (
            f"  diarize: {person} = {enrolled[person]['speaker']} "
            f"(score {enrolled[person]['score']:.3f}, threshold 0.8)"
        )
        assert line in meeting.run.stdout.splitlines(), meeting.run.stdout

    segments = read_transcript(folder / f"{stem}.en.json")["segments"]
    judged = [(s, reference_voice(meeting.spans, s["start"], s["end"])) for s in segments]
    assert len([v for _, v in judged if v]) >= 4, segments
    for seg, voice in judged:
        assert seg["speaker"] in ("anna", "ravi")
        if voice:
            assert seg["speaker"] == NAMES[voice], (seg, voice)
    assert turn_speakers([s["speaker"] for s in segments]) == turn_speakers([NAMES[v] for _, _, v, _ in meeting.spans])
    cues = parse_srt(folder / f"{stem}.en.srt")
    assert cues and all(LABEL.match(text) for _, _, text in cues), cues
    assert turn_speakers([LABEL.match(t)[1] for _, _, t in cues]) == turn_speakers([s["speaker"] for s in segments])
    vtt = [line for line in (folder / f"{stem}.en.vtt").read_text().split("\n\n")[1:] if line.strip()]
    assert len(vtt) == len(cues) and all(LABEL.match(block.splitlines()[1]) for block in vtt), vtt
    paragraphs = (folder / f"{stem}.en.txt").read_text().strip().split("\n\n")
    assert [LABEL.match(p)[1] for p in paragraphs] == turn_speakers([s["speaker"] for s in segments]), paragraphs


def test_a_diarized_subtitle_job_labels_its_translations_as_its_source(meeting, tmp_path):
    english = [s["text"].strip() for s in read_transcript(meeting.job / "work" / "diarized.json")["segments"]]
    french = [f"Phrase numéro {i} de la réunion." for i in range(1, len(english) + 1)]
    pairs = [{"src_lang": "eng_Latn", "tgt_lang": "fra_Latn", "src": e, "tgt": f} for e, f in zip(english, french)]
    nllb = load_catalog().get("nllb-200-distilled-600M").repo
    provision(
        meeting.cache,
        "--nllb",
        "--nllb-model",
        "distilled-600M",
        overrides={nllb: tiny_translator("nllb", tmp_path / "tiny-nllb", pairs)},
    )
    out = tmp_path / "out"
    job_id = prepare(
        out,
        meeting.cache,
        "--workflow",
        "subtitle",
        "-s",
        "en",
        "-t",
        "fr",
        "--nllb-model",
        "distilled-600M",
        "--no-align",
        "--diarize",
        "--speakers",
        str(meeting.speakers),
        "--speaker-threshold",
        "0.8",
        media=meeting.audio,
    )
    run_pipeline(out, meeting.cache, job_id, netns=True)
    folder, stem = out / job_id, meeting.audio.stem
    source, translated = (read_transcript(folder / f"{stem}.{lang}.json") for lang in ("en", "fr"))
    speakers = [s["speaker"] for s in source["segments"]]
    assert set(speakers) == {"anna", "ravi"}
    assert [s["speaker"] for s in translated["segments"]] == speakers
    assert [s["text"] for s in translated["segments"]] == french
    for lang in ("en", "fr"):
        cues = parse_srt(folder / f"{stem}.{lang}.srt")
        assert all(LABEL.match(text) for _, _, text in cues), cues
        assert turn_speakers([LABEL.match(t)[1] for _, _, t in cues]) == turn_speakers(speakers)
        vtt = [b for b in (folder / f"{stem}.{lang}.vtt").read_text().split("\n\n")[1:] if b.strip()]
        assert len(vtt) == len(cues) and all(LABEL.match(b.splitlines()[1]) for b in vtt)
        paragraphs = (folder / f"{stem}.{lang}.txt").read_text().strip().split("\n\n")
        assert [LABEL.match(p)[1] for p in paragraphs] == turn_speakers(speakers)
    assert "Phrase numéro 1 de la réunion." in (folder / f"{stem}.fr.srt").read_text()
