"""A download to interrupt, for tests/test_interrupt.py and scripts/bench_bundle.py: one catalog repo served with a
big file by a throttled test hub, ./cache-models.sh started as a terminal starts a foreground command (its own
process group, which Ctrl-C signals as a whole), and its partial file watched as it grows."""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

from offline_speech import cache

from . import ROOT
from . import universe as hub_universe
from .hub import TestHub
from .hub_repo import MIB, sha256_hex
from .shell import shim_env

KEY = "align-hi"
REPO = "theainerd/Wav2Vec2-large-xlsr-hindi"
BIG = "pytorch_model.bin"
# huggingface_hub writes a download in 1 MiB pieces: at 10.5 MiB the partial on disk reaches 95 % before the end.
SIZE = 10 * MIB + MIB // 2


def repo_files(size: int = SIZE, seed: int = 11) -> dict[str, bytes]:
    """Every file KEY's loader requests, BIG of `size` random bytes."""
    rng = random.Random(seed)
    return {
        "config.json": b'{"model_type": "wav2vec2"}',
        "preprocessor_config.json": b"{}",
        "vocab.json": b'{"<pad>": 0}',
        "special_tokens_map.json": b"{}",
        "tokenizer_config.json": b"{}",
        BIG: rng.randbytes(size),
    }


def serve(files: dict[str, bytes], xet: bool = False) -> TestHub:
    """A test hub (not started) serving the catalog with REPO holding `files`. Without Xet by default: the hub
    paces and cuts HTTP bodies, while hf-xet reads a local CAS the hub cannot slow down (hub_xet.py)."""
    return hub_universe.build_universe(hub_universe.tiny_en_files(), overrides={REPO: files}, xet=xet).hub


def hub_env(hub: TestHub, cache_root: Path) -> dict[str, str]:
    return {"HF_ENDPOINT": hub.url, "OFFLINE_SPEECH_ASSET_MIRROR": hub.url + "/assets", "HOME": str(cache_root.parent)}


def start(hub: TestHub, cache_root: Path, *keys: str) -> subprocess.Popen:
    """./cache-models.sh KEYS into cache_root, in its own process group."""
    return subprocess.Popen(
        [str(ROOT / "cache-models.sh"), *keys],
        env=shim_env(cache_root, **hub_env(hub, cache_root)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def partials(cache_root: Path, etag: str) -> list[Path]:
    """The partial downloads of blob `etag`: ours (<etag>.incomplete) and huggingface_hub's (<etag>.<random>...)."""
    blobs = cache.repo_dir(cache_root, REPO) / "blobs"
    return list(blobs.glob(f"{etag}*.incomplete")) if blobs.is_dir() else []


def wait_for_partial(
    proc: subprocess.Popen, cache_root: Path, data: bytes, fraction: float, timeout: float = 60
) -> int:
    """Poll until a partial download of `data` holds at least `fraction` of it; its size (RuntimeError if the run
    ends first or it takes longer than `timeout`)."""
    etag = sha256_hex(data)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for p in partials(cache_root, etag):
            try:
                size = p.stat().st_size
            except FileNotFoundError:
                continue
            if size >= fraction * len(data):
                return size
        time.sleep(0.01)
    proc.kill()
    raise RuntimeError(f"no partial download of {fraction:.0%} appeared: {proc.communicate()}")


def fetched(hub: TestHub, path: str = BIG) -> int:
    """Body bytes the hub (and its CDN) sent for GETs of one file of REPO."""
    return sum(r.bytes_sent for r in hub.file_gets(REPO, path))
