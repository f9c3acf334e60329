"""The diarize stage run as the runner runs it (venv/whisperx, the offline environment, a network namespace) on
community-1-shaped repos built here (tests/support/tiny_diarization.py) in a hub-layout cache: random weights for
the plumbing and the refusals, real weights (whisperx's segmentation + resemblyzer's encoder) for behaviour on an
espeak-ng conversation of a male and a female voice."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from offline_speech.schema import read_transcript
from offline_speech.util import write_json
from support.shell import venv_python
from support.tiny_diarization import (
    COMMIT,
    CONVERSATION,
    ENROL,
    FEMALE,
    MALE,
    RATE,
    build_repo,
    conversation,
    der,
    place_in_cache,
    run_stage_process,
    speak,
    transcript,
    wav_seconds,
    write_wav,
)

ANONYMOUS = re.compile(r"SPEAKER_\d\d")


@pytest.fixture(scope="module")
def random_cache(tmp_path_factory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("diarize-random")
    return work / "cache", place_in_cache(build_repo(work / "built"), work / "cache")


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("diarize-real")
    return work / "cache", place_in_cache(build_repo(work / "built", real=True), work / "cache")


def run_stage(cache: Path, spec: dict, jobs: list[dict], work: Path, trace: Path | None = None) -> list[dict]:
    """Run the stage in a network namespace (under strace when `trace` is given); returns its events."""
    request = work / "request.json"
    write_json(request, {"schema": 1, "stage": "diarize", "options": {}, "models": {"diarization": spec}, "jobs": jobs})
    strace = ["strace", "-f", "-e", "trace=connect,sendto,sendmsg", "-o", str(trace)] if trace else []
    proc = run_stage_process(
        ["unshare", "-n", *strace, str(venv_python("whisperx")), "-m", "offline_speech.stages.diarize", str(request)],
        cache,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def job_entry(work: Path, name: str, audio: Path, spans, offset: float = 0.0, **options) -> dict:
    (work / name).mkdir()
    end = wav_seconds(audio)
    transcript(work / name / "aligned.json", spans, offset, end)
    return {
        "id": name,
        "dir": str(work / name),
        "job": {"clip": {"start": offset, "end": offset + end}},
        "inputs": {"audio": str(audio), "transcript": str(work / name / "aligned.json")},
        "outputs": {"transcript": str(work / name / "diarized.json"), "speakers": str(work / name / "speakers.json")},
        "diarize": options,
    }


def bad_speaker_folders(root: Path) -> dict[str, tuple[Path, str]]:
    """Speakers folders the stage must refuse (job id -> (folder, what the one-line error says))."""
    sample = speak(MALE, "Hello there, this is a sample.")
    folders = {
        "empty": "holds no samples",
        "notaudio": "notes.txt: not audio",
        "short": "bob.wav: 0.50 s of audio",
        "case": "differ only in case",
    }
    for name in folders:
        (root / name).mkdir(parents=True)
    write_wav(root / "notaudio" / "anna.wav", sample)
    (root / "notaudio" / "notes.txt").write_text("anna speaks first\n")
    write_wav(root / "short" / "bob.wav", sample[:RATE])  # 0.5 s of 16-bit samples
    write_wav(root / "case" / "Anna_1.wav", sample)
    write_wav(root / "case" / "anna_2.wav", sample)
    return {name: (root / name, text) for name, text in folders.items()}


def test_random_weights_two_jobs_one_load_every_segment_and_word_has_a_speaker_and_no_network(random_cache, tmp_path):
    cache, spec = random_cache
    audio = tmp_path / "short.wav"
    spans = conversation(audio, CONVERSATION[:2])
    jobs = [job_entry(tmp_path, "a", audio, spans), job_entry(tmp_path, "b", audio, spans, offset=30.0, max_speakers=2)]
    bad = bad_speaker_folders(tmp_path / "speakers")
    bad_jobs = [job_entry(tmp_path, name, audio, spans, speakers_dir=str(folder)) for name, (folder, _) in bad.items()]
    bad_jobs.append(job_entry(tmp_path, "hints", audio, spans, min_speakers=3, max_speakers=2))
    bad["hints"] = (None, "need 1 <= min_speakers <= max_speakers")
    trace = tmp_path / "trace"
    events = run_stage(cache, spec, jobs + bad_jobs, tmp_path, trace=trace)
    done = [e["job"] for e in events if e["event"] == "job_done"]
    failed = {e["job"]: e["error"] for e in events if e["event"] == "job_failed"}
    assert done == ["a", "b"] and sorted(failed) == sorted(bad), events
    for name, (_, text) in bad.items():  # one line each, saying what is wrong; nothing written
        assert text in failed[name] and "\n" not in failed[name], failed[name]
        assert {p.name for p in (tmp_path / name).iterdir()} == {"aligned.json"}
    assert [e["key"] for e in events if e["event"] == "model_loaded"] == [spec["key"]]
    assert events[-1]["event"] == "finished" and events[-1]["model_loads"] == 1
    traced = trace.read_text().splitlines()
    assert any("+++ exited with 0 +++" in line for line in traced)  # strace did follow the process
    calls = [line for line in traced if re.search(r"\b(connect|sendto|sendmsg)\(", line)]
    assert calls == [], calls  # no DNS lookup (a resolver connects or sends), no connection attempt at all
    for job in jobs:
        doc = read_transcript(Path(job["outputs"]["transcript"]))
        assert doc["stage"] == "diarize" and doc["diarization"]["commit"] == COMMIT
        words = [w for s in doc["segments"] for w in s["words"]]
        assert words and all(ANONYMOUS.fullmatch(x["speaker"]) for x in doc["segments"] + words)
        report = json.loads(Path(job["outputs"]["speakers"]).read_text())
        assert {s["label"] for s in report["speakers"]} >= {x["speaker"] for x in words}
        assert all(t["start"] >= job["job"]["clip"]["start"] for t in report["turns"])  # media times


@pytest.mark.parametrize("damage", ["flip", "truncate", "remove"])
def test_a_snapshot_that_does_not_match_the_lock_is_refused_before_anything_is_unpickled(
    random_cache, tmp_path, damage
):
    cache, spec = random_cache
    copy = tmp_path / "cache"
    subprocess.run(["cp", "-a", str(cache), str(copy)], check=True)
    snapshot = Path(spec["path"].replace(str(cache), str(copy)))
    target = snapshot / "embedding" / "pytorch_model.bin"
    blob = target.resolve()
    data = bytearray(blob.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 1
        blob.write_bytes(bytes(data))
    elif damage == "truncate":
        blob.write_bytes(bytes(data[:-1]))
    else:
        target.unlink()
    audio = tmp_path / "a.wav"
    spans = conversation(audio, CONVERSATION[:1])
    events = run_stage(copy, {**spec, "path": str(snapshot)}, [job_entry(tmp_path, "a", audio, spans)], tmp_path)
    failed = [e for e in events if e["event"] == "job_failed"]
    assert not any(e["event"] == "model_loaded" for e in events)
    assert len(failed) == 1 and "embedding/pytorch_model.bin" in failed[0]["error"] and "--repair" in failed[0]["error"]
    assert not (tmp_path / "a" / "diarized.json").exists()


def test_real_weights_split_a_male_and_a_female_voice_and_name_them_from_enrolled_samples(real_cache, tmp_path):
    cache, spec = real_cache
    audio = tmp_path / "meeting.wav"
    spans = conversation(audio, CONVERSATION)
    both, ravi_only = tmp_path / "speakers-both", tmp_path / "speakers-ravi"
    both.mkdir()
    ravi_only.mkdir()
    for voice, person in ((MALE, "ravi"), (FEMALE, "anna")):
        for i, sentence in enumerate(ENROL[voice], 1):  # other sentences than the meeting's
            write_wav(both / f"{person}_{i}.wav", speak(voice, sentence))
    # one sample as m4a, as users record them (decoded with PyAV)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(both / "anna_2.wav"), "-c:a", "aac", str(both / "anna_2.m4a")], check=True
    )
    (both / "anna_2.wav").unlink()
    (ravi_only / "ravi.wav").write_bytes((both / "ravi_1.wav").read_bytes())
    # resemblyzer's embeddings are non-negative: its threshold sits higher than WeSpeaker's default
    jobs = [
        job_entry(
            tmp_path,
            "named",
            audio,
            spans,
            offset=12.0,
            min_speakers=1,
            max_speakers=4,
            speakers_dir=str(both),
            speaker_threshold=0.8,
            enrolment_cache=str(tmp_path / "named" / "enrolment.json"),
        ),
        job_entry(
            tmp_path,
            "partly",
            audio,
            spans,
            speakers_dir=str(ravi_only),
            speaker_threshold=0.8,
            enrolment_cache=str(tmp_path / "partly" / "enrolment.json"),
        ),
    ]
    events = run_stage(cache, spec, jobs, tmp_path)
    assert [e["event"] for e in events].count("job_done") == 2, events
    assert events[-1]["model_loads"] == 1

    report = json.loads(Path(jobs[0]["outputs"]["speakers"]).read_text())
    assert sorted(s["name"] for s in report["speakers"]) == ["anna", "ravi"], report["enrolled"]
    reference = [(a, b, voice) for a, b, voice, _ in spans]
    hypothesis = [(t["start"] - 12.0, t["end"] - 12.0, t["speaker"]) for t in report["turns"]]
    assert der(reference, hypothesis) <= 0.1
    who = {MALE: "ravi", FEMALE: "anna"}
    doc = read_transcript(Path(jobs[0]["outputs"]["transcript"]))
    for seg, (_, _, voice, _) in zip(doc["segments"], spans):
        assert seg["speaker"] == who[voice] and {w["speaker"] for w in seg["words"]} == {who[voice]}
    enrolled = {e["name"]: e for e in report["enrolled"]}
    for person, other in (("anna", "ravi"), ("ravi", "anna")):  # the margin the 0.8 threshold sits in
        assert enrolled[person]["score"] >= 0.88 and enrolled[person]["scores"][enrolled[other]["speaker"]] <= 0.75, (
            enrolled
        )
    assert report["enrolment"]["samples"] == 4 and report["enrolment"]["embedded"] == 4
    cached = json.loads(Path(jobs[0]["diarize"]["enrolment_cache"]).read_text())
    assert cached["model_commit"] == COMMIT and len(cached["embeddings"]) == 4

    partly = json.loads(Path(jobs[1]["outputs"]["speakers"]).read_text())
    names = sorted(s["name"] for s in partly["speakers"])
    assert names[1] == "ravi" and ANONYMOUS.fullmatch(names[0]), partly
    assert partly["enrolment"]["embedded"] == 0  # the same file (by sha256) was embedded for the first job
    doc = read_transcript(Path(jobs[1]["outputs"]["transcript"]))
    for seg, (_, _, voice, _) in zip(doc["segments"], spans):
        assert (seg["speaker"] == "ravi") == (voice == MALE)
