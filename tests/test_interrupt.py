"""Ctrl-C and kill -9 during a download, done to a real ./cache-models.sh on a throttled test hub: the run stops
within about a second and records nothing, the lock survives a second Ctrl-C, and the next run fetches only the
rest of the file (checked against the hub's id; a partial with wrong bytes is fetched afresh)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from offline_speech import cache
from support.hub import sha256_hex
from support.interrupt import (
    BIG,
    KEY,
    REPO,
    SIZE,
    fetched,
    hub_env,
    partials,
    repo_files,
    serve,
    start,
    wait_for_partial,
)
from support.shell import shim

FILES = repo_files()
ETAG = sha256_hex(FILES[BIG])  # an LFS file: its blob's name
INTERRUPTED = "interrupted: run the same command again to resume"
SMALL_KEYS = ("align-ja", "align-zh", "align-te")  # stand-ins of a few hundred kB, recorded while BIG downloads


@pytest.fixture()
def hub():
    with serve(FILES) as hub:
        yield hub


def assert_nothing_recorded(cache_root: Path) -> None:
    """No lock entry, no refs, no temporary file of an atomic write: the entry does not count as cached."""
    lock_file = cache_root / cache.LOCK_NAME
    if lock_file.exists():
        assert KEY not in json.loads(lock_file.read_text())["models"]
    assert not (cache.repo_dir(cache_root, REPO) / "refs").exists()
    assert not list(cache_root.rglob("*.tmp")), "a temporary file was left behind"


def rerun_and_check(hub, cache_root: Path) -> int:
    """Run again at full speed; the bytes of BIG it fetched. The snapshot must hold the hub's bytes and verify."""
    hub.throttle(None)
    hub.reset_requests()
    shim("cache-models.sh", KEY, cache=cache_root, **hub_env(hub, cache_root))
    snapshot = cache.snapshot_dir(cache_root, REPO, hub._repo(REPO).commit)
    assert (snapshot / BIG).read_bytes() == FILES[BIG]
    assert json.loads(shim("cache-models.sh", "--verify", "--json", cache=cache_root).stdout)["problems"] == 0
    assert not partials(cache_root, ETAG)
    return fetched(hub)


def test_ctrl_c_stops_within_a_second_records_nothing_and_the_rerun_resumes(hub, tmp_path):
    cache_root = tmp_path / "cache"
    hub.throttle(1_000_000)  # BIG alone takes 11 s
    proc = start(hub, cache_root, KEY)
    wait_for_partial(proc, cache_root, FILES[BIG], 0.2)
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal sends it: to the whole foreground group
    out, err = proc.communicate(timeout=30)
    latency = time.monotonic() - sent
    assert proc.returncode == 130, (out, err)
    assert latency <= 1.5, f"Ctrl-C took {latency:.2f} s"
    assert err.strip().splitlines() == [INTERRUPTED], (out, err)
    assert_nothing_recorded(cache_root)
    # kept as <etag>.incomplete, or (when the process ended before its download thread woke up) as
    # huggingface_hub's own <etag>.<random>.incomplete, which the next run adopts
    kept = max(p.stat().st_size for p in partials(cache_root, ETAG))
    assert kept > 0
    info = json.loads(shim("cache-models.sh", "--info", KEY, "--json", cache=cache_root).stdout)["models"]
    assert {r["key"]: r["status"] for r in info}[KEY] != "complete"

    again = rerun_and_check(hub, cache_root)
    assert again <= SIZE - kept, f"fetched {again} bytes again though {kept} were kept"
    assert [r.range for r in hub.file_gets(REPO, BIG)] == [f"bytes={kept}-"]


def test_kill_9_at_90_percent_resumes_fetching_at_most_15_percent(hub, tmp_path):
    cache_root = tmp_path / "cache"
    hub.throttle(2_000_000)
    proc = start(hub, cache_root, KEY)
    wait_for_partial(proc, cache_root, FILES[BIG], 0.9)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert_nothing_recorded(cache_root)
    again = rerun_and_check(hub, cache_root)
    assert again / SIZE <= 0.15, f"fetched {again / SIZE:.2f} of the file again"


def test_a_partial_with_wrong_bytes_is_caught_by_the_hash_and_fetched_afresh(hub, tmp_path):
    cache_root = tmp_path / "cache"
    partial = cache.repo_dir(cache_root, REPO) / "blobs" / f"{ETAG}.incomplete"
    partial.parent.mkdir(parents=True)
    wrong = bytearray(FILES[BIG][: SIZE * 9 // 10])
    wrong[1000] ^= 0xFF
    partial.write_bytes(bytes(wrong))
    again = rerun_and_check(hub, cache_root)
    assert again == SIZE - len(wrong) + SIZE  # the rest, then the whole file once the hash told


@pytest.mark.parametrize("gap", [0.0, 0.05], ids=["together", "during-cleanup"])
def test_a_second_ctrl_c_never_corrupts_the_lock(hub, tmp_path, gap):
    cache_root = tmp_path / "cache"
    shim("cache-models.sh", SMALL_KEYS[0], cache=cache_root, **hub_env(hub, cache_root))
    hub.throttle(1_000_000)
    proc = start(hub, cache_root, KEY, *SMALL_KEYS[1:])
    wait_for_partial(proc, cache_root, FILES[BIG], 0.1)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(gap)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert err.strip().splitlines() == [INTERRUPTED], (out, err)
    lock = json.loads((cache_root / cache.LOCK_NAME).read_text())  # whole JSON: never half written
    assert SMALL_KEYS[0] in lock["models"]
    assert_nothing_recorded(cache_root)
