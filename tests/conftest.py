"""Shared fixtures: a local HF-compatible hub serving the catalog's repos, and the CLI run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import universe as hub_universe
from universe import TINY_EN_COMMIT, TINY_EN_REPO  # noqa: F401 - re-exported for the tests

ROOT = Path(__file__).resolve().parents[1]


def venv_python(name: str) -> Path:
    """A backend venv's python; the README's test command creates them, so a missing one is a failure."""
    path = ROOT / "venv" / name / "bin" / "python"
    if not path.exists():
        pytest.fail(f"venv/{name} is missing: the test command runs ./venv-setup first")
    return path


@pytest.fixture(scope="session")
def tiny_en_files() -> dict[str, bytes]:
    return hub_universe.tiny_en_files()


@pytest.fixture()
def universe(tiny_en_files):
    u = hub_universe.build_universe(tiny_en_files)
    u.hub.start()
    try:
        yield u
    finally:
        u.hub.stop()


@dataclass
class Cli:
    """Runs cache-models (and later the other commands) as a real subprocess against the test hub."""

    home: Path
    cache: Path
    endpoint: str
    asset_mirror: str

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "OFFLINE_SPEECH_"))}
        env.update(
            HOME=str(self.home),
            XDG_CACHE_HOME=str(self.home / ".cache"),
            HF_ENDPOINT=self.endpoint,
            OFFLINE_SPEECH_ASSET_MIRROR=self.asset_mirror,
            OFFLINE_SPEECH_PLATFORM="linux-x86_64",
            COLUMNS="200",
        )
        env.update(extra)
        return env

    def args(self, *args: str, netns: bool = False) -> list[str]:
        prefix = ["unshare", "-n"] if netns else []
        return [*prefix, sys.executable, "-m", "offline_speech", "cache-models", *args, "--cache-dir", str(self.cache)]

    def run(self, *args: str, check_code: int | None = 0, netns: bool = False, **extra: str) -> subprocess.CompletedProcess:
        """Run cache-models; netns=True runs it in a fresh network namespace (no network at all)."""
        proc = subprocess.run(self.args(*args, netns=netns), env=self.env(**extra), capture_output=True, text=True, timeout=600)
        if check_code is not None:
            assert proc.returncode == check_code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def json(self, *args: str, check_code: int | None = 0, netns: bool = False, **extra: str) -> dict:
        proc = self.run(*args, "--json", check_code=check_code, netns=netns, **extra)
        return json.loads(proc.stdout)

    def popen(self, *args: str, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(self.args(*args), env=self.env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture()
def cli(universe, tmp_path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home, tmp_path / "cache", universe.hub.url, universe.hub.url + "/assets")
