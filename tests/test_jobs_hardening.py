"""Jobs against what an adversarial user does: odd and over-long media names, two runs of one job at once, a failed
--restart, a media file rewritten with its size and mtime restored, and out dirs that are read-only (a read-only
bind mount) or full (a small tmpfs), each in a private mount namespace. Every refusal is one line and an exit code;
nothing is left behind, and the next run heals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from support import ROOT
from support.sample import CLIP
from support.shell import one_line, prepare, run_pipeline, shim_env

NAME_MAX = 255


def in_namespace(cache: Path, script: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`sh -c script` in a private mount namespace (mounts made there vanish with it); $1.. are `args`."""
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *args],
        capture_output=True,
        text=True,
        env=shim_env(cache),
        timeout=timeout,
    )


READ_ONLY = 'dir=$1; shift; mount --bind "$dir" "$dir" && mount -o remount,bind,ro "$dir" && exec "$@"'


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_odd_and_overlong_media_names_give_visible_outputs_that_fit(provisioned, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    names = ["a" * 250 + ".opus", "क" * 82 + ".opus", "...mp4", ".x.mp4"]
    for name in names:
        assert len(name.encode()) <= NAME_MAX
        shutil.copy(CLIP, media / name)
    out = tmp_path / "out"
    ids = [prepare(out, provisioned, "-s", "en", "--no-align", "--end-time", "3", media=media / n) for n in names]
    stems = [json.loads((out / i / "job.json").read_text())["output_stem"] for i in ids]
    assert stems[2:] == ["media", "x"]
    assert stems[0].startswith("a" * 150) and stems[1].startswith("क" * 50) and stems[0] != "a" * 250
    run_pipeline(out, provisioned, *ids)
    for job_id, stem in zip(ids, stems):
        outputs = sorted(p.name for p in (out / job_id).iterdir() if p.is_file())
        assert f"{stem}.en.srt" in outputs and f"{stem}.en.json" in outputs, outputs
        assert [n for n in outputs if n.startswith(".")] == [".run.lock"]  # no hidden output
        assert all(len(n.encode()) <= NAME_MAX for n in outputs)


def test_a_second_run_of_a_running_job_refuses_and_kill_9_releases_the_lock(provisioned, tmp_path):
    out = tmp_path / "out"
    job_id = prepare(out, provisioned, "-s", "en", "--no-align")
    folder = out / job_id
    first = subprocess.Popen(
        [str(ROOT / "run-pipeline.sh"), "-j", job_id, "--out-dir", str(out)],
        env=shim_env(provisioned),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while _stage_status(folder, "demux") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    second = run_pipeline(out, provisioned, job_id, code=None)
    one_line(second, f"job {job_id} is being run by another run-pipeline (pid {first.pid})")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    third = run_pipeline(out, provisioned, job_id)  # the kernel released the flock with the process
    assert f"{job_id}: done" in third.stdout and _manifest(folder)["status"] == "done"


def _stage_status(folder: Path, stage: str) -> str | None:
    try:
        return _manifest(folder)["stages"].get(stage, {}).get("status")
    except (OSError, ValueError):
        return None


def test_a_failed_restart_lists_no_outputs_of_the_run_before(provisioned, tmp_path):
    out = tmp_path / "out"
    job_id = prepare(out, provisioned, "-s", "en", "--no-align", "--end-time", "3")
    folder = out / job_id
    run_pipeline(out, provisioned, job_id)
    assert _manifest(folder)["outputs"]
    (folder / "speech-en.en.srt").unlink()
    (folder / "speech-en.en.srt").mkdir()  # the outputs stage cannot write it: the restarted run fails there
    failed = run_pipeline(out, provisioned, job_id, code=1, extra=("--restart", "--json"))
    summary = json.loads(failed.stdout)["jobs"][0]
    assert summary["status"] == "failed" and summary["outputs"] == {}
    manifest = _manifest(folder)
    assert manifest["status"] == "failed" and "outputs" not in manifest and manifest["error"].startswith("outputs:")


def test_a_media_rewritten_with_its_size_and_mtime_restored_is_noticed(provisioned, tmp_path):
    media = tmp_path / "talk.opus"
    shutil.copy(CLIP, media)
    out = tmp_path / "out"
    job_id = prepare(out, provisioned, "-s", "en", "--no-align", "--end-time", "3", media=media)
    run_pipeline(out, provisioned, job_id)
    before = media.stat()
    data = bytearray(media.read_bytes())
    data[-100] ^= 0xFF
    media.write_bytes(bytes(data))
    os.utime(media, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (media.stat().st_size, media.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    proc = run_pipeline(out, provisioned, job_id, code=2)
    assert "changed since the job was prepared" in proc.stderr and "Traceback" not in proc.stderr


def test_read_only_out_dirs_are_one_line_and_change_nothing(provisioned, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    prep = in_namespace(
        provisioned,
        READ_ONLY,
        str(out),
        str(ROOT / "prepare-job.sh"),
        "--media",
        str(CLIP),
        "--asr-model",
        "tiny.en",
        "--out-dir",
        str(out),
    )
    one_line(prep, f"cannot write in {out}", "Read-only file system", "--out-dir")
    assert list(out.iterdir()) == []
    job_id = prepare(out, provisioned, "-s", "en", "--no-align", "--end-time", "3")
    before = sorted(p.name for p in (out / job_id).iterdir())
    run = in_namespace(
        provisioned, READ_ONLY, str(out), str(ROOT / "run-pipeline.sh"), "-j", job_id, "--out-dir", str(out)
    )
    one_line(run, f"cannot write in {out / job_id}", "Read-only file system")
    assert sorted(p.name for p in (out / job_id).iterdir()) == before
    run_pipeline(out, provisioned, job_id)  # writable again: it runs


FULL_DISK = """
out=$1; report=$2; shift 2
mount -t tmpfs -o size=256k tmpfs "$out" || exit 99
"$@" --out-dir "$out" > "$report/prepared.out" 2> "$report/prepared.err"; echo $? > "$report/prepared.rc"
job=$(tail -n 1 "$report/prepared.out")
dd if=/dev/zero of="$out/filler" bs=4k 2>/dev/null
"$@" --out-dir "$out" > "$report/full.out" 2> "$report/full.err"; echo $? > "$report/full.rc"
ls -A "$out" > "$report/full.ls"
rm "$out/filler"
./run-pipeline.sh -j "$job" --out-dir "$out" 2> "$report/small.err"; echo $? > "$report/small.rc"
ls -A "$out/$job" > "$report/small.ls"
mount -o remount,size=16m "$out"
./run-pipeline.sh -j "$job" --out-dir "$out" > "$report/healed.out" 2> "$report/healed.err"
echo $? > "$report/healed.rc"
"""


def test_a_full_out_dir_is_one_line_with_the_space_needed_and_the_next_run_heals(provisioned, tmp_path):
    out, report = tmp_path / "out", tmp_path / "report"
    out.mkdir()
    report.mkdir()
    prepare_cmd = [
        str(ROOT / "prepare-job.sh"),
        "--media",
        str(CLIP),
        "-s",
        "en",
        "--no-align",
        "--end-time",
        "3",
        "--asr-model",
        "tiny.en",
    ]
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", FULL_DISK, "sh", str(out), str(report), *prepare_cmd],
        capture_output=True,
        text=True,
        env=shim_env(provisioned),
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    read = lambda name: (report / name).read_text()  # noqa: E731 - a local one-line helper
    assert read("prepared.rc").strip() == "0", read("prepared.err")
    job_id = read("prepared.out").strip().splitlines()[-1]
    full = subprocess.CompletedProcess([], int(read("full.rc")), read("full.out"), read("full.err"))
    one_line(full, f"no space left in {out}", "needs about", code=1)
    assert read("full.ls").split() == [job_id, "filler"]  # no half-made job folder
    small = subprocess.CompletedProcess([], int(read("small.rc")), "", read("small.err"))
    one_line(small, f"free in {out}: the jobs need about 1.1 MB there")
    assert read("small.ls").split() == [".run.lock", "job.json"]  # nothing ran: no manifest, no temp files
    assert read("healed.rc").strip() == "0", read("healed.err")
    assert f"{job_id}: done" in read("healed.out")


FILLS_WHILE_RUNNING = """
out=$1; report=$2; shift 2
mount -t tmpfs -o size=4m tmpfs "$out" || exit 99
"$@" --out-dir "$out" > "$report/prepared.out" 2> "$report/prepared.err" || exit 98
job=$(tail -n 1 "$report/prepared.out")
./run-pipeline.sh -j "$job" --out-dir "$out" > "$report/full.out" 2> "$report/full.err" &
runner=$!
until grep -q '"asr": {' "$out/$job/manifest.json" 2>/dev/null; do sleep 0.02; done
dd if=/dev/zero of="$out/filler" bs=4k 2>/dev/null
wait $runner; echo $? > "$report/full.rc"
find "$out/$job" -name '*.tmp' > "$report/full.tmp"
cp "$out/$job/manifest.json" "$report/full.manifest"
rm "$out/filler"
./run-pipeline.sh -j "$job" --out-dir "$out" > "$report/healed.out" 2> "$report/healed.err"
echo $? > "$report/healed.rc"
cp "$out/$job/manifest.json" "$report/healed.manifest"
"""


def test_a_disk_that_fills_while_a_job_runs_is_one_line_and_the_next_run_heals(provisioned, tmp_path):
    out, report = tmp_path / "out", tmp_path / "report"
    out.mkdir()
    report.mkdir()
    prepare_cmd = [
        str(ROOT / "prepare-job.sh"),
        "--media",
        str(CLIP),
        "-s",
        "en",
        "--no-align",
        "--end-time",
        "3",
        "--asr-model",
        "tiny.en",
    ]
    proc = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            FILLS_WHILE_RUNNING,
            "sh",
            str(out),
            str(report),
            *prepare_cmd,
        ],
        capture_output=True,
        text=True,
        env=shim_env(provisioned),
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    read = lambda name: (report / name).read_text()  # noqa: E731 - a local one-line helper
    full_err = read("full.err")
    assert int(read("full.rc")) == 1 and "Traceback" not in full_err, full_err
    errors = [line for line in full_err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and ("free about 1.1 MB" in errors[0] or "needs about 1.1 MB" in errors[0]), full_err
    assert read("full.tmp") == ""  # no temporary files left behind
    assert json.loads(read("full.manifest"))["status"] == "failed"  # not stuck at "running"
    assert read("healed.rc").strip() == "0", read("healed.err")
    assert json.loads(read("healed.manifest"))["status"] == "done"
