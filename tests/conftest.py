"""Shared fixtures: a local HF-compatible hub serving the catalog's repos, cache-models run against it as a real
subprocess, and a cache provisioned with tiny.en. What they are built from lives in tests/support."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import universe as hub_universe
from support.shell import Cli, provision


@pytest.fixture(scope="session")
def tiny_en_files() -> dict[str, bytes]:
    return hub_universe.tiny_en_files()


@pytest.fixture()
def universe(tiny_en_files, request):
    """The test hub serving the catalog; it speaks Xet as the Hub does, or plain HTTP only (a mirror without Xet) for
    a test marked `plain_http` (one that paces, cuts or counts the HTTP bodies of large files)."""
    u = hub_universe.build_universe(tiny_en_files, xet=request.node.get_closest_marker("plain_http") is None)
    u.hub.start()
    try:
        yield u
    finally:
        u.hub.stop()


@pytest.fixture()
def cli(universe, tmp_path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home, tmp_path / "cache", universe.hub.url, universe.hub.url + "/assets")


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory) -> Path:
    """A cache holding tiny.en, provisioned by cache-models.sh from the test hub; the hub is stopped afterwards."""
    cache = tmp_path_factory.mktemp("pipeline") / "cache"
    provision(cache, "--whisperx", "--asr-model", "tiny.en")
    return cache
