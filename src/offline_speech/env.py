"""The environment of every process that touches models: the only module that knows HF_*/TORCH_HOME/NLTK_DATA.

Libraries read these variables once, at import, so they are set in a child process's environment before it
starts (never by assigning os.environ after imports). Standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VENV_ROOT = PROJECT_ROOT / "venv"  # venv/<name> per backend (./venv-setup)
DEFAULT_CACHE_ROOT = PROJECT_ROOT / ".cache"

# Variables a stage must not inherit: they would point libraries at another cache, another hub, or a token.
_DROPPED_PREFIXES = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TORCH_HOME", "NLTK_DATA", "XDG_CACHE_HOME")


def cache_root(explicit: str | os.PathLike | None = None, environ: Mapping[str, str] = os.environ) -> Path:
    """The cache root: --cache-dir, else OFFLINE_SPEECH_CACHE, else <project>/.cache."""
    chosen = explicit or environ.get("OFFLINE_SPEECH_CACHE") or DEFAULT_CACHE_ROOT
    return Path(chosen).expanduser().resolve()


def cache_variables(root: Path) -> dict[str, str]:
    """Where every library finds its files inside the cache root."""
    return {
        "HF_HOME": str(root / "huggingface"),
        "HF_HUB_CACHE": str(root / "huggingface" / "hub"),
        "TORCH_HOME": str(root / "torch"),
        "NLTK_DATA": str(root / "nltk_data"),
    }


def offline_env(root: Path, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment for a stage process: project cache, no network, no telemetry, no token."""
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
        DO_NOT_TRACK="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
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
