"""A team's shared cache mounted read-only (a read-only bind mount in a private mount namespace: the tests run as
root, which permission bits do not stop): run-pipeline, --info and --verify work and write nothing there;
provisioning refuses in one line, naming the cache, before it asks the network anything."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from support import ROOT
from support import universe as hub_universe
from support.shell import prepare, shim_env

# In a private mount namespace, the cache folder is bind-mounted onto itself read-only, then the command runs.
READ_ONLY = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'


def read_only(cache: Path, *cmd: str, code: int | None = 0, **variables: str) -> subprocess.CompletedProcess:
    """Run `cmd` (a shim name or a program) with `cache` mounted read-only, as the shims' user would."""
    program = str(ROOT / cmd[0]) if cmd[0].endswith(".sh") else cmd[0]
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", READ_ONLY, str(cache), program, *cmd[1:]],
        env=shim_env(cache, **variables),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if code is not None:
        assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def listing(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under root (root too) with its mtime, size and mode, links not followed."""
    return {
        str(p.relative_to(root)): (st.st_mtime_ns, st.st_size, st.st_mode)
        for p in [root, *root.rglob("*")]
        for st in [p.lstat()]
    }


@pytest.fixture(scope="module")
def shared(provisioned: Path) -> Path:
    """The provisioned tiny.en cache, checked to be really read-only inside the namespace."""
    probe = read_only(provisioned, "touch", str(provisioned / "probe"), code=None)
    assert probe.returncode != 0 and "Read-only file system" in probe.stderr, probe
    return provisioned


def test_a_job_runs_on_a_read_only_cache_and_writes_nothing_there(shared, tmp_path):
    out = tmp_path / "out"
    job = prepare(out, shared, "--no-align")
    before = listing(shared)
    proc = read_only(shared, "run-pipeline.sh", "-j", job, "--out-dir", str(out))
    assert f"{job}: done" in proc.stdout
    assert (out / job).is_dir() and any((out / job).glob("*.srt"))
    assert listing(shared) == before


def test_info_and_verify_work_on_a_read_only_cache_and_write_nothing(shared):
    before = listing(shared)
    info = {r["key"]: r for r in json.loads(read_only(shared, "cache-models.sh", "--info", "--json").stdout)["models"]}
    assert info["faster-whisper-tiny.en"]["status"] == "complete"
    assert json.loads(read_only(shared, "cache-models.sh", "--verify", "--json").stdout)["problems"] == 0
    assert "all cached" in read_only(shared, "cache-models.sh", "--whisperx", "--asr-model", "tiny.en").stdout
    assert listing(shared) == before


@pytest.mark.parametrize(
    "args",
    [
        ["--align"],
        ["--clear", "faster-whisper-tiny.en", "--yes"],
        ["--from-dir", ".", "--key", "faster-whisper-tiny.en"],
    ],
    ids=["fetch", "clear", "from-dir"],
)
def test_provisioning_a_read_only_cache_refuses_in_one_line(shared, args):
    u = hub_universe.build_universe({})
    with u.hub:
        before = listing(shared)
        proc = read_only(
            shared,
            "cache-models.sh",
            *args,
            code=2,
            HF_ENDPOINT=u.hub.url,
            OFFLINE_SPEECH_ASSET_MIRROR=u.hub.url + "/assets",
        )
        assert proc.stderr.strip().splitlines() == [
            f"error: cannot write to the cache {shared} (a read-only file system): provisioning needs a writable "
            "cache; a shared read-only cache is provisioned where it is writable, or give --cache-dir a folder you "
            "can write"
        ], proc.stderr
        assert u.hub.requests == []  # refused before asking the network
        assert listing(shared) == before
