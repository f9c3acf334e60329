"""prepare-job.sh as a user runs it: real media made with ffmpeg, the shim as a subprocess."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from offline_speech.jobs import JobError, decide_backend, parse_time
from offline_speech.schema import JOB_ID_RE, SchemaError, read_job
from support.shell import shim, venv_python


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    files = {
        "tone": d / "tone.wav",
        "video": d / "talk.mp4",
        "silent_video": d / "no-audio.mp4",
        "text": d / "notes.mp4",
        "empty": d / "empty.wav",
    }
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=4", "-ar", "16000", str(files["tone"]))
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x64:rate=5:duration=3",
        "-f",
        "lavfi",
        "-i",
        "sine=duration=3",
        "-shortest",
        "-pix_fmt",
        "yuv420p",
        str(files["video"]),
    )
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x64:rate=5:duration=2", "-pix_fmt", "yuv420p", str(files["silent_video"])
    )
    files["text"].write_text("this is not a video\n")
    files["empty"].write_bytes(b"")
    return files


def prepare(out: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    cache = out.parent / "cache"
    return shim(
        "prepare-job.sh", *args, "--out-dir", str(out), "--cache-dir", str(cache), cache=cache, code=code, timeout=60
    )


def test_prepare_writes_a_valid_job_and_prints_its_id_last(media, tmp_path):
    out = tmp_path / "out"
    proc = prepare(out, "--media", str(media["video"]), "-s", "hi", "--start-time", "0.5", "--end-time", "00:00:02.250")
    job_id = proc.stdout.strip().splitlines()[-1]
    assert JOB_ID_RE.match(job_id)
    job = read_job(out / job_id / "job.json")
    assert job.id == job_id and job.schema == 4 and job.nllb_model == "3.3B"  # schema 2 records --nllb-model
    assert job.output_stem == media["video"].stem  # schema 3 records the output names' stem
    assert job.media.sha256 == hashlib.sha256(media["video"].read_bytes()).hexdigest()
    assert abs(job.media.duration - 3.0) < 0.1 and job.media.audio_streams == 1
    assert (job.clip.start, job.clip.end) == (0.5, 2.25) and job.clip.duration == pytest.approx(1.75)
    assert job.source_language == "hi" and job.workflow == "transcribe"
    assert job.backend == "whisperx" and "linux-x86_64" in job.backend_reason
    assert job.models == {"faster-whisper-large-v3": None, "align-hi": None, "nltk-punkt_tab": None} and job.align
    assert "not cached yet" in proc.stderr  # said at prepare time, checked again by the pipeline's preflight
    assert sorted(p.name for p in out.iterdir()) == [job_id]


def test_job_ids_are_unique_and_sortable_by_time(media, tmp_path):
    out = tmp_path / "out"
    ids = [prepare(out, "--media", str(media["tone"])).stdout.split()[-1] for _ in range(3)]
    assert len(set(ids)) == 3 and ids == sorted(ids)


def test_the_committed_job_records_the_cached_model_commit(media, tmp_path, cli):
    cli.run("--whisperx", "--asr-model", "tiny.en")
    out = cli.cache.parent / "out"
    job_id = prepare(
        out, "--media", str(media["tone"]), "--asr-model", "tiny.en", "-s", "en", "--no-align"
    ).stdout.split()[-1]
    job = json.loads((out / job_id / "job.json").read_text())
    assert job["models"] == {"faster-whisper-tiny.en": "0d3d19a32d3338f10357c0889762bd8d64bbdeba"}
    assert job["warnings"] == [] and job["align"] is False


@pytest.mark.parametrize("name", ["my talk.wav", 'it\'s "quoted".wav', "вікі कथा ☕.wav", "-leading-dash.wav"])
def test_odd_file_names(media, tmp_path, name):
    odd = tmp_path / name
    odd.write_bytes(media["tone"].read_bytes())
    out = tmp_path / "out"
    job_id = prepare(out, f"--media={odd}").stdout.split()[-1]
    assert JOB_ID_RE.match(job_id)
    assert read_job(out / job_id / "job.json").media.path == str(odd)


@pytest.mark.parametrize(
    "case, args, message",
    [
        ("missing file", ["--media", "{d}/nope.wav"], "no such file"),
        ("empty file", ["--media", "{empty}"], "empty file"),
        ("text named .mp4", ["--media", "{text}"], "not a media file ffmpeg can read"),
        ("video without audio", ["--media", "{silent_video}"], "has no audio stream"),
        ("unknown language", ["--media", "{tone}", "-s", "xx"], "unknown language 'xx'"),
        ("source Whisper cannot hear", ["--media", "{tone}", "-s", "mai"], "Whisper cannot transcribe"),
        (
            "pair nobody translates",
            ["--media", "{tone}", "--workflow", "translate", "-s", "la", "-t", "en"],
            "-s la -t en",
        ),
        ("unknown target", ["--media", "{tone}", "--workflow", "translate", "-s", "hi", "-t", "en,zz"], "-t zz"),
        (
            "target equals source",
            ["--media", "{tone}", "--workflow", "subtitle", "-s", "hi", "-t", "hi"],
            "equals the source",
        ),
        ("end before start", ["--media", "{tone}", "--start-time", "3", "--end-time", "2"], "must be after"),
        ("end equals start", ["--media", "{tone}", "--start-time", "2", "--end-time", "2"], "must be after"),
        ("start past the end", ["--media", "{tone}", "--start-time", "00:01:00"], "past the end"),
        ("end past the end", ["--media", "{tone}", "--end-time", "9"], "past the end"),
        ("bad time", ["--media", "{tone}", "--start-time", "1:2:3:4"], "HH:MM:SS"),
        ("unknown workflow", ["--media", "{tone}", "--workflow", "dub"], "choose transcribe"),
        ("translate without targets", ["--media", "{tone}", "--workflow", "translate"], "needs -t"),
        ("unknown asr model", ["--media", "{tone}", "--asr-model", "huge"], "no whisperx model named"),
        (
            "English-only model, Hindi speech",
            ["--media", "{tone}", "--asr-model", "tiny.en", "-s", "hi"],
            "is English-only",
        ),
        ("mlx off Apple Silicon", ["--media", "{tone}", "--backend", "mlx"], "needs Apple Silicon"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(media, tmp_path, case, args, message):
    out = tmp_path / "out"
    fmt = {k: str(v) for k, v in media.items()} | {"d": str(tmp_path)}
    proc = prepare(out, *[a.format(**fmt) for a in args], code=2)
    assert message in proc.stderr, case
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists() or list(out.iterdir()) == []


def test_time_parsing():
    assert parse_time("90", "t") == 90
    assert parse_time("01:30", "t") == 90
    assert parse_time("01:00:05.250", "t") == 3605.25
    for bad in ("-1", "abc", "00:61", "1:2:3:4", "nan"):
        with pytest.raises(JobError):
            parse_time(bad, "t")


def test_backend_decision(tmp_path):
    """macOS arm64 with a venv/mlx that imports mlx.core -> mlx; everything else -> whisperx, with the reason."""
    mlx_python = tmp_path / "venv" / "mlx" / "bin" / "python"
    assert decide_backend("auto", "linux-x86_64", mlx_python) == ("whisperx", "auto: linux-x86_64 is not Apple Silicon")
    assert decide_backend("auto", "darwin-x86_64", mlx_python)[0] == "whisperx"
    assert decide_backend("auto", "darwin-arm64", mlx_python) == (
        "whisperx",
        "auto: darwin-arm64 but venv/mlx is missing (./venv-setup mlx)",
    )
    with pytest.raises(JobError, match="venv/mlx is missing"):
        decide_backend("mlx", "darwin-arm64", mlx_python)
    mlx_python.parent.mkdir(parents=True)
    mlx_python.symlink_to(sys.executable)  # a Python without mlx: the venv exists but cannot run MLX
    backend, reason = decide_backend("auto", "darwin-arm64", mlx_python)
    assert backend == "whisperx" and "cannot import mlx.core" in reason
    with pytest.raises(JobError, match="cannot import mlx.core"):
        decide_backend("mlx", "darwin-arm64", mlx_python)
    real = venv_python("mlx")  # mlx[cpu] on this Linux machine imports mlx.core
    assert decide_backend("auto", "darwin-arm64", real)[0] == "mlx"
    assert decide_backend("whisperx", "darwin-arm64", real)[0] == "whisperx"
    with pytest.raises(JobError, match="needs Apple Silicon"):
        decide_backend("mlx", "linux-arm64", real)
    with pytest.raises(JobError, match="needs Apple Silicon"):
        decide_backend("mlx", "darwin-x86_64", real)


def test_corrupt_job_json_is_refused(tmp_path):
    path = tmp_path / "job.json"
    for text in ("{not json", json.dumps({"schema": 99}), json.dumps({"schema": 1, "id": "x"})):
        path.write_text(text)
        with pytest.raises(SchemaError):
            read_job(path)


def test_an_auto_job_is_provisioned_with_the_aligners_of_the_languages_it_names(media, tmp_path):
    out = tmp_path / "out"
    job = read_job(out / prepare(out, "--media", str(media["tone"])).stdout.split()[-1] / "job.json")
    assert job.source_language == "auto" and job.align_languages == ("en", "hi")
    assert {"torchaudio-align-en", "align-hi", "nltk-punkt_tab"} <= set(job.models)  # cache-models --job fetches them
    job = read_job(
        out
        / prepare(out, "--media", str(media["tone"]), "--align-languages", "vi,pl-PL,ta").stdout.split()[-1]
        / "job.json"
    )
    assert job.align_languages == ("vi", "pl", "ta") and {"align-vi", "align-pl"} <= set(job.models)
    assert "no word aligner exists for 'ta'" in " ".join(job.warnings)
    proc = prepare(out, "--media", str(media["tone"]), "-s", "en", "--align-languages", "hi", code=2)
    assert "--align-languages is for -s auto" in proc.stderr


def test_an_auto_job_without_any_of_its_aligners_cached_is_stopped_by_preflight(media, tmp_path, provisioned):
    out = tmp_path / "out"
    job_id = shim(
        "prepare-job.sh",
        "--media",
        str(media["tone"]),
        "--asr-model",
        "tiny.en",
        "--out-dir",
        str(out),
        cache=provisioned,
    ).stdout.split()[-1]
    proc = shim("run-pipeline.sh", "-j", job_id, "--out-dir", str(out), cache=provisioned, code=2)
    assert f"no aligner for en, hi is cached: ./cache-models.sh --job {job_id}" in proc.stderr
