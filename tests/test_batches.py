"""Batches as a user makes them: prepare-job on a folder (and a list), what is not media skipped and listed, the same
command again reusing the jobs it prepared, cache-models --batch, run-pipeline -b running every job with one model
load per stage, and --status right before, during and after."""

from __future__ import annotations

import fcntl
import json
import subprocess
from pathlib import Path

import pytest

from support.sample import CLIP
from support.shell import shim

TINY = "faster-whisper-tiny.en"


def cut(dest: Path, start: float, seconds: float = 3.0) -> Path:
    """A few seconds of the committed speech clip (different bytes for each start), by the ffmpeg CLI."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-ss",
            str(start),
            "-t",
            str(seconds),
            "-i",
            str(CLIP),
            "-c:a",
            "libopus",
            dest,
        ],
        check=True,
    )
    return dest


def prepare(out: Path, cache: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    return shim(
        "prepare-job.sh",
        "--asr-model",
        "tiny.en",
        "-s",
        "en",
        "--no-align",
        "--out-dir",
        str(out),
        *args,
        cache=cache,
        code=code,
    )


def batch_record(out: Path, batch_id: str) -> dict:
    return json.loads((out / "batches" / f"{batch_id}.json").read_text())


@pytest.fixture()
def archive(tmp_path) -> Path:
    folder = tmp_path / "archive"
    cut(folder / "one.opus", 0.5)
    cut(folder / "two.opus", 10.0)
    cut(folder / "more" / "three.opus", 20.0)
    (folder / "notes.txt").write_text("not media\n")
    cut(folder / ".hidden.opus", 30.0)  # hidden files are left out, as ls leaves them
    return folder


def test_a_folder_is_a_batch_whose_non_media_is_skipped_and_a_rerun_reuses_its_jobs(provisioned, archive, tmp_path):
    out = tmp_path / "out"
    flat = prepare(out, provisioned, "--media", str(archive))
    batch_id = flat.stdout.strip().splitlines()[-1]
    record = batch_record(out, batch_id)
    assert record["kind"] == "offline-speech/batch" and len(record["jobs"]) == 2
    media = [json.loads((out / j / "job.json").read_text())["media"]["path"] for j in record["jobs"]]
    assert [Path(m).name for m in media] == ["one.opus", "two.opus"]
    assert [Path(s["path"]).name for s in record["skipped"]] == ["notes.txt"]
    assert f"skipped: {archive / 'notes.txt'}: " in flat.stderr
    assert record["options"]["asr_model"] == "tiny.en" and record["options"]["source"] == "en"

    deep = prepare(out, provisioned, "--media", str(archive), "--recursive", "--json")
    again = json.loads(deep.stdout)
    assert again["id"] != batch_id and len(again["jobs"]) == 3
    assert again["jobs"][:2] == record["jobs"] and again["reused"] == record["jobs"]  # same files, same settings
    assert sorted(p.name for p in out.iterdir() if p.name != "batches") == sorted(again["jobs"])

    other = prepare(out, provisioned, "--media", str(archive), "--end-time", "2")  # other settings: new jobs
    assert not set(batch_record(out, other.stdout.split()[-1])["jobs"]) & set(record["jobs"])


def test_a_media_list_and_bad_input(provisioned, archive, tmp_path):
    out = tmp_path / "out"
    listing = archive / "files.txt"
    listing.write_text("# two of them\none.opus\n\nmore/three.opus\nmissing.opus\n")
    proc = prepare(out, provisioned, "--media-list", str(listing))
    record = batch_record(out, proc.stdout.split()[-1])
    names = [Path(json.loads((out / j / "job.json").read_text())["media"]["path"]).name for j in record["jobs"]]
    assert names == ["one.opus", "three.opus"]
    assert record["skipped"] == [{"path": str(archive / "missing.opus"), "why": "no such file"}]

    none = prepare(out, provisioned, "--media", str(archive / "notes.txt"), "--media", str(archive / "nope"), code=2)
    assert none.stderr.startswith("error: no media to prepare") and len(none.stderr.splitlines()) == 1
    assert prepare(out, provisioned, code=2).stderr.startswith("error: Missing option '--media'")
    bad = prepare(out, provisioned, "--media", str(archive), "--end-time", "99", code=2)  # past every file's end
    assert "past the end of the media" in bad.stderr and len(bad.stderr.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == sorted([*record["jobs"], "batches"])  # nothing more was written


def test_a_batch_runs_with_one_model_load_per_stage_and_status_follows_it(provisioned, archive, tmp_path):
    out = tmp_path / "out"
    batch_id = prepare(out, provisioned, "--media", str(archive), "--recursive").stdout.split()[-1]
    jobs = batch_record(out, batch_id)["jobs"]

    fetch = shim("cache-models.sh", "--batch", batch_id, "--out-dir", str(out), "--json", cache=provisioned, netns=True)
    assert [(r["key"], r["message"]) for r in json.loads(fetch.stdout)["results"]] == [(TINY, "cached")]

    status = json.loads(
        shim("run-pipeline.sh", "-b", batch_id, "--out-dir", str(out), "--status", "--json", cache=provisioned).stdout
    )
    assert [j["status"] for j in status["jobs"]] == ["waiting"] * 3 and status["counts"]["waiting"] == 3

    run = shim("run-pipeline.sh", "-b", batch_id, "--out-dir", str(out), cache=provisioned, netns=True)
    for job_id, name in zip(jobs, ("one", "two", "three")):
        assert (out / job_id / f"{name}.en.srt").read_text().strip(), run.stdout
        assert f"{job_id}: done" in run.stdout
    log = (out / jobs[0] / "logs" / "asr.log").read_text()
    assert "model loads in this process: 1; jobs in this process: 3" in log

    lines = shim("run-pipeline.sh", "-b", batch_id, "--out-dir", str(out), "--status", cache=provisioned).stdout
    assert lines.splitlines()[-1] == "done 3, running 0, failed 0, waiting 0"
    again = shim("run-pipeline.sh", "-b", batch_id, "--out-dir", str(out), cache=provisioned)
    assert "3 of 3 jobs are done or being run: left out" in again.stderr and "done" not in again.stdout

    # one job stopped by a crash (its manifest says running, nobody holds its lock), one being run elsewhere
    manifest = out / jobs[1] / "manifest.json"
    doc = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(doc | {"status": "running"}))
    with open(out / jobs[2] / ".run.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        status = json.loads(
            shim(
                "run-pipeline.sh", "-b", batch_id, "--out-dir", str(out), "--status", "--json", cache=provisioned
            ).stdout
        )
        assert [(j["status"], j["detail"]) for j in status["jobs"]] == [
            ("done", ""),
            ("waiting", "interrupted"),
            ("running", ""),
        ]
        resumed = shim("run-pipeline.sh", "-b", batch_id, "--out-dir", str(out), cache=provisioned, netns=True)
    assert "2 of 3 jobs are done or being run: left out" in resumed.stderr
    assert f"{jobs[1]}: done" in resumed.stdout and jobs[2] not in resumed.stdout
