"""Settings read from the environment, default paths, and the environment of every process that touches models.

The only module that reads `os.environ` (HF_*, OFFLINE_SPEECH_*, TORCH_HOME, NLTK_DATA), and the only one that
writes it: prepare_hub_client, before huggingface_hub is imported. Libraries read their
variables once, at import, so a stage gets them in its process environment before it starts (never by
assigning os.environ after imports). Standard library only: every venv imports it, and venv-setup loads it
before any venv exists.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from .errors import BadInput

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VENV_ROOT = PROJECT_ROOT / "venv"  # venv/<name> per backend (./venv-setup)
DEFAULT_CACHE_ROOT = PROJECT_ROOT / ".cache"
DEFAULT_OUT_DIR = PROJECT_ROOT / "out"
SRC_DIR = PROJECT_ROOT / "src"

CACHE_ENV = "OFFLINE_SPEECH_CACHE"
PLATFORM_ENV = "OFFLINE_SPEECH_PLATFORM"
ASSET_MIRROR_ENV = "OFFLINE_SPEECH_ASSET_MIRROR"
APPLE_SILICON = "darwin-arm64"

# Variables a stage must not inherit: they would point libraries at another cache, another hub, or a token.
_DROPPED_PREFIXES = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TORCH_HOME", "NLTK_DATA", "XDG_CACHE_HOME")


def cache_root(explicit: str | os.PathLike | None = None, environ: Mapping[str, str] = os.environ) -> Path:
    """The cache root: --cache-dir, else OFFLINE_SPEECH_CACHE, else <project>/.cache; BadInput when something other
    than a folder is there."""
    chosen = explicit or environ.get(CACHE_ENV) or DEFAULT_CACHE_ROOT
    root = Path(chosen).expanduser().resolve()
    if root.exists() and not root.is_dir():
        given = "--cache-dir" if explicit else CACHE_ENV if environ.get(CACHE_ENV) else "the cache"
        raise BadInput(f"{given} {root}: is a file, not a folder (the cache root holds the models): give a folder")
    return root


def hub_endpoint(environ: Mapping[str, str] = os.environ) -> str | None:
    """HF_ENDPOINT when set (a mirror, a proxy, the tests' hub); None means huggingface.co."""
    return environ.get("HF_ENDPOINT") or None


def user_hub_cache(environ: Mapping[str, str] = os.environ) -> Path:
    """The user's own Hugging Face hub cache (what --from-hf-cache reads by default): HF_HUB_CACHE, else
    HF_HOME/hub, else $XDG_CACHE_HOME or ~/.cache, /huggingface/hub."""
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"]).expanduser()
    if environ.get("HF_HOME"):
        return Path(environ["HF_HOME"]).expanduser() / "hub"
    xdg = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "~")) / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def asset_mirror(explicit: str | None = None, environ: Mapping[str, str] = os.environ) -> str | None:
    """Base URL replacing download.pytorch.org / GitHub for non-hub assets: --asset-mirror, else the variable."""
    return explicit or environ.get(ASSET_MIRROR_ENV) or None


def platform_parts(environ: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """(system, machine) as platform reports them, or as OFFLINE_SPEECH_PLATFORM (`darwin-arm64`) overrides."""
    override = environ.get(PLATFORM_ENV, "").strip()
    if override:
        system, _, machine = override.partition("-")
        return system, machine
    return platform.system(), platform.machine()


def host_platform(environ: Mapping[str, str] = os.environ) -> str:
    """`<os>-<arch>` of this machine (e.g. darwin-arm64, linux-x86_64); OFFLINE_SPEECH_PLATFORM overrides it."""
    override = environ.get(PLATFORM_ENV, "").strip()
    if override:
        return override
    system, machine = platform_parts(environ)
    machine = machine.lower()
    machine = {"aarch64": "arm64", "amd64": "x86_64"}.get(machine, machine)
    return f"{system.lower()}-{machine}"


def venv_python(venv: Path, windows: bool = sys.platform == "win32") -> Path:
    """The interpreter of a virtualenv folder."""
    return venv / ("Scripts/python.exe" if windows else "bin/python")


def backend_python(name: str, venv_root: Path = VENV_ROOT) -> Path:
    """The interpreter of one of the project's venvs (core, whisperx, translation, mlx)."""
    return venv_python(venv_root / name)


def cache_variables(root: Path) -> dict[str, str]:
    """Where every library finds its files inside the cache root."""
    return {
        "HF_HOME": str(root / "huggingface"),
        "HF_HUB_CACHE": str(root / "huggingface" / "hub"),
        "HF_XET_CACHE": str(root / "huggingface" / "xet"),
        "TORCH_HOME": str(root / "torch"),
        "NLTK_DATA": str(root / "nltk_data"),
    }


def hub_client_variables(root: Path) -> dict[str, str]:
    """What huggingface_hub and hf-xet read when this process downloads into the cache at `root`: hf-xet's chunk
    cache and logs go under the project cache (not ~/.cache/huggingface/xet), and no telemetry, which also spares
    huggingface_hub's daily `/api/agent-harnesses` request and the file it leaves in HF_HOME. HF_HOME itself stays
    the user's: their token is found there (user_token), and the cache is always passed explicitly."""
    return {
        "HF_XET_CACHE": cache_variables(root)["HF_XET_CACHE"],
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "DO_NOT_TRACK": "1",
    }


def prepare_hub_client(
    root: Path, environ: MutableMapping[str, str] = os.environ, modules: Mapping[str, object] = sys.modules
) -> bool:
    """Set hub_client_variables(root) in this process's environment, which is only right before huggingface_hub and
    hf_xet are imported (both read it once, then); False, changing nothing, when either already is (a caller that
    imported them first keeps its own settings). The one place that writes os.environ: cache-models calls it first
    thing, before anything imports the hub library."""
    if "huggingface_hub" in modules or "hf_xet" in modules:
        return False
    environ.update(hub_client_variables(root))
    return True


def offline_env(root: Path, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment for a stage process: project cache, no network, no telemetry, no token, our src/."""
    env = {k: v for k, v in base.items() if not k.startswith(_DROPPED_PREFIXES)}
    env.update(cache_variables(root))
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_UPDATE_CHECK="1",
        HF_HUB_DISABLE_IMPLICIT_TOKEN="1",
        PYANNOTE_METRICS_ENABLED="0",
        ORT_DISABLE_TELEMETRY="1",
        DO_NOT_TRACK="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(SRC_DIR),
    )
    return env


def user_token(environ: Mapping[str, str] = os.environ) -> str | None:
    """The user's hub token: HF_TOKEN, else the token file of their own (global) hub login, else None.

    The project-local HF_HOME never holds a token; this reads the user's, and callers pass it to
    huggingface_hub in memory only.
    """
    token = environ.get("HF_TOKEN") or environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token.strip()
    candidates = []
    if environ.get("HF_TOKEN_PATH"):
        candidates.append(Path(environ["HF_TOKEN_PATH"]))
    if environ.get("HF_HOME"):
        candidates.append(Path(environ["HF_HOME"]) / "token")
    xdg = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "~")) / ".cache")
    candidates.append(Path(xdg).expanduser() / "huggingface" / "token")
    for path in candidates:
        try:
            text = path.expanduser().read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return None
