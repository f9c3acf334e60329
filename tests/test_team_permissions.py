"""A team shares one cache and one out dir (issue 19): what one account provisions, bundles and runs under umask 022
must be readable by another. Everything written follows the umask as a plain open() would; temp files are private
only while they are written."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from support import ROOT
from support.shell import Cli, prepare, run_pipeline

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture()
def shared_place():
    """A folder another account can reach (pytest's own tmp folders are private to root)."""
    place = Path(tempfile.mkdtemp(prefix="team-"))
    place.chmod(0o755)
    old = os.umask(0o022)  # what the shells of a team sharing a cache have
    yield place
    os.umask(old)
    shutil.rmtree(place, ignore_errors=True)


def unreadable_to_others(top: Path) -> list[str]:
    """What another account could not read (files, links followed) or enter (folders) under `top`, by mode bits."""
    bad = []
    for path in [top, *top.rglob("*")]:
        if path.name.endswith(".lock") or ".locks" in path.parts:
            continue  # lock files are opened for writing by whoever takes them, never read
        mode = stat.S_IMODE(path.stat().st_mode)
        need = 0o005 if path.is_dir() else 0o004
        if mode & need != need:
            bad.append(f"{path.relative_to(top)} {oct(mode)}")
    return bad


def test_another_account_reads_the_cache_a_bundle_and_the_outputs(universe, shared_place):
    cli = Cli(shared_place / "home", shared_place / "cache", universe.hub.url, universe.hub.url + "/assets")
    (shared_place / "home").mkdir()
    cli.run("--whisperx", "--asr-model", "tiny.en")
    bundle = shared_place / "models.tar"
    cli.run("--export", str(bundle))
    universe.hub.stop()
    out = shared_place / "out"
    job = prepare(out, cli.cache, "-s", "en", "--no-align", "--end-time", "3")
    run_pipeline(out, cli.cache, job, netns=True)

    for top in (cli.cache, out):
        assert unreadable_to_others(top) == [], top
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o644
    # and read for real, as another account: every file of the cache (through its links), the bundle, the outputs
    files = [
        str(p)
        for top in (cli.cache, out)
        for p in top.rglob("*")
        if p.is_file() and not p.name.endswith(".lock") and ".locks" not in p.parts
    ] + [str(bundle)]
    proc = subprocess.run([*NOBODY, "cat", *files], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert any(f.endswith(".srt") for f in files) and any(f.endswith("offline-speech.lock.json") for f in files)

    # and uses it: cache-models --info and --verify as that account (the venvs' own interpreter lives under /root,
    # which only root may enter here: Debian's Python of the same minor version runs the core venv's packages)
    python = shutil.which("python3.11", path="/usr/bin")
    if python is None:
        pytest.skip("no /usr/bin/python3.11 to run the CLI as another account")
    packages = next((ROOT / "venv" / "core" / "lib").glob("python3.11/site-packages"))
    env = {
        "HOME": str(shared_place),
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{ROOT / 'src'}:{packages}",
        "OFFLINE_SPEECH_PLATFORM": "linux-x86_64",
    }
    for args in (("--info", "--json"), ("--verify", "--json")):
        proc = subprocess.run(
            [*NOBODY, python, "-m", "offline_speech", "cache-models", *args, "--cache-dir", str(cli.cache)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        shown = json.loads(proc.stdout)
        if args[0] == "--info":
            assert {r["key"]: r["status"] for r in shown["models"]}["faster-whisper-tiny.en"] == "complete"
        else:
            assert shown["problems"] == 0
