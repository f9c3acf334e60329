"""Crash consistency of the cache (issue 12 §2): a same-size corrupted blob is caught without re-hashing an
unchanged cache, leftovers of killed runs are removed by the next run (never what a live process owns), a kill
between the ref and the lock heals, --clear waits for a download of the same entry, and a blob replaced by a link
is repaired without writing through the link."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from offline_speech import cache, orphans
from offline_speech.catalog import load_catalog
from offline_speech.stages.base import StageFailure
from offline_speech.stages.diarize import verify_snapshot
from offline_speech.util import atomic_output
from offline_speech.verified import VerifiedIndex
from support import ROOT
from support.shell import prepare, run_pipeline, shim_env
from support.universe import TINY_EN_COMMIT, TINY_EN_REPO

CATALOG = load_catalog()
TINY = "faster-whisper-tiny.en"
HOUR = 3600


def flip_keeping_size_and_mtime(path: Path) -> None:
    """Change one byte in place and set the mtime back: only the ctime (and maybe the inode) tells."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def backdate(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when), follow_symlinks=False)


def tiny_state(root: Path) -> tuple[cache.LocalState, int]:
    """tiny.en's cached state, judged by a fresh index (as a new process would); and how many files it hashed."""
    index = VerifiedIndex(root)
    state = cache.model_state(root, CATALOG.get(TINY), cache.read_lock(root), index)
    return state, index.hashed


def wait_for(predicate, seconds: float = 120, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended first: {proc.communicate()}")
        time.sleep(0.05)
    pytest.fail("timed out")


# ---- 1. the cached check: content through the verified index -------------------------------------------------


def test_a_same_size_corrupted_blob_is_caught_and_an_unchanged_cache_is_not_hashed_again(cli, universe, tmp_path):
    cli.run("--whisperx", "--asr-model", "tiny.en")
    state, hashed = tiny_state(cli.cache)
    assert state.status == "complete" and hashed == 0  # the download recorded what it hashed as it wrote
    assert cli.json("--whisperx", "--asr-model", "tiny.en", netns=True)["results"][0]["message"] == "cached"
    assert tiny_state(cli.cache)[1] == 0
    out = tmp_path / "out"
    job = prepare(out, cli.cache, "-s", "en", "--no-align", "--end-time", "3")

    flip_keeping_size_and_mtime(
        cache.snapshot_dir(cli.cache, TINY_EN_REPO, TINY_EN_COMMIT).joinpath("model.bin").resolve()
    )
    state, hashed = tiny_state(cli.cache)
    assert state.status == "corrupt" and state.absent == ("model.bin",) and hashed == 1
    assert {r["key"]: r["status"] for r in cli.json("--info", TINY, netns=True)["models"]}[TINY] == "corrupt"
    proc = run_pipeline(out, cli.cache, job, code=2, netns=True)
    assert "Traceback" not in proc.stderr
    assert f"model {TINY} is corrupt" in proc.stderr and "--asr-model tiny.en --verify --repair" in proc.stderr

    repaired = cli.json("--whisperx", "--asr-model", "tiny.en", "--verify", "--repair")
    assert repaired["problems"] == 0
    state, hashed = tiny_state(cli.cache)
    assert state.status == "complete" and hashed == 0  # verify and the repair's download recorded it


@pytest.mark.plain_http
def test_a_plain_fetch_fetches_a_corrupted_file_again_instead_of_calling_it_cached(cli, universe):
    cli.run("--whisperx", "--asr-model", "tiny.en")
    flip_keeping_size_and_mtime(
        cache.snapshot_dir(cli.cache, TINY_EN_REPO, TINY_EN_COMMIT).joinpath("tokenizer.json").resolve()
    )
    universe.hub.reset_requests()
    result = cli.json("--whisperx", "--asr-model", "tiny.en")
    assert result["failed"] == 0 and result["results"][0]["message"] != "cached"
    assert [r.path.rsplit("/", 1)[-1] for r in universe.hub.file_gets()] == ["tokenizer.json"]
    assert tiny_state(cli.cache)[0].status == "complete"


def read_only(cache_dir: Path, command: list[str]) -> list[str]:
    """`command` in a private mount namespace where `cache_dir` is mounted read-only."""
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, str(cache_dir), *command]


def test_a_read_only_cache_is_checked_through_the_index_which_is_read_not_written(cli, universe):
    cli.run("--whisperx", "--asr-model", "tiny.en")
    index_file = cli.cache / "offline-speech" / "verified.json"
    before = index_file.read_bytes()
    fetch = subprocess.run(
        read_only(cli.cache, cli.args("--whisperx", "--asr-model", "tiny.en", "--json")),
        env=cli.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fetch.returncode == 0 and json.loads(fetch.stdout)["results"][0]["message"] == "cached", fetch.stderr
    flip_keeping_size_and_mtime(
        cache.snapshot_dir(cli.cache, TINY_EN_REPO, TINY_EN_COMMIT).joinpath("config.json").resolve()
    )
    info = subprocess.run(
        read_only(cli.cache, cli.args("--info", TINY, "--json")),
        env=cli.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert info.returncode == 0 and "Traceback" not in info.stderr, info.stderr
    assert json.loads(info.stdout)["models"][0]["status"] == "corrupt"
    assert index_file.read_bytes() == before


def test_the_diarize_stage_verifies_the_snapshot_through_the_same_index(tmp_path):
    root = tmp_path / "cache"
    snapshot = root / "snapshot"
    (snapshot / "embedding").mkdir(parents=True)
    weights, config = snapshot / "embedding" / "pytorch_model.bin", snapshot / "config.yaml"
    weights.write_bytes(os.urandom(200_000))
    config.write_text("pipeline: {}\n")
    git_id = hashlib.sha1(b"blob %d\0" % config.stat().st_size + config.read_bytes()).hexdigest()
    files = [
        {"path": "config.yaml", "size": config.stat().st_size, "git-sha1": git_id},
        {
            "path": "embedding/pytorch_model.bin",
            "size": 200_000,
            "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        },
    ]
    first = VerifiedIndex(root)
    verify_snapshot(snapshot, files, first)
    first.save()
    again = VerifiedIndex(root)
    verify_snapshot(snapshot, files, again)
    assert (first.hashed, again.hashed) == (2, 0)
    flip_keeping_size_and_mtime(weights)
    with pytest.raises(
        StageFailure, match="embedding/pytorch_model.bin does not match its sha256 in the lock.*--repair"
    ):
        verify_snapshot(snapshot, files, VerifiedIndex(root))


# ---- 2. leftovers of killed runs -----------------------------------------------------------------------------


def test_leftovers_are_removed_only_when_no_live_process_owns_them(tmp_path):
    root = tmp_path / "cache"
    repo = cache.repo_dir(root, "org/name")
    (repo / "refs").mkdir(parents=True)
    (repo / "blobs").mkdir()
    locks = cache.hub_dir(root) / ".locks" / repo.name
    locks.mkdir(parents=True)
    sha = "ab" * 32
    stale = {
        "lock temp": root / ".offline-speech.lock.jsonk3j4h5g6.tmp",
        "ref temp": repo / "refs" / ".mainq1w2e3r4.tmp",
        "old partial": repo / "blobs" / f"{sha}.1234abcd.incomplete",
        "import staging": root / ".import-a1b2c3d4",
        "index temp": root / "offline-speech" / ".verified.jsonz9y8x7w6.tmp",
        "asset part": root / "torch" / ".a.pthx1y2z3w4.part",
    }
    for what, path in stale.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if what == "import staging" else path.write_bytes(b"partial")
    backdate(stale["old partial"], orphans.RESUME_WINDOW + HOUR)
    fresh = root / ".offline-speech.lock.json00aa11bb.tmp"
    fetching = root / "torch" / ".b.ptha1b2c3d4.part"  # an asset download in progress: it holds the entry's lock
    fetching.write_bytes(b"partial")
    backdate(fetching, HOUR)
    (root / ".locks").mkdir()
    entry_lock = open(root / ".locks" / "entry-asset-b.lock", "a")
    fcntl.flock(entry_lock, fcntl.LOCK_EX)
    assets = [("asset-a", "torch/a.pth"), ("asset-b", "torch/b.pth")]
    resumable = repo / "blobs" / f"{'cd' * 32}.5678ef01.incomplete"  # an hour old: a fetch may resume it
    downloading = repo / "blobs" / f"{'ef' * 32}.9abc2345.incomplete"
    for path in (fresh, resumable, downloading):
        path.write_bytes(b"partial")
    backdate(resumable, HOUR)
    backdate(downloading, orphans.RESUME_WINDOW + HOUR)
    for path in stale.values():
        if path != stale["old partial"]:
            backdate(path, HOUR)
    hf_lock = open(locks / f"{'ef' * 32}.lock", "a")  # huggingface_hub holds this while it downloads the blob
    fcntl.flock(hf_lock, fcntl.LOCK_EX)
    importing = orphans.work_dir(root, ".import-")  # a live import's staging folder
    backdate(importing, HOUR)
    with atomic_output(root / cache.LOCK_NAME) as f:  # a live writer of the lock, its temp file an hour old
        f.write(b"{}")
        writing = next(p for p in root.glob(f".{cache.LOCK_NAME}*.tmp") if p not in (fresh, stale["lock temp"]))
        backdate(writing, HOUR)
        removed = orphans.clean_cache(root, assets)
        assert sorted(removed) == sorted(stale.values())
        assert all(p.exists() for p in (writing, importing, fresh, resumable, downloading, fetching))
        assert orphans.clean_cache(root, assets, partials_of=["other/repo"]) == []
        assert orphans.clean_cache(root, assets, partials_of=["org/name"]) == [resumable]  # repaired: no resume comes
        assert downloading.exists()
    hf_lock.close()
    entry_lock.close()
    assert sorted(orphans.clean_cache(root, assets, partials_of=["org/name"])) == sorted([fetching, downloading])
    orphans.remove_work_dir(importing)
    assert not importing.exists()


def test_temp_files_named_by_a_pid_are_kept_while_that_process_lives(tmp_path):
    job = tmp_path / "out" / "job"
    (job / "work").mkdir(parents=True)
    child = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = job / "work" / f".audio.wav.{child.pid}.tmp.wav"
    gone = job / "work" / f".audio.wav.{dead.pid}.tmp.wav"
    manifest = job / f".manifest.json.{dead.pid}.tmp"
    for path in (live, gone, manifest):
        path.write_bytes(b"x")
        backdate(path, HOUR)
    try:
        assert sorted(orphans.clean_out_dir(tmp_path / "out", [job], ["asr"])) == sorted([gone, manifest])
        assert live.exists()
    finally:
        child.kill()
        child.wait()


@pytest.fixture()
def job_world(provisioned, tmp_path) -> tuple[Path, Path, str]:
    cache_dir = tmp_path / "cache"
    shutil.copytree(provisioned, cache_dir, symlinks=True)
    out = tmp_path / "out"
    return cache_dir, out, prepare(out, cache_dir, "-s", "en", "--no-align", "--end-time", "3")


def pipeline(out: Path, cache_dir: Path, job: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(ROOT / "run-pipeline.sh"), "-j", job, "--out-dir", str(out)],
        env=shim_env(cache_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_run_pipeline_leaves_a_work_folder_the_next_run_removes(job_world, sig):
    cache_dir, out, job = job_world
    run = pipeline(out, cache_dir, job)
    work = wait_for(lambda: list(out.glob(".asr-*")), proc=run)[0]
    # a second run-pipeline (another job) sweeps the out dir meanwhile: the live run's folder is flocked, kept
    backdate(work, HOUR)
    assert orphans.clean_out_dir(out, [], ["asr"]) == [] and work.exists()
    os.kill(run.pid, sig)
    run.communicate(timeout=60)
    assert work.exists()  # SIGTERM skips `finally`, like -9
    leftover = out / job / ".manifest.json4f5g6h7j.tmp"
    leftover.write_text("{")
    for path in (work, leftover):
        backdate(path, HOUR)
    proc = run_pipeline(out, cache_dir, job)
    assert f"{job}: done" in proc.stdout
    assert not work.exists() and not leftover.exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_kill_between_the_ref_and_the_lock_heals_on_the_next_fetch(cli, universe):
    lock_file = cli.cache / ".locks" / "offline-speech.lock"
    lock_file.parent.mkdir(parents=True)
    ref = cache.repo_dir(cli.cache, TINY_EN_REPO) / "refs" / "main"
    with open(lock_file, "a") as held:  # the lock file's writers wait here, after the ref is written
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = cli.popen("--whisperx", "--asr-model", "tiny.en")
        wait_for(ref.exists, proc=proc)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert not (cli.cache / cache.LOCK_NAME).exists()
    torn = cli.cache / f".{cache.LOCK_NAME}8h7g6f5d.tmp"  # what a kill during the lock's rename leaves
    torn.write_text('{"schema": 1, "mod')
    backdate(torn, HOUR)
    fetch = cli.run("--whisperx", "--asr-model", "tiny.en", "--json", netns=True)
    assert json.loads(fetch.stdout)["results"][0]["message"] == "cached"
    assert "missing from the lock (an interrupted run): recorded" in fetch.stderr
    assert TINY in json.loads((cli.cache / cache.LOCK_NAME).read_text())["models"] and not torn.exists()
    assert cli.json("--verify", netns=True)["problems"] == 0


@pytest.mark.plain_http
def test_partial_downloads_are_kept_for_a_resume_and_removed_by_verify_repair(cli, universe):
    universe.hub.throttle(2_000_000)
    proc = cli.popen("--whisperx", "--asr-model", "tiny.en")
    blobs = cache.repo_dir(cli.cache, TINY_EN_REPO) / "blobs"
    wait_for(lambda: [p for p in blobs.glob("*.incomplete") if p.stat().st_size > 500_000], proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    universe.hub.throttle(None)
    partials = sorted(blobs.glob("*.incomplete"))
    for partial in partials:
        backdate(partial, HOUR)
    cli.run("--info")
    assert sorted(blobs.glob("*.incomplete")) == partials  # younger than the resume window: a fetch may resume them
    result = cli.json("--whisperx", "--asr-model", "tiny.en", "--verify", "--repair")
    assert result["problems"] == 0 and not list(blobs.glob("*.incomplete"))


# ---- 3. --clear takes the entry's lock -------------------------------------------------------------------------


@pytest.mark.plain_http
def test_clear_waits_for_a_download_of_the_same_model(cli, universe):
    universe.hub.throttle(2_000_000)
    fetch = cli.popen("--whisperx", "--asr-model", "tiny.en")
    blobs = cache.repo_dir(cli.cache, TINY_EN_REPO) / "blobs"
    wait_for(lambda: [p for p in blobs.glob("*.incomplete") if p.stat().st_size > 100_000], proc=fetch)
    clear = cli.popen("--clear", TINY, "--yes")
    time.sleep(3)
    assert clear.poll() is None  # waiting for the download's entry lock
    universe.hub.throttle(None)
    fetched, cleared = fetch.communicate(timeout=300), clear.communicate(timeout=300)
    assert (fetch.returncode, clear.returncode) == (0, 0), (fetched, cleared)
    assert f"{TINY}: another run is provisioning it; waiting" in cleared[1]
    assert not cache.repo_dir(cli.cache, TINY_EN_REPO).exists()
    assert TINY not in json.loads((cli.cache / cache.LOCK_NAME).read_text())["models"]


# ---- 4. a blob replaced by a link -------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["outside the cache", "inside the cache"])
def test_repair_replaces_a_blob_that_became_a_link_without_writing_through_it(cli, universe, tmp_path, where):
    cli.run("--whisperx", "--asr-model", "tiny.en")
    snap = cache.snapshot_dir(cli.cache, TINY_EN_REPO, TINY_EN_COMMIT)
    blob = (snap / "model.bin").resolve()
    if where == "outside the cache":  # even the right bytes: a blob must be the cache's own regular file
        target = tmp_path / "elsewhere" / "model.bin"
        target.parent.mkdir()
        shutil.copyfile(blob, target)
    else:
        target = (snap / "config.json").resolve()
    kept = target.read_bytes()
    blob.unlink()
    blob.symlink_to(target)
    report = cli.json("--verify", check_code=1, netns=True)
    problems = {p["path"]: p["kind"] for v in report["verified"] for p in v["problems"]}
    assert set(problems) == {"model.bin"}
    assert tiny_state(cli.cache)[0].status == "corrupt"

    assert cli.json("--verify", "--repair")["problems"] == 0
    assert blob.is_file() and not blob.is_symlink()
    assert blob.read_bytes() == universe.files[TINY_EN_REPO]["model.bin"]
    assert target.is_file() and not target.is_symlink() and target.read_bytes() == kept
    assert cli.json("--verify", netns=True)["problems"] == 0
