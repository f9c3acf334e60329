"""run-pipeline.sh as a user runs it: models provisioned from the test hub, then real jobs on the committed speech
clip with the real tiny.en, every stage a real subprocess in its venv, offline runs inside `unshare -n`."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from offline_speech.schema import read_transcript
from offline_speech.verified import VerifiedIndex
from support import ROOT
from support import universe as hub_universe
from support.sample import CLIP, SENTENCES, assert_monotonic, parse_srt, text_between
from support.shell import prepare, run_pipeline, shim_env
from support.wer import word_error_rate

TINY = "faster-whisper-tiny.en"


def test_end_to_end_offline_in_a_network_namespace(provisioned, tmp_path):
    out = tmp_path / "out"
    job_id = prepare(out, provisioned, "-s", "en", "--no-align", netns=True)
    proc = run_pipeline(out, provisioned, job_id, netns=True)
    folder = out / job_id
    srt = folder / "speech-en.en.srt"
    assert str(srt) in proc.stdout
    cues = parse_srt(srt)
    assert_monotonic(cues, 0.0, 75.3)
    hypothesis = " ".join(c[2] for c in cues)
    reference = (ROOT / "samples" / "speech-en.txt").read_text()
    assert word_error_rate(reference, hypothesis) <= 0.15, hypothesis
    assert (folder / "speech-en.en.vtt").read_text().startswith("WEBVTT\n\n")
    assert word_error_rate(reference, (folder / "speech-en.en.txt").read_text()) <= 0.15
    doc = read_transcript(folder / "speech-en.en.json")  # validates the schema: times in order, inside the clip
    assert doc["language"] == "en" and doc["model"]["commit"] == hub_universe.TINY_EN_COMMIT
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "done"
    assert [manifest["stages"][s]["status"] for s in ("demux", "asr", "align", "outputs")] == ["done"] * 4
    assert manifest["stages"]["asr"]["models"] == {TINY: hub_universe.TINY_EN_COMMIT}
    assert "not a wav2vec2 alignment: the job was prepared with --no-align" in " ".join(manifest["warnings"])
    for stage in ("demux", "asr", "align", "outputs"):
        assert (folder / "logs" / f"{stage}.log").stat().st_size > 0


def test_clip_times_are_media_positions_and_names_may_be_odd(provisioned, tmp_path):
    odd = tmp_path / "-it's my ☕ talk.opus"
    shutil.copy(CLIP, odd)
    start, end = SENTENCES[3]["start"] - 0.35, SENTENCES[5]["end"] + 0.35
    out = tmp_path / "out"
    job_id = prepare(
        out,
        provisioned,
        "-s",
        "en",
        "--no-align",
        "--start-time",
        f"{start:.2f}",
        "--end-time",
        f"{end:.2f}",
        media=odd,
    )
    run_pipeline(out, provisioned, job_id)
    cues = parse_srt(out / job_id / "-it's my ☕ talk.en.srt")
    assert_monotonic(cues, start - 0.01, end)
    assert cues[0][0] >= start - 0.01 and cues[0][0] < SENTENCES[3]["start"] + 1.0
    assert word_error_rate(text_between(start, end), " ".join(c[2] for c in cues)) <= 0.15


def test_a_second_run_skips_every_stage_and_restart_redoes_them(provisioned, tmp_path):
    out = tmp_path / "out"
    job_id = prepare(out, provisioned, "-s", "en", "--no-align", "--end-time", "8.8")
    run_pipeline(out, provisioned, job_id)
    srt = (out / job_id / "speech-en.en.srt").read_text()
    again = run_pipeline(out, provisioned, job_id)
    assert again.stderr.count("up to date, skipped") == 4
    assert (out / job_id / "speech-en.en.srt").read_text() == srt
    (out / job_id / "speech-en.en.srt").write_text("edited\n")  # an output changed: only the last stage reruns
    third = run_pipeline(out, provisioned, job_id)
    assert third.stderr.count("up to date, skipped") == 3 and "outputs done" in third.stderr
    assert (out / job_id / "speech-en.en.srt").read_text() == srt
    restarted = run_pipeline(out, provisioned, job_id, extra=("--restart",))
    assert "skipped" not in restarted.stderr and (out / job_id / "speech-en.en.srt").read_text() == srt


def _wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def _stage_status(folder: Path, stage: str) -> str | None:
    try:
        return json.loads((folder / "manifest.json").read_text())["stages"].get(stage, {}).get("status")
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_resume_after_the_runner_is_stopped_during_asr(provisioned, tmp_path, sig):
    out = tmp_path / "out"
    job_id = prepare(out, provisioned, "-s", "en", "--no-align")
    folder = out / job_id
    cmd = [str(ROOT / "run-pipeline.sh"), "-j", job_id, "--out-dir", str(out)]
    runner = subprocess.Popen(cmd, env=shim_env(provisioned), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _stage_status(folder, "asr") == "running")
    asr_pid = json.loads((folder / "manifest.json").read_text())["stages"]["asr"]["pid"]
    runner.send_signal(sig)
    _, stderr = runner.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert runner.returncode == 130 and "run the same command again to resume" in stderr
        assert _stage_status(folder, "asr") == "interrupted"
    else:
        assert runner.returncode == -signal.SIGKILL
    _wait_for(
        lambda: not Path(f"/proc/{asr_pid}").exists() or "Z" in Path(f"/proc/{asr_pid}/stat").read_text().split()[2], 10
    )
    assert not (folder / "speech-en.en.srt").exists()
    demux_log = (folder / "logs" / "demux.log").read_text()
    resumed = run_pipeline(out, provisioned, job_id)
    assert f"{job_id}: demux up to date, skipped" in resumed.stderr
    assert f"{job_id}: asr done" in resumed.stderr
    assert (folder / "logs" / "demux.log").read_text() == demux_log  # demux did not run again
    assert json.loads((folder / "manifest.json").read_text())["status"] == "done"
    reference = (ROOT / "samples" / "speech-en.txt").read_text()
    assert word_error_rate(reference, (folder / "speech-en.en.txt").read_text()) <= 0.15


def test_several_jobs_in_one_call_load_the_model_once(provisioned, tmp_path):
    out = tmp_path / "out"
    bounds = [(0.0, 8.83), (8.83, 18.59), (18.59, 28.46)]
    ids = [
        prepare(out, provisioned, "-s", "en", "--no-align", "--start-time", str(a), "--end-time", str(b))
        for a, b in bounds
    ]
    run_pipeline(out, provisioned, *ids)
    pids = set()
    for job_id, (a, b) in zip(ids, bounds):
        log = (out / job_id / "logs" / "asr.log").read_text()
        loads = re.findall(r"model loaded: faster-whisper-tiny\.en .*\[pid (\d+)\]", log)
        assert len(loads) == 1, log
        pids.add(loads[0])
        assert "model loads in this process: 1; jobs in this process: 3" in log
        cues = parse_srt(out / job_id / "speech-en.en.srt")
        assert_monotonic(cues, a - 0.01, b)
        assert word_error_rate(text_between(a, b), " ".join(c[2] for c in cues)) <= 0.15
    assert len(pids) == 1  # the same process served all three jobs


# ---- bad input: exit 2, one clear line per problem, nothing run ---------------------------------------------


def _assert_refused(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_job_id(provisioned, tmp_path):
    proc = run_pipeline(tmp_path / "out", provisioned, "20260101-000000.000-nothing-0000", code=None)
    _assert_refused(proc, "unknown job id")


@pytest.mark.parametrize("bad", ["..", "-rf", "", "a b"])
def test_job_ids_with_dots_or_odd_characters_are_refused(provisioned, tmp_path, bad):
    proc = run_pipeline(tmp_path / "out", provisioned, bad, code=None)
    _assert_refused(proc, "not a job id")


@pytest.mark.parametrize(
    "bad, says",
    [
        ("{tmp}/etc", "job.json is corrupt"),
        ("a/b", "no prepared job there"),
        ("../x-not-a-job", "no prepared job there"),
    ],
)
def test_paths_are_job_folders_and_must_hold_a_prepared_job(provisioned, tmp_path, bad, says):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "job.json").write_text("{}")
    proc = run_pipeline(tmp_path / "out", provisioned, bad.format(tmp=tmp_path), code=None)
    _assert_refused(proc, says)


def test_corrupt_job_json(provisioned, tmp_path):
    out = tmp_path / "out"
    job_id = prepare(out, provisioned, "-s", "en", "--no-align", "--end-time", "4")
    (out / job_id / "job.json").write_text('{"schema": 1, "id": ')
    _assert_refused(run_pipeline(out, provisioned, job_id, code=None), "job.json is corrupt")
    assert not (out / job_id / "manifest.json").exists()


def test_media_changed_after_prepare(provisioned, tmp_path):
    media = tmp_path / "talk.opus"
    shutil.copy(CLIP, media)
    out = tmp_path / "out"
    job_id = prepare(out, provisioned, "-s", "en", "--no-align", "--end-time", "4", media=media)
    with open(media, "r+b") as f:
        f.seek(5000)
        f.write(b"\0\0\0\0")
    _assert_refused(run_pipeline(out, provisioned, job_id, code=None), "changed since the job was prepared")
    media.unlink()
    _assert_refused(run_pipeline(out, provisioned, job_id, code=None), "is gone")
    assert not (out / job_id / "work").exists()


def test_model_missing_from_the_cache_names_the_fix(tmp_path):
    out, empty_cache = tmp_path / "out", tmp_path / "empty-cache"
    job_id = prepare(out, empty_cache, "-s", "en", "--end-time", "4")
    proc = run_pipeline(out, empty_cache, job_id, code=None)
    _assert_refused(
        proc,
        "model faster-whisper-tiny.en is missing",
        "./cache-models.sh --whisperx --asr-model tiny.en",
        "./cache-models.sh --align --languages en (or prepare the job with --no-align)",
    )
    assert not (out / job_id / "work").exists()


def test_a_failing_stage_exits_1_naming_the_stage_and_its_log(provisioned, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(provisioned, cache, symlinks=True)
    blob = next(p for p in (cache / "huggingface" / "hub").rglob("blobs/*") if p.stat().st_size > 10_000_000)
    data = bytearray(blob.read_bytes())
    data[: 1 << 20] = bytes(1 << 20)  # same size, so the cache looks complete; the weights are garbage
    blob.write_bytes(bytes(data))
    index = VerifiedIndex(cache)  # damage the cached check cannot see (bit rot changes no stat): the stage fails
    index.record(blob, blob.name)
    index.save()
    out = tmp_path / "out"
    job_id = prepare(out, cache, "-s", "en", "--no-align", "--end-time", "4")
    proc = run_pipeline(out, cache, job_id, code=1)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: job {job_id}: stage asr: could not load {TINY}")
    assert str(out / job_id / "logs" / "asr.log") in last
    manifest = json.loads((out / job_id / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["stages"]["asr"]["status"] == "failed"
    assert manifest["stages"]["demux"]["status"] == "done" and "outputs" not in manifest["stages"]
