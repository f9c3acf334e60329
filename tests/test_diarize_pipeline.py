"""--diarize jobs through the whole toolkit: a community-1-shaped repo (random weights, the real loader) served
gated by the test hub, provisioned by cache-models.sh with a token, two jobs run offline in a network namespace
with one model load; speaker labels in every output. (Naming with real weights: tests/test_diarize.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from support.sample import CLIP
from support.shell import prepare, provision, run_pipeline, shim
from support.tiny_diarization import REPO, build_repo

KEY = "pyannote-speaker-diarization-community-1"


@pytest.fixture(scope="module")
def diarization_cache(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("diarize-pipeline")
    built = build_repo(work / "built")
    files = {p.relative_to(built).as_posix(): p.read_bytes() for p in built.rglob("*") if p.is_file()}
    cache = work / "cache"
    gated = provision(cache, "--diarization", overrides={REPO: files}, code=1)  # no token: refused, said how
    assert f"{REPO} is gated" in gated.stdout + gated.stderr
    provision(cache, "--diarization", "--whisperx", "--asr-model", "tiny.en", overrides={REPO: files}, token=True)
    assert not list(cache.rglob("README.md"))  # exactly the five files the loader reads
    return cache


def test_diarize_jobs_run_offline_with_one_load_and_label_every_output(diarization_cache, tmp_path):
    cache, out = diarization_cache, tmp_path / "out"
    ids = [prepare(out, cache, "-s", "en", "--no-align", "--diarize", "--max-speakers", "3", "--end-time", end)
           for end in ("9", "12")]
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


@pytest.mark.parametrize("files, args, says", [
    ({}, ["--speakers", "{dir}"], "holds no samples"),
    (None, ["--speakers", "{dir}/nowhere"], "does not exist"),
    ({"anna.txt": b"not audio at all"}, ["--speakers", "{dir}"], "anna.txt"),
    ({"anna.wav": "short"}, ["--speakers", "{dir}"], "needs at least 1 s"),
    ({"anna_1.wav": "ok", "Anna_2.wav": "ok"}, ["--speakers", "{dir}"], "differ only in case"),
    ({}, ["--min-speakers", "3", "--max-speakers", "2"], "--min-speakers 3 is more than --max-speakers 2"),
    ({}, ["--speakers-NOT-diarize"], "--speakers goes with --diarize"),
])
def test_bad_diarize_input_is_refused_at_prepare_time_and_nothing_is_written(tmp_path, files, args, says):
    from support.tiny_diarization import FEMALE, speak, write_wav

    folder = tmp_path / "speakers"
    if files is not None:
        folder.mkdir()
        for name, content in files.items():
            if content == "ok":
                write_wav(folder / name, speak(FEMALE, "This is a sample that is long enough to enrol a voice."))
            elif content == "short":
                write_wav(folder / name, speak(FEMALE, "Hi")[: 16000])
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
