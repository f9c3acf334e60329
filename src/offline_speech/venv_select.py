"""Which venvs ./venv-setup builds, and with which Python: the venv table, platform limits, the base interpreter.

Standard library only, like the rest of venv-setup: it runs before any venv exists. Apart from venv_build.py
(one venv's setup) so that the choice of what to build can be read and tested without the machinery that builds it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

# What each venv's stages import: the smoke test after every install, and the up-to-date check.
SMOKE_IMPORTS = {
    "core": ("huggingface_hub", "typer", "rich", "av", "offline_speech"),
    "whisperx": ("whisperx", "faster_whisper", "ctranslate2", "torch", "transformers", "nltk", "offline_speech"),
    # PyPI `indictranstoolkit` installs the module `IndicTransToolkit`.
    "translation": ("transformers", "torch", "sentencepiece", "ctranslate2", "IndicTransToolkit", "offline_speech"),
    "mlx": ("mlx.core", "mlx_whisper", "offline_speech"),
}
VENV_NAMES = tuple(SMOKE_IMPORTS)
MIN_PYTHON = (3, 10)

_INSPECT_SCRIPT = (
    "import json, sys, sysconfig; "
    "print(json.dumps({'version': '%d.%d.%d' % sys.version_info[:3], 'purelib': sysconfig.get_path('purelib')}))"
)

# Venvs whose locks cannot resolve on a platform: (system, machine) -> {venv: why}. torch 2.8 publishes no wheel
# for Intel macOS, and every backend venv needs torch.
UNSUPPORTED = {
    ("darwin", "x86_64"): dict.fromkeys(("whisperx", "translation", "mlx"), "torch 2.8 has no wheel for Intel macOS"),
}
# What creating a venv needs from the system, and the command that installs it where we know it.
VENV_CHECK = "import ensurepip, venv"


class UsageError(Exception):
    """Bad command-line input: exit code 2."""


def unsupported(names: list[str], system: str, machine: str) -> dict[str, str]:
    """{venv: why} for the selected venvs that cannot be built on this platform."""
    table = UNSUPPORTED.get((system.lower(), {"amd64": "x86_64"}.get(machine.lower(), machine.lower())), {})
    return {n: table[n] for n in names if n in table}


def check_can_create_venvs(python: str, version: str) -> None:
    """UsageError naming the install command when `python -m venv` cannot work (Debian's python3-venv)."""
    try:
        proc = subprocess.run([python, "-I", "-c", VENV_CHECK], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"{python}: does not run ({exc})") from None
    if proc.returncode != 0:
        short = ".".join(version.split(".")[:2])
        fix = (
            f"sudo apt-get install python{short}-venv"
            if Path("/etc/debian_version").exists()
            else "install your Python's venv/ensurepip package"
        )
        raise UsageError(f"Python {version} ({python}) cannot create virtualenvs (no ensurepip): {fix}")


def is_apple_silicon(system: str, machine: str) -> bool:
    """True for macOS on arm64, the only platform where MLX uses the GPU."""
    return system.lower() == "darwin" and machine.lower() in ("arm64", "aarch64")


def default_venvs(system: str, machine: str) -> list[str]:
    """The venvs set up when none is named: every backend that runs well on this platform."""
    names = ["core", "whisperx", "translation"]
    if is_apple_silicon(system, machine):
        names.append("mlx")
    return names


def select_venvs(requested: list[str], system: str, machine: str) -> list[str]:
    """Expand `all`, check names, drop duplicates; returned in setup order (core first)."""
    unknown = [n for n in requested if n not in VENV_NAMES and n != "all"]
    if unknown:
        raise UsageError(f"unknown venv {unknown[0]!r} (choose from {', '.join(VENV_NAMES)}, all)")
    if not requested:
        wanted = set(default_venvs(system, machine))
    elif "all" in requested:
        wanted = set(VENV_NAMES)
    else:
        wanted = set(requested)
    return [n for n in VENV_NAMES if n in wanted]


def inspect_python(python: str | Path) -> dict | None:
    """{'version', 'purelib'} of an interpreter, or None when it is missing or does not run."""
    try:
        proc = subprocess.run(
            [str(python), "-I", "-c", _INSPECT_SCRIPT], check=False, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return None


def version_tuple(version: str) -> tuple[int, ...]:
    """'3.11.7' -> (3, 11, 7)."""
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def resolve_base_python(given: str | None) -> tuple[str, str]:
    """(path, version) of the interpreter that creates the venvs; UsageError when unusable."""
    if given is None:
        # Inside a venv, create from the interpreter that venv was made from.
        python = getattr(sys, "_base_executable", None) or sys.executable
    else:
        python = shutil.which(given) or given
        if not Path(python).is_file():
            raise UsageError(f"--python {given}: no such file")
    info = inspect_python(python)
    if info is None:
        raise UsageError(f"--python {python}: does not run")
    if version_tuple(info["version"]) < MIN_PYTHON:
        raise UsageError(f"--python {python}: Python {info['version']} is too old (need >= 3.10)")
    return python, info["version"]
