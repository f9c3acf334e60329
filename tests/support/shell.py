"""The project's commands run as a user runs them, from tests and benchmarks: the shims and the CLI as real
subprocesses, in an environment scrubbed of the caller's hub, cache, token and platform settings, and caches
provisioned by cache-models.sh from a test hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from offline_speech.settings import backend_python

from . import ROOT
from . import universe as hub_universe
from .sample import CLIP

# What a test must not inherit from the shell that runs it: another hub, cache or token (HF_*, HUGGING*), and the
# project's own settings (OFFLINE_SPEECH_CACHE, _PLATFORM, _ASSET_MIRROR).
SCRUBBED = ("HF_", "HUGGING", "OFFLINE_SPEECH_")
PLATFORM = "linux-x86_64"  # the platform the tests claim, whatever the machine (--all differs on darwin-arm64)


def venv_python(name: str) -> Path:
    """A backend venv's python; the README's test command creates them, so a missing one is a failure."""
    path = backend_python(name, ROOT / "venv")
    if not path.exists():
        pytest.fail(f"venv/{name} is missing: the test command runs ./venv-setup first")
    return path


def scrubbed_env(**variables: str) -> dict[str, str]:
    """os.environ without the SCRUBBED variables, with `variables` set."""
    return {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED)} | variables


def shim_env(cache: Path, platform: str = PLATFORM, **variables: str) -> dict[str, str]:
    """The environment the tests run the shims in: scrubbed, this cache, a fixed platform, wide output."""
    fixed = {"OFFLINE_SPEECH_PLATFORM": platform, "OFFLINE_SPEECH_CACHE": str(cache), "COLUMNS": "200"}
    return scrubbed_env(**(fixed | variables))


def shim(
    name: str,
    *args: str,
    cache: Path,
    code: int | None = 0,
    netns: bool = False,
    timeout: float = 900,
    platform: str = PLATFORM,
    **variables: str,
) -> subprocess.CompletedProcess:
    """Run the shim ./NAME (cache-models.sh, prepare-job.sh, run-pipeline.sh) in shim_env(cache, platform,
    **variables); netns=True runs it in a fresh network namespace (no network at all); `code` is the exit status it
    must end with (None: any)."""
    cmd = (["unshare", "-n"] if netns else []) + [str(ROOT / name), *args]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=shim_env(cache, platform, **variables), timeout=timeout
    )
    if code is not None:
        assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def prepare(out: Path, cache: Path, *args: str, media: Path = CLIP, netns: bool = False) -> str:
    """prepare-job.sh --media MEDIA --asr-model tiny.en into `out`; the job id, which it prints last."""
    proc = shim(
        "prepare-job.sh",
        "--media",
        str(media),
        "--asr-model",
        "tiny.en",
        "--out-dir",
        str(out),
        *args,
        cache=cache,
        netns=netns,
    )
    return proc.stdout.strip().splitlines()[-1]


def run_pipeline(out: Path, cache: Path, *ids: str, code: int | None = 0, netns: bool = False, extra: tuple = ()):
    """run-pipeline.sh -j ID ... --out-dir OUT [extra]."""
    args = [a for i in ids for a in ("-j", i)]
    return shim("run-pipeline.sh", *args, "--out-dir", str(out), *extra, cache=cache, code=code, netns=netns)


def provision(
    cache: Path,
    *flags: str,
    overrides: dict[str, dict[str, bytes]] | None = None,
    token: bool = False,
    code: int | None = 0,
    timeout: float = 600,
    assets: dict[str, bytes] | None = None,
) -> subprocess.CompletedProcess:
    """cache-models.sh FLAGS into `cache` from a test hub serving the catalog (the real tiny.en, stand-ins for the
    rest, `overrides` as repo -> files, `assets` as asset path -> bytes), stopped afterwards; token=True gives the
    hub's token for its gated repos."""
    u = hub_universe.build_universe(hub_universe.tiny_en_files(), overrides=overrides)
    for path, data in (assets or {}).items():
        u.hub.add_asset(path, data)
    with u.hub:
        hub = {
            "HF_ENDPOINT": u.hub.url,
            "OFFLINE_SPEECH_ASSET_MIRROR": u.hub.url + "/assets",
            "HOME": str(cache.parent),
        }
        if token:
            hub["HF_TOKEN"] = u.token
        return shim("cache-models.sh", *flags, cache=cache, code=code, timeout=timeout, **hub)


@dataclass
class Cli:
    """Runs cache-models as a real subprocess against the test hub, with --cache-dir CACHE."""

    home: Path
    cache: Path
    endpoint: str
    asset_mirror: str

    def env(self, **extra: str) -> dict[str, str]:
        fixed = {
            "HOME": str(self.home),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "HF_ENDPOINT": self.endpoint,
            "OFFLINE_SPEECH_ASSET_MIRROR": self.asset_mirror,
            "OFFLINE_SPEECH_PLATFORM": PLATFORM,
            "COLUMNS": "200",
        }
        return scrubbed_env(**(fixed | extra))

    def args(self, *args: str, netns: bool = False) -> list[str]:
        prefix = ["unshare", "-n"] if netns else []
        return [*prefix, sys.executable, "-m", "offline_speech", "cache-models", *args, "--cache-dir", str(self.cache)]

    def run(
        self, *args: str, check_code: int | None = 0, netns: bool = False, **extra: str
    ) -> subprocess.CompletedProcess:
        """Run cache-models; netns=True runs it in a fresh network namespace (no network at all)."""
        proc = subprocess.run(
            self.args(*args, netns=netns), env=self.env(**extra), capture_output=True, text=True, timeout=600
        )
        if check_code is not None:
            assert proc.returncode == check_code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def json(self, *args: str, check_code: int | None = 0, netns: bool = False, **extra: str) -> dict:
        proc = self.run(*args, "--json", check_code=check_code, netns=netns, **extra)
        return json.loads(proc.stdout)

    def popen(self, *args: str, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.args(*args), env=self.env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


def one_line(proc: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """The command failed with exit `code` and said exactly one `error:` line holding every needle, no traceback."""
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
