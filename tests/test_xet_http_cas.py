"""TestHub(xet="http"): the hub's Xet CAS served over HTTP (tests/support/xet_cas.py), so hf-xet's own client
downloads Xet files through a socket the tests can count, pace and cut. Each download is real `hf_hub_download` in a
fresh process, its caches (HF_HOME, HF_XET_CACHE) under tmp_path: hf-xet reads its settings once per process."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.hub import HubRepo, TestHub
from support.shell import scrubbed_env

REPO = "org/xet-http"
BIG = "model.safetensors"
MB = 1_000_000

# argv: endpoint repo file cache_dir; prints the path and the seconds hf_hub_download took (imports left out)
DOWNLOAD = """
import json, sys, time
from huggingface_hub import hf_hub_download
endpoint, repo, file, cache_dir = sys.argv[1:]
started = time.monotonic()
path = hf_hub_download(repo, file, cache_dir=cache_dir, endpoint=endpoint)
print(json.dumps({"path": path, "seconds": time.monotonic() - started}))
"""


def download(hub: TestHub, tmp_path: Path, file: str = BIG) -> dict:
    """hf_hub_download of one file of REPO in a fresh process, every cache under tmp_path; its JSON answer."""
    env = scrubbed_env(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(tmp_path / "hf-home"),
        HF_XET_CACHE=str(tmp_path / "xet-cache"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    cmd = [sys.executable, "-c", DOWNLOAD, hub.url, REPO, file, str(tmp_path / "hub-cache")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def data() -> bytes:
    """4 MB of random bytes (no chunk of it in the shared store yet: every test sees its whole size fetched)."""
    return random.Random().randbytes(4 * MB)


@pytest.fixture
def hub(data: bytes) -> Iterator[TestHub]:
    """A started hub serving REPO (one Xet-backed file, one plain file) with its Xet CAS over HTTP."""
    with TestHub([HubRepo(REPO, {BIG: data, "config.json": b"{}"})], xet="http") as server:
        assert server.is_xet(REPO, BIG) and not server.is_xet(REPO, "config.json")
        server.reset_requests()
        yield server
    assert server.threads == []


def test_hf_hub_download_fetches_a_xet_file_from_the_http_cas_and_none_of_it_over_plain_http(hub, data, tmp_path):
    assert hub.xet_endpoint == hub.xet_cas.url and hub.xet_endpoint.startswith("http://127.0.0.1:")
    got = download(hub, tmp_path)
    assert Path(got["path"]).read_bytes() == data
    # random bytes do not compress: xorbs hold them plus an 8-byte header per chunk (~64 KiB)
    assert len(data) <= hub.xet_bytes_sent <= 1.01 * len(data)
    xorbs = [r for r in hub.xet_requests if r.path.startswith("/xorbs/")]
    assert xorbs and all(r.status == 206 and r.range.startswith("bytes=") for r in xorbs)
    assert sum(r.sent for r in xorbs) == hub.xet_bytes_sent
    assert any(r.path.startswith("/v1/reconstructions/") and r.status == 200 for r in hub.xet_requests)
    assert sum(r.bytes_sent for r in hub.file_gets(REPO, BIG)) == 0  # hf-xet fetched it, not the CDN
    assert any("/xet-read-token/" in r.path for r in hub.requests)  # the refresh route pointed hf-xet here

    hub.reset_requests()
    assert hub.xet_bytes_sent == 0 and hub.xet_requests == []
    assert Path(download(hub, tmp_path, "config.json")["path"]).read_bytes() == b"{}"
    assert hub.xet_requests == []  # a plain file never touches the CAS


def test_a_paced_xet_transfer_takes_at_least_size_over_rate(hub, data, tmp_path):
    rate = 8 * MB
    hub.xet_throttle(rate)
    got = download(hub, tmp_path)
    assert Path(got["path"]).read_bytes() == data
    assert got["seconds"] >= len(data) / rate, got
    assert hub.xet_bytes_sent >= len(data)


def test_a_xet_transfer_cut_midway_is_retried_by_hf_xet_and_completes(hub, data, tmp_path):
    hub.xet_cut_after(len(data) // 2)
    got = download(hub, tmp_path)
    assert Path(got["path"]).read_bytes() == data
    assert hub.xet_cas.cuts == 1 and hub.xet_cas.cut_after is None  # one cut, then disarmed
    assert [r.sent for r in hub.xet_requests if r.cut] == [len(data) // 2]
    assert hub.xet_bytes_sent > len(data)  # the cut range is fetched again, whole


def test_the_cas_stops_with_the_hub_and_the_default_hub_keeps_local_cas(data):
    hub = TestHub([HubRepo(REPO, {BIG: data})], xet="http").start()
    cas_url = hub.xet_endpoint
    hub.stop()
    assert hub.threads == [] and hub.xet_cas.threads == []
    with pytest.raises(RuntimeError):
        hub.xet_endpoint  # noqa: B018 - the property raises once the CAS is stopped
    host, port = cas_url.removeprefix("http://").split(":")
    with pytest.raises(OSError):  # nothing listens there any more
        socket.create_connection((host, int(port)), timeout=1).close()
    with TestHub([HubRepo(REPO, {BIG: data})]) as default:
        assert default.xet_cas is None and default.xet_endpoint.startswith("local://")
        with pytest.raises(RuntimeError):
            default.xet_throttle(1)
    with pytest.raises(ValueError):
        TestHub(xet="yes")  # type: ignore[arg-type]
