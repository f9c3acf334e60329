"""The command line as a user meets it: -h and --version everywhere, one-line usage errors (exit 2), one JSON
document per --json, shims that work through symlinks, venv-setup's platform and system checks."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from support import ROOT
from support.sample import CLIP
from support.shell import PLATFORM, scrubbed_env

SHIMS = ("cache-models.sh", "prepare-job.sh", "run-pipeline.sh")


def run(*cmd: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """A command as a user in a narrow (80 column) terminal-less shell runs it."""
    base = scrubbed_env(OFFLINE_SPEECH_PLATFORM=PLATFORM, COLUMNS="80")
    return subprocess.run(list(cmd), capture_output=True, text=True, env=base | (env or {}), cwd=cwd, timeout=120)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("shim", SHIMS)
def test_every_command_has_short_help_and_version(shim):
    for flag in ("-h", "--help"):
        proc = run(str(ROOT / shim), flag)
        assert proc.returncode == 0 and proc.stdout.startswith(f"Usage: {shim}"), proc.stderr
        assert "--version" in proc.stdout and "-h, --help" in proc.stdout
    proc = run(str(ROOT / shim), "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"{shim} (offline-speech) 0.1.0"
    proc = run(str(ROOT / "venv-setup"), "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == "venv-setup (offline-speech) 0.1.0"


@pytest.mark.parametrize(
    "shim, args, says",
    [
        ("cache-models.sh", ["--bogus"], "No such option: --bogus"),
        ("cache-models.sh", ["--workers", "0"], "Invalid value for '--workers'"),
        ("prepare-job.sh", [], "Missing option '--media'"),
        ("prepare-job.sh", ["--media"], "Option '--media' requires an argument"),
        ("run-pipeline.sh", [], "Missing option '-j' / '--job'"),
        ("run-pipeline.sh", ["-j", "x", "--restart=maybe"], "--restart"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(shim, args, says):
    proc = run(str(ROOT / shim), *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = one_line_error(proc)
    assert says in line and f"{shim} --help" in line


def test_prepare_job_json_is_exactly_one_document(tmp_path):
    out = tmp_path / "out"
    proc = run(
        str(ROOT / "prepare-job.sh"),
        "--media",
        str(CLIP),
        "-s",
        "en",
        "--asr-model",
        "tiny.en",
        "--no-align",
        "--json",
        "--out-dir",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert proc.returncode == 0, proc.stderr
    job = json.loads(proc.stdout)  # the whole of stdout is one JSON document
    assert (out / job["id"] / "job.json").is_file()
    assert json.loads((out / job["id"] / "job.json").read_text())["id"] == job["id"]


def test_shims_work_through_symlinks(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "cm").symlink_to(ROOT / "cache-models.sh")
    (bin_dir / "cm2").symlink_to(bin_dir / "cm")  # a chain of links, called from another folder
    proc = run(str(bin_dir / "cm2"), "--info", "--json", "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["cache"] == str(tmp_path / "cache")


def test_shims_fail_with_one_line_without_the_core_venv(tmp_path):
    copy = tmp_path / "project"
    copy.mkdir()
    for shim in SHIMS:
        (copy / shim).write_bytes((ROOT / shim).read_bytes())
        (copy / shim).chmod(0o755)
        proc = run(str(copy / shim), "-h")
        assert proc.returncode == 2
        assert one_line_error(proc) == f"error: {copy}/venv/core is missing: run {copy}/venv-setup core first"


def test_venv_setup_names_the_venvs_a_platform_cannot_have_and_builds_the_rest():
    proc = run(
        str(ROOT / "venv-setup"), "core", "whisperx", "translation", env={"OFFLINE_SPEECH_PLATFORM": "darwin-x86_64"}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first, *rest = proc.stdout.splitlines()
    assert first.startswith("whisperx, translation: cannot be built on darwin-x86_64 (torch 2.8 has no wheel")
    assert "core: up to date" in rest
    proc = run(str(ROOT / "venv-setup"), "whisperx", env={"OFFLINE_SPEECH_PLATFORM": "darwin-x86_64"})
    assert proc.returncode == 2 and "whisperx cannot be built on darwin-x86_64" in proc.stderr


def test_venv_setup_checks_the_system_can_make_venvs_before_anything_slow(tmp_path):
    # A Python like Debian's without python3-venv: everything runs except ensurepip.
    python = tmp_path / "python3"
    python.write_text(
        '#!/bin/sh\ncase "$*" in *ensurepip*) echo "No module named ensurepip" >&2; exit 1;; esac\n'
        f'exec {os.path.realpath(ROOT / "venv/core/bin/python")} "$@"\n'
    )
    python.chmod(0o755)
    proc = run(str(ROOT / "venv-setup"), "--python", str(python), "--venv-dir", str(tmp_path / "venvs"), "core")
    assert proc.returncode == 2
    assert "cannot create virtualenvs (no ensurepip)" in proc.stderr and "-venv" in proc.stderr
    assert not (tmp_path / "venvs").exists()


def _read_pty(master: int, proc: subprocess.Popen, deadline: float) -> list[tuple[float, str]]:
    """Every line the process writes to its terminal, with the time it arrived, until it exits."""
    import select
    import time

    lines, buffer = [], b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child side closed
                chunk = b""
            if not chunk and proc.poll() is not None:
                break
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines += [(time.monotonic(), line.decode(errors="replace").rstrip("\r")) for line in complete]
        elif proc.poll() is not None:
            break
    return lines


@pytest.mark.plain_http
def test_term_dumb_on_a_terminal_shows_progress_lines_as_they_happen(cli, universe):
    """A terminal with TERM=dumb cannot draw bars: it gets the plain progress lines a pipe gets, while the download
    runs (not all at the end), and no escape sequences."""
    import pty
    import time

    universe.hub.throttle(2_000_000)  # tiny.en's 75 MB model.bin: tens of seconds, so the lines come in over time
    master, child = pty.openpty()
    proc = subprocess.Popen(
        cli.args("--whisperx", "--asr-model", "tiny.en"),
        env=cli.env(TERM="dumb"),
        stdin=child,
        stdout=child,
        stderr=child,
    )
    os.close(child)
    try:
        lines = _read_pty(master, proc, time.monotonic() + 300)
    finally:
        universe.hub.throttle(None)
        proc.kill()
        proc.wait()
        os.close(master)
    assert proc.returncode == 0, lines
    text = [t for _, t in lines]
    assert not any("\x1b" in t for t in text), text
    fetching = [when for when, t in lines if t.startswith("fetching ")]
    percents = [when for when, t in lines if t.strip().endswith("%") or "% of" in t]
    assert fetching and len(percents) >= 3, text
    ended = lines[-1][0]
    assert ended - fetching[0] > 5 and ended - percents[0] > 3, "progress lines came only at the end"


def test_all_says_in_one_line_that_mlx_was_left_out_off_apple_silicon(cli):
    proc = cli.run("--all", "--dry-run", check_code=None, OFFLINE_SPEECH_PLATFORM="linux-x86_64")
    notes = [line for line in proc.stderr.splitlines() if "MLX" in line]
    assert len(notes) == 1 and "leaves out MLX" in notes[0] and "Apple Silicon" in notes[0], proc.stderr
    assert "mlx-" not in proc.stdout
    arm = cli.run("--all", "--dry-run", check_code=None, OFFLINE_SPEECH_PLATFORM="darwin-arm64")
    assert "leaves out MLX" not in arm.stderr and "mlx-" in arm.stdout


def test_dry_run_footer_never_says_fits_when_an_entry_could_not_be_planned(cli):
    """The diarization repo is gated and no token is set: it cannot be planned, so the footer says so."""
    proc = cli.run("--whisperx", "--asr-model", "tiny.en", "--diarization", "--dry-run", check_code=None)
    footer = proc.stdout.strip().splitlines()[-1]
    assert "could not be planned" in footer and "fits" not in footer, proc.stdout
    plan = json.loads(
        cli.run("--whisperx", "--asr-model", "tiny.en", "--diarization", "--dry-run", "--json", check_code=None).stdout
    )
    failed = [r for r in plan["plan"] if r["error"]]
    assert [r["key"] for r in failed] == ["pyannote-speaker-diarization-community-1"] and "gated" in failed[0][
        "error"
    ], plan
