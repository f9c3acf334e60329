"""Ctrl-C and kill -9 during a download, done to a real ./cache-models.sh on a throttled test hub: the run stops
within about a second and records nothing, the lock survives a second Ctrl-C, and the next run fetches only the
rest of the file (checked against the hub's id; a partial with wrong bytes is fetched afresh)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from offline_speech import cache
from support import ROOT
from support import universe as hub_universe
from support.hub import MIB, sha256_hex
from support.shell import shim, shim_env

KEY = "speechbrain-spkrec-ecapa-voxceleb"
REPO = "speechbrain/spkrec-ecapa-voxceleb"
BIG = "embedding_model.ckpt"
# huggingface_hub writes a download in 1 MiB pieces: at 10.5 MiB the partial on disk reaches 95 % before the end.
SIZE = 10 * MIB + MIB // 2
INTERRUPTED = "interrupted: run the same command again to resume"
SMALL_KEYS = ("align-hi", "align-ja", "align-zh")  # stand-ins of a few hundred kB, recorded while BIG downloads


_rng = random.Random(11)
FILES = {
    "hyperparams.yaml": b"pretrained_path: speechbrain/spkrec-ecapa-voxceleb\n",
    BIG: _rng.randbytes(SIZE),
    "mean_var_norm_emb.ckpt": _rng.randbytes(2_000),
    "classifier.ckpt": _rng.randbytes(50_000),
    "label_encoder.txt": b"'id10001' => 0\n",
}
ETAG = sha256_hex(FILES[BIG])  # LFS: the blob's name


@pytest.fixture()
def hub(tiny_en_files):
    u = hub_universe.build_universe(tiny_en_files, overrides={REPO: FILES})
    with u.hub:
        yield u.hub


def env(hub, cache_root: Path) -> dict[str, str]:
    return {"HF_ENDPOINT": hub.url, "OFFLINE_SPEECH_ASSET_MIRROR": hub.url + "/assets", "HOME": str(cache_root.parent)}


def start(hub, cache_root: Path, *keys: str) -> subprocess.Popen:
    """./cache-models.sh KEYS in its own process group, as a terminal runs a foreground command."""
    return subprocess.Popen([str(ROOT / "cache-models.sh"), *keys], env=shim_env(cache_root, **env(hub, cache_root)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def blobs(cache_root: Path) -> Path:
    return cache.repo_dir(cache_root, REPO) / "blobs"


def wait_for_partial(proc: subprocess.Popen, cache_root: Path, fraction: float) -> int:
    """Poll until a partial download of BIG holds at least `fraction` of it; its size."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        for p in blobs(cache_root).glob(f"{ETAG}*.incomplete") if blobs(cache_root).is_dir() else ():
            try:
                size = p.stat().st_size
            except FileNotFoundError:
                continue
            if size >= fraction * SIZE:
                return size
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"no partial of {fraction:.0%} appeared: {proc.communicate()}")


def fetched(hub, path: str = BIG) -> int:
    """Body bytes the hub sent for GETs of one file of REPO."""
    return sum(r.bytes_sent for r in hub.requests if r.method == "GET" and r.path.endswith(f"/resolve/{_commit(hub)}/{path}"))


def _commit(hub) -> str:
    return hub._repo(REPO).commit


def assert_nothing_recorded(cache_root: Path) -> None:
    """No lock entry, no refs, no temporary lock file: the entry does not count as cached."""
    lock_file = cache_root / cache.LOCK_NAME
    if lock_file.exists():
        assert KEY not in json.loads(lock_file.read_text())["models"]
    assert not (cache.repo_dir(cache_root, REPO) / "refs").exists()
    assert not [p for p in cache_root.rglob("*.tmp")], "a temporary file was left behind"


def rerun_and_check(hub, cache_root: Path) -> int:
    """Run again at full speed; the bytes of BIG it fetched. The files must verify and load as the hub's."""
    hub.throttle(None)
    hub.reset_requests()
    shim("cache-models.sh", KEY, cache=cache_root, **env(hub, cache_root))
    snapshot = cache.snapshot_dir(cache_root, REPO, _commit(hub))
    assert (snapshot / BIG).read_bytes() == FILES[BIG]
    assert json.loads(shim("cache-models.sh", "--verify", "--json", cache=cache_root).stdout)["problems"] == 0
    assert not list(blobs(cache_root).glob("*.incomplete"))
    return fetched(hub)


def test_ctrl_c_stops_within_a_second_records_nothing_and_the_rerun_resumes(hub, tmp_path):
    cache_root = tmp_path / "cache"
    hub.throttle(1_000_000)  # BIG alone takes 11 s
    proc = start(hub, cache_root, KEY)
    wait_for_partial(proc, cache_root, 0.2)
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
    kept = max(p.stat().st_size for p in blobs(cache_root).glob(f"{ETAG}*.incomplete"))
    assert kept > 0
    info = {r["key"]: r for r in json.loads(shim("cache-models.sh", "--info", KEY, "--json", cache=cache_root).stdout)["models"]}
    assert info[KEY]["status"] != "complete"

    again = rerun_and_check(hub, cache_root)
    assert again <= SIZE - kept, f"fetched {again} bytes again though {kept} were kept"
    ranges = [r.range for r in hub.requests if r.method == "GET" and r.path.endswith(BIG)]
    assert ranges == [f"bytes={kept}-"]


def test_kill_9_at_90_percent_resumes_fetching_at_most_15_percent(hub, tmp_path):
    cache_root = tmp_path / "cache"
    hub.throttle(2_000_000)
    proc = start(hub, cache_root, KEY)
    wait_for_partial(proc, cache_root, 0.9)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert_nothing_recorded(cache_root)
    again = rerun_and_check(hub, cache_root)
    assert again / SIZE <= 0.15, f"fetched {again / SIZE:.2f} of the file again"


def test_a_partial_with_wrong_bytes_is_caught_by_the_hash_and_fetched_afresh(hub, tmp_path):
    cache_root = tmp_path / "cache"
    partial = blobs(cache_root) / f"{ETAG}.incomplete"
    partial.parent.mkdir(parents=True)
    wrong = bytearray(FILES[BIG][: SIZE * 9 // 10])
    wrong[1000] ^= 0xFF
    partial.write_bytes(bytes(wrong))
    again = rerun_and_check(hub, cache_root)
    assert again == SIZE - len(wrong) + SIZE  # the rest, then the whole file once the hash told


@pytest.mark.parametrize("gap", [0.0, 0.05], ids=["together", "during-cleanup"])
def test_a_second_ctrl_c_never_corrupts_the_lock(hub, tmp_path, gap):
    cache_root = tmp_path / "cache"
    shim("cache-models.sh", SMALL_KEYS[0], cache=cache_root, **env(hub, cache_root))
    hub.throttle(1_000_000)
    proc = start(hub, cache_root, KEY, *SMALL_KEYS[1:])
    wait_for_partial(proc, cache_root, 0.1)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(gap)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert err.strip().splitlines() == [INTERRUPTED], (out, err)
    lock = json.loads((cache_root / cache.LOCK_NAME).read_text())  # whole JSON: never half written
    assert SMALL_KEYS[0] in lock["models"]
    assert_nothing_recorded(cache_root)
