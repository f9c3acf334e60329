"""venv-setup for real: venvs built by pip in temporary --venv-dirs (the core lock only; it is small)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from offline_speech.venv_build import STAMP_NAME
from offline_speech.venv_select import default_venvs, select_venvs
from support import ROOT

VENVS_PY = ROOT / "src" / "offline_speech" / "venvs.py"


def venv_setup(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run venvs.py the way ./venv-setup does, with the Python running the tests."""
    return subprocess.run(
        [sys.executable, "-I", str(VENVS_PY), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )


@pytest.fixture(scope="module")
def core_venv_dir(tmp_path_factory) -> Path:
    """A core venv built from nothing, shared by the tests that only read it or use their own lock copy."""
    venv_dir = tmp_path_factory.mktemp("venvs")
    proc = venv_setup("core", "--venv-dir", str(venv_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)
    assert result["name"] == "core" and result["status"] == "created" and result["error"] is None
    assert "core: creating" in proc.stderr and "smoke test" in proc.stderr
    return venv_dir


@pytest.mark.parametrize(
    ("system", "machine", "expected"),
    [
        ("Darwin", "arm64", ["core", "whisperx", "translation", "mlx"]),
        ("Darwin", "x86_64", ["core", "whisperx", "translation"]),
        ("Linux", "x86_64", ["core", "whisperx", "translation"]),
        ("Linux", "aarch64", ["core", "whisperx", "translation"]),
    ],
)
def test_default_venvs(system, machine, expected):
    assert default_venvs(system, machine) == expected


def test_select_venvs_expands_all_and_keeps_setup_order():
    assert select_venvs(["all"], "Linux", "x86_64") == ["core", "whisperx", "translation", "mlx"]
    assert select_venvs(["translation", "core", "core"], "Linux", "x86_64") == ["core", "translation"]
    assert select_venvs([], "darwin", "arm64")[-1] == "mlx"


def test_platform_override_picks_the_default_selection(tmp_path):
    # An empty requirements dir: every venv fails at once on its missing lock, but the selection shows.
    reqs = tmp_path / "reqs"
    reqs.mkdir()

    def selected(platform: str) -> list[str]:
        proc = subprocess.run(
            [
                sys.executable,
                str(VENVS_PY),
                "--venv-dir",
                str(tmp_path / "v"),
                "--requirements-dir",
                str(reqs),
                "--json",
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env={"OFFLINE_SPEECH_PLATFORM": platform, "PATH": "/usr/bin:/bin"},
        )
        assert proc.returncode == 1, proc.stderr
        return [r["name"] for r in json.loads(proc.stdout)]

    assert selected("darwin-arm64") == ["core", "whisperx", "translation", "mlx"]
    assert selected("linux-x86_64") == ["core", "whisperx", "translation"]
    assert not any((tmp_path / "v").glob("*/bin"))


def test_core_venv_is_created_then_up_to_date_and_imports_the_package(core_venv_dir):
    start = time.monotonic()
    proc = venv_setup("core", "--venv-dir", str(core_venv_dir))
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "core: up to date"
    assert elapsed < 3, f"up-to-date check took {elapsed:.1f} s"

    stamp = json.loads((core_venv_dir / "core" / STAMP_NAME).read_text())
    assert stamp["lock_sha256"] and stamp["python"].startswith("3.")
    # The .pth makes the checkout importable from the venv, outside the project and in isolated mode.
    python = core_venv_dir / "core" / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-I", "-c", "import offline_speech.venvs as v; print(v.__file__)"],
        check=False,
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()) == VENVS_PY


def test_changed_lock_reinstalls_into_the_same_venv(core_venv_dir, tmp_path):
    reqs = shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    args = ("core", "--venv-dir", str(core_venv_dir), "--requirements-dir", str(reqs), "--json")
    first = venv_setup(*args)
    assert first.returncode == 0 and json.loads(first.stdout)[0]["status"] == "up-to-date", first.stderr

    python = core_venv_dir / "core" / "bin" / "python"
    inode = python.resolve().stat().st_ino
    with open(reqs / "core.txt", "a") as lock:
        lock.write("six==1.17.0\n")
    changed = venv_setup(*args)
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout)[0]["status"] == "updated"
    assert "changed since the last setup" in changed.stderr and "creating" not in changed.stderr
    assert python.resolve().stat().st_ino == inode
    assert subprocess.run([str(python), "-c", "import six"], check=False, timeout=60).returncode == 0

    again = venv_setup(*args)
    assert json.loads(again.stdout)[0]["status"] == "up-to-date"


def test_venv_whose_python_is_gone_is_recreated(tmp_path):
    # What is left of a venv after the Python it was made with was uninstalled: a dangling bin/python.
    venv = tmp_path / "venvs" / "core"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /gone\n")
    (venv / "bin" / "python").symlink_to(tmp_path / "gone" / "python3")
    proc = venv_setup("core", "--venv-dir", str(tmp_path / "venvs"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "python missing or broken" in proc.stderr
    assert json.loads(proc.stdout)[0]["status"] == "created"
    assert (venv / STAMP_NAME).exists()


def test_unknown_venv_name_is_a_usage_error():
    proc = subprocess.run(
        [str(ROOT / "venv-setup"), "whisper"], check=False, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown venv 'whisper'" in lines[0]


def test_missing_python_is_a_usage_error(tmp_path):
    proc = venv_setup("core", "--python", "/nonexistent", "--venv-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "/nonexistent" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_too_old_python_is_a_usage_error(tmp_path):
    # A stub interpreter that answers venv-setup's probe as a Python 3.8 would (as test_cli.py stubs one without
    # ensurepip): the check runs on every machine, not only where an old Python happens to be installed.
    old = tmp_path / "python3.8"
    old.write_text('#!/bin/sh\necho \'{"version": "3.8.10", "purelib": "/nonexistent"}\'\n')
    old.chmod(0o755)
    proc = venv_setup("core", "--python", str(old), "--venv-dir", str(tmp_path / "venvs"))
    assert proc.returncode == 2
    assert "Python 3.8.10 is too old (need >= 3.10)" in proc.stderr
    assert not (tmp_path / "venvs").exists()


def test_failed_install_names_venv_and_step_and_leaves_no_stamp(tmp_path):
    reqs = shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    with open(reqs / "core.txt", "a") as lock:
        lock.write("offline-speech-no-such-package-3f9c==0.0.1\n")
    proc = venv_setup("core", "--venv-dir", str(tmp_path / "venvs"), "--requirements-dir", str(reqs), "--json")
    assert proc.returncode == 1
    (result,) = json.loads(proc.stdout)
    assert result["status"] == "failed"
    failure = [line for line in proc.stderr.splitlines() if "FAILED" in line]
    assert failure == ["core: FAILED at pip install -r " + str(reqs / "core.txt") + ": exit 1"]
    assert "offline-speech-no-such-package-3f9c" in proc.stderr  # pip's own words follow the line
    assert not (tmp_path / "venvs" / "core" / STAMP_NAME).exists()

    # The next run retries into the same venv once the lock is fixed.
    shutil.copy(ROOT / "requirements" / "core.txt", reqs / "core.txt")
    retry = venv_setup("core", "--venv-dir", str(tmp_path / "venvs"), "--requirements-dir", str(reqs), "--json")
    assert retry.returncode == 0, retry.stderr
    assert "no stamp" in retry.stderr
    assert json.loads(retry.stdout)[0]["status"] == "updated"
    assert (tmp_path / "venvs" / "core" / STAMP_NAME).exists()


def test_concurrent_setup_of_one_venv_waits(core_venv_dir):
    fcntl = pytest.importorskip("fcntl")
    with open(core_venv_dir / ".core.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        waiting = subprocess.Popen(
            [sys.executable, "-I", str(VENVS_PY), "core", "--venv-dir", str(core_venv_dir)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert waiting.stdout.readline().startswith("core: waiting for another venv-setup")
        assert waiting.poll() is None
    out, _ = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, out  # up to date, or updated if another test changed the shared venv's lock


def test_failed_uv_install_names_venv_and_step_and_leaves_no_stamp(core_venv_dir, tmp_path):
    # The backend venvs are filled by the uv that the core lock installs into venv/core.
    assert (core_venv_dir / "core" / "bin" / "uv").is_file()
    reqs = shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    (reqs / "whisperx.txt").write_text("offline-speech-no-such-package-3f9c==0.0.1\n")
    args = ("whisperx", "--venv-dir", str(core_venv_dir), "--requirements-dir", str(reqs), "--json")
    proc = venv_setup(*args)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)[0]["status"] == "failed"
    failure = [line for line in proc.stderr.splitlines() if "FAILED" in line]
    assert failure == ["whisperx: FAILED at uv pip install -r " + str(reqs / "whisperx.txt") + ": exit 1"]
    assert "offline-speech-no-such-package-3f9c" in proc.stderr  # uv's own words follow the line
    assert not (core_venv_dir / "whisperx" / STAMP_NAME).exists()
    # Beside the venvs, so its files hard-link into them (or where the caller's UV_CACHE_DIR says).
    assert Path(os.environ.get("UV_CACHE_DIR") or core_venv_dir / ".uv-cache").is_dir()


def test_installer_uv_without_uv_fails_before_creating_the_venv(tmp_path):
    no_uv = {"PATH": "/usr/bin:/bin"}  # no venv/core under --venv-dir and none on PATH
    proc = venv_setup("whisperx", "--installer", "uv", "--venv-dir", str(tmp_path / "v"), "--json", env=no_uv)
    assert proc.returncode == 1
    (result,) = json.loads(proc.stdout)
    assert result["status"] == "failed" and "--installer uv: no uv in" in result["error"]
    assert not (tmp_path / "v" / "whisperx").exists()


def test_backend_venvs_share_one_copy_of_torch():
    """The venvs scripts/test.sh built: uv hard-links each package from its cache, so torch is on disk once."""
    venv_dir = ROOT / "venv"
    names = [n for n in ("whisperx", "translation", "mlx") if (venv_dir / n / STAMP_NAME).is_file()]
    stamps = {n: json.loads((venv_dir / n / STAMP_NAME).read_text()) for n in names}
    if len(names) < 2 or any(s.get("installer") != "uv" for s in stamps.values()):
        have = {n: s.get("installer") for n, s in stamps.items()}
        pytest.skip(f"needs two backend venvs set up by uv (have {have})")
    libs = [next((venv_dir / n / "lib").glob("python3.*/site-packages/torch/lib/libtorch_cpu.so")) for n in names]
    inodes = {lib.stat().st_ino for lib in libs}
    assert len(inodes) == 1, f"{libs} are separate copies"
    assert libs[0].stat().st_nlink >= len(names) + 1  # the venvs and uv's cache
