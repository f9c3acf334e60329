"""A stdlib-only Hugging Face Hub stand-in on 127.0.0.1 that real `huggingface_hub` downloads work against.

It answers the HTTP subset huggingface_hub 2.4 uses for model repos (model info, tree listing, HEAD/GET resolve
with ranges, typed errors via `X-Error-Code`) plus plain `/assets/...` files, logs every request, and injects
faults (cut connections, error statuses, bandwidth limits). It never sends `X-Xet-*` headers, so clients use
plain HTTP. Run it by hand with `python tests/support/hub.py --serve-dir DIR --repo ORG/NAME`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import socket
import sys
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

__all__ = ["HubRepo", "Request", "TestHub", "git_blob_sha1", "is_lfs_by_default", "sha256_hex"]

MIB = 1024 * 1024
LFS_SUFFIXES = frozenset({".bin", ".safetensors", ".pt", ".pth", ".ckpt", ".npz", ".model", ".msgpack", ".h5", ".onnx"})
_FULL_SPEED_CHUNK = MIB
_TIMESTAMP = "2024-01-01T00:00:00.000Z"  # fixed, so model_info is deterministic
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")


def git_blob_sha1(data: bytes) -> str:
    """Git object id of a blob: sha1 of `blob <len>\\0` + data (the hub's ETag for non-LFS files)."""
    digest = hashlib.sha1(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of data (the hub's ETag for LFS files)."""
    return hashlib.sha256(data).hexdigest()


def is_lfs_by_default(path: str, data: bytes) -> bool:
    """Whether the hub would store this file in LFS: bigger than 1 MiB or a weights-like suffix."""
    return len(data) > MIB or Path(path).suffix in LFS_SUFFIXES


@dataclass(frozen=True)
class _FileMeta:
    """Precomputed hashes of one served file."""

    data: bytes
    blob_id: str  # git oid as listed by the tree endpoint (of the LFS pointer for LFS files)
    sha256: str | None  # only for LFS files
    pointer_size: int | None

    @classmethod
    def build(cls, data: bytes, lfs: bool) -> _FileMeta:
        if not lfs:
            return cls(data, git_blob_sha1(data), None, None)
        sha = sha256_hex(data)
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()
        return cls(data, git_blob_sha1(pointer), sha, len(pointer))

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id

    def tree_entry(self, path: str) -> dict:
        entry: dict = {"type": "file", "oid": self.blob_id, "size": len(self.data), "path": path}
        if self.sha256 is not None:
            entry["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": self.pointer_size}
        return entry


@dataclass
class HubRepo:
    """A model repo served at one commit (reachable as "main" or by that commit)."""

    repo_id: str
    files: dict[str, bytes]
    commit: str | None = None
    lfs: set[str] | None = None
    gated: bool = False
    tokens: frozenset[str] = frozenset()
    _meta: dict[str, _FileMeta] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        org, _, name = self.repo_id.partition("/")
        if not org or not name or "/" in name:
            raise ValueError(f"repo_id must be ORG/NAME, got {self.repo_id!r}")
        if self.lfs is None:
            self.lfs = {path for path, data in self.files.items() if is_lfs_by_default(path, data)}
        if unknown := set(self.lfs) - self.files.keys():
            raise ValueError(f"lfs names files the repo lacks: {sorted(unknown)}")
        self.tokens = frozenset(self.tokens)
        # Hash once here: a 75 MB model must not be rehashed per request.
        self._meta = {p: _FileMeta.build(d, p in self.lfs) for p, d in sorted(self.files.items())}
        if self.commit is None:
            digest = hashlib.sha1(self.repo_id.encode())
            for path, meta in self._meta.items():
                digest.update(f"\0{path}\0{meta.blob_id}".encode())
            self.commit = digest.hexdigest()
        elif not _COMMIT_RE.fullmatch(self.commit):
            raise ValueError(f"commit must be 40 lowercase hex digits, got {self.commit!r}")


@dataclass
class Request:
    """One request as the server saw it; never holds the token itself."""

    method: str
    path: str  # percent-decoded, without the query
    query: str
    status: int
    bytes_sent: int = 0  # body bytes handed to the socket
    authorization: bool = False  # whether an Authorization header was sent
    range: str | None = None  # the Range header, if any


class TestHub:
    """HF-compatible server for tests: `with TestHub([HubRepo(...)]) as hub:` then use `hub.url` as endpoint."""

    __test__ = False  # despite the name, not a pytest test class

    def __init__(
        self,
        repos: Iterable[HubRepo] = (),
        assets: dict[str, bytes] | None = None,
        *,
        tree_page_size: int = 1000,
    ) -> None:
        self._lock = threading.Lock()
        self._repos: dict[str, HubRepo] = {}
        self._history: dict[tuple[str, str | None], HubRepo] = {}  # (repo, commit) -> an older main
        self._assets: dict[str, bytes] = dict(assets or {})
        self._log: list[Request] = []
        self._cuts: dict[tuple[str | None, str], list[int]] = {}  # key -> [nbytes, times left]
        self._failures: tuple[int, int] = (0, 503)  # (requests left, status)
        self._rate: int | None = None
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._conn_threads: list[threading.Thread] = []
        self.tree_page_size = tree_page_size  # the real hub pages at 1000 entries
        for repo in repos:
            self.add_repo(repo)

    # -- content ------------------------------------------------------------------------------------
    def add_repo(self, repo: HubRepo, *, keep_history: bool = False) -> HubRepo:
        """Serve (or replace) a repo. Replacing moves `main` to the new commit; with keep_history the commit it
        replaces stays reachable by its id (a branch that moved on), otherwise that commit is gone (history
        rewritten)."""
        with self._lock:
            old = self._repos.get(repo.repo_id)
            if keep_history and old is not None and old.commit != repo.commit:
                self._history[(repo.repo_id, old.commit)] = old
            self._repos[repo.repo_id] = repo
            self._history.pop((repo.repo_id, repo.commit), None)
        return repo

    def add_asset(self, path: str, data: bytes) -> None:
        """Serve data at `{url}/assets/{path}` (a stand-in for non-hub mirrors)."""
        with self._lock:
            self._assets[path.lstrip("/")] = data

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self, port: int = 0) -> TestHub:
        """Listen on 127.0.0.1 (ephemeral port by default) in a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self, ("127.0.0.1", port))
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits up to one poll interval
            name=f"testhub-serve:{self._server.server_address[1]}",
            daemon=True,
        )
        self._serve_thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and every open connection, then join all server threads."""
        server, serve_thread = self._server, self._serve_thread
        if server is None or serve_thread is None:
            return
        self._stopping.set()  # wakes throttled writers
        server.shutdown()
        server.server_close()
        with self._lock:
            conns, threads = list(self._conns), list(self._conn_threads)
        for sock in conns:
            # Keep-alive connections would otherwise stay usable (and their threads blocked in recv).
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in [*threads, serve_thread]:
            thread.join(timeout=5)
        self._server = self._serve_thread = None
        with self._lock:
            self._conn_threads = [t for t in self._conn_threads if t.is_alive()]

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT (use as HF_ENDPOINT)."""
        if self._server is None:
            raise RuntimeError("TestHub is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def threads(self) -> list[threading.Thread]:
        """Server threads still alive (empty after stop())."""
        with self._lock:
            threads = [t for t in self._conn_threads if t.is_alive()]
        if self._serve_thread is not None and self._serve_thread.is_alive():
            threads.append(self._serve_thread)
        return threads

    def __enter__(self) -> TestHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request log --------------------------------------------------------------------------------
    @property
    def requests(self) -> list[Request]:
        """A snapshot (copies) of the request log, oldest first."""
        with self._lock:
            return [replace(r) for r in self._log]

    def reset_requests(self) -> None:
        """Forget the logged requests."""
        with self._lock:
            self._log.clear()

    # -- fault injection ----------------------------------------------------------------------------
    def cut_after(self, repo_id: str | None, path: str, nbytes: int, times: int = 1) -> None:
        """Next `times` GETs of the file (repo_id None: of the asset) send full headers, nbytes of body, then close."""
        if nbytes < 0 or times < 1:
            raise ValueError("need nbytes >= 0 and times >= 1")
        with self._lock:
            self._cuts[(repo_id, path)] = [nbytes, times]

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next n requests, whatever they are, answer `status` with an empty JSON body."""
        with self._lock:
            self._failures = (n, status)

    def throttle(self, bytes_per_second: int | None) -> None:
        """Pace file and asset GET bodies to this rate (None: full speed); applies to responses in flight too."""
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive or None")
        self._rate = bytes_per_second

    # -- internals used by the handler --------------------------------------------------------------
    def _take_failure(self) -> int | None:
        with self._lock:
            left, status = self._failures
            if left <= 0:
                return None
            self._failures = (left - 1, status)
            return status

    def _take_cut(self, key: tuple[str | None, str]) -> int | None:
        with self._lock:
            entry = self._cuts.get(key)
            if entry is None:
                return None
            entry[1] -= 1
            if entry[1] == 0:
                del self._cuts[key]
            return entry[0]

    def _record(self, request: Request) -> None:
        with self._lock:
            self._log.append(request)

    def _repo(self, repo_id: str) -> HubRepo | None:
        with self._lock:
            return self._repos.get(repo_id)

    def _older(self, repo_id: str, commit: str) -> HubRepo | None:
        with self._lock:
            return self._history.get((repo_id, commit))

    def _asset(self, path: str) -> bytes | None:
        with self._lock:
            return self._assets.get(path)

    def _track(self, sock: socket.socket, thread: threading.Thread) -> None:
        with self._lock:
            self._conns.add(sock)
            self._conn_threads = [t for t in self._conn_threads if t.is_alive()]
            self._conn_threads.append(thread)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.discard(sock)


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer whose connection threads and sockets the hub can find and close."""

    daemon_threads = True

    def __init__(self, hub: TestHub, address: tuple[str, int]) -> None:
        self.hub = hub
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:  # type: ignore[override]
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"testhub-conn:{self.server_address[1]}",
            daemon=True,
        )
        self.hub._track(request, thread)
        thread.start()

    def shutdown_request(self, request) -> None:  # type: ignore[override]
        self.hub._untrack(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:  # type: ignore[override]
        # Clients hanging up, cuts and stop() end connections mid-write: expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


def _parse_range(header: str, size: int) -> range | None:
    """Byte span a single `bytes=` range asks for; None to ignore the header, an empty range if unsatisfiable."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if match is None or match.groups() == ("", ""):
        return None  # multi-range or malformed: a server may ignore Range and send everything
    first, last = match.groups()
    if first == "":
        start = max(size - int(last), 0)
        stop = size
    else:
        start = int(first)
        stop = min(int(last) + 1, size) if last else size
    return range(start, stop) if start < size else range(0)


class _Handler(BaseHTTPRequestHandler):
    """Routes one HTTP/1.1 keep-alive connection's requests."""

    protocol_version = "HTTP/1.1"  # keep-alive: httpx reuses connections
    server_version = "TestHub/1.0"
    timeout = 60  # an idle keep-alive connection must not pin a thread forever
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle + delayed ACK add ~40 ms per
        # keep-alive request on loopback, which a real hub does not, and request counts would dominate timings.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        pass  # hub.requests is the log

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    do_PUT = do_DELETE = do_PATCH = do_POST

    # -- plumbing -----------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        hub = self.server.hub
        split = urlsplit(self.path)
        self._raw_path = split.path
        self._rec = Request(
            method=self.command,
            path=unquote(split.path),
            query=split.query,
            status=0,
            authorization="Authorization" in self.headers,
            range=self.headers.get("Range"),
        )
        if length := int(self.headers.get("Content-Length") or 0):
            self.rfile.read(length)  # drain a body so the connection stays in sync
        if (status := hub._take_failure()) is not None:
            return self._send(status, {"Content-Type": "application/json"}, b"{}")
        # Split before decoding: revisions arrive with "/" encoded as %2F, file paths with real "/".
        segs = split.path.split("/")[1:]
        if self.command in ("GET", "HEAD"):
            if segs[:2] == ["api", "models"] and len(segs) >= 4:
                return self._api(segs[2:], split.query)
            if segs[0] == "assets" and len(segs) > 1:
                return self._serve_asset(unquote("/".join(segs[1:])))
            if len(segs) >= 5 and segs[2] == "resolve":
                return self._resolve(segs)
        self._error(404, None, f"Not found: {self._rec.path}")

    def _send(self, status: int, headers: dict[str, str], body: bytes | memoryview, *,
              throttled: bool = False, cut: int | None = None) -> None:
        """Send a complete response (Content-Length always exact); `cut` truncates the body and hangs up."""
        self._rec.status = status
        self.server.hub._record(self._rec)  # logged before the client can see the answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", self.headers.get("X-Amzn-Trace-Id") or uuid.uuid4().hex)
        self.end_headers()
        if self.command == "HEAD":
            return
        view = memoryview(body)
        self._write(view if cut is None else view[:cut], throttled)
        if cut is not None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # FIN before Content-Length is reached

    def _write(self, body: memoryview, throttled: bool) -> None:
        hub = self.server.hub
        pos = 0
        while pos < len(body):
            if hub._stopping.is_set():
                raise ConnectionAbortedError("hub stopped")
            rate = hub._rate if throttled else None  # re-read per chunk: throttle() affects in-flight bodies
            size = _FULL_SPEED_CHUNK if rate is None else max(1, min(_FULL_SPEED_CHUNK, rate // 10))
            chunk = body[pos : pos + size]
            self._rec.bytes_sent += len(chunk)  # counted before sending so a client never outruns the log
            self.wfile.write(chunk)
            pos += len(chunk)
            if rate is not None:
                hub._stopping.wait(len(chunk) / rate)  # ~0.1 s per chunk; stop() interrupts it

    def _error(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None) -> None:
        """JSON error; `X-Error-Code` is what huggingface_hub turns into a typed exception."""
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if code is not None:
            all_headers["X-Error-Code"] = code
            all_headers["X-Error-Message"] = message
        self._send(status, all_headers, json.dumps({"error": message}).encode())

    def _find_repo(self, org: str, name: str) -> HubRepo | None:
        repo_id = f"{unquote(org)}/{unquote(name)}"
        repo = self.server.hub._repo(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository not found: {repo_id}")
        return repo

    def _at_revision(self, repo: HubRepo, revision: str) -> HubRepo | None:
        """The repo as it is at `revision` ("main", its commit, or a commit main has moved on from)."""
        if revision in ("main", repo.commit):
            return repo
        older = self.server.hub._older(repo.repo_id, revision)
        if older is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return older

    # -- routes -------------------------------------------------------------------------------------
    def _api(self, segs: list[str], query: str) -> None:
        """/api/models/ORG/NAME[/revision/REV | /tree/REV[/PATH]]."""
        org, name, *rest = segs
        if not (rest == [] or (len(rest) == 2 and rest[0] == "revision") or (len(rest) >= 2 and rest[0] == "tree")):
            return self._error(404, None, f"Not found: {self._rec.path}")
        repo = self._find_repo(org, name)
        if repo is None:
            return
        revision = unquote(rest[1]) if rest else "main"
        repo = self._at_revision(repo, revision)
        if repo is None:
            return
        if rest and rest[0] == "tree":
            return self._tree(repo, unquote("/".join(rest[2:])), query)
        self._send(200, {"Content-Type": "application/json"}, json.dumps(_model_info(repo, query)).encode())

    def _tree(self, repo: HubRepo, prefix: str, query: str) -> None:
        params = parse_qs(query)
        recursive = params.get("recursive", ["false"])[0].lower() == "true"
        entries = _tree_entries(repo, prefix.strip("/"), recursive)
        if entries is None:
            return self._error(404, "EntryNotFound", f"{prefix} does not exist on {repo.commit}")
        cursor = int(params.get("cursor", ["0"])[0])
        end = cursor + self.server.hub.tree_page_size
        headers = {"Content-Type": "application/json"}
        if end < len(entries):
            # Same "Link: <...>; rel=next" cursor pagination as the hub; the client follows it verbatim.
            params["cursor"] = [str(end)]
            host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
            next_url = f"http://{host}{self._raw_path}?{urlencode(params, doseq=True)}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        self._send(200, headers, json.dumps(entries[cursor:end]).encode())

    def _resolve(self, segs: list[str]) -> None:
        """/ORG/NAME/resolve/REV/PATH: the file, with the headers hf_hub_download reads on HEAD."""
        org, name, _, rev, *path_segs = segs
        repo = self._find_repo(org, name)
        repo = repo and self._at_revision(repo, unquote(rev))
        if repo is None:
            return
        assert repo.commit is not None
        if repo.gated:
            auth = self.headers.get("Authorization", "")
            token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
            if token not in repo.tokens:
                # Like the hub: 401 when anonymous, 403 when the token has no access; GatedRepo either way.
                message = (f"Access to model {repo.repo_id} is restricted. You must have access to it and be "
                           "authenticated to access it. Please log in.")
                return self._error(401 if token is None else 403, "GatedRepo", message)
        path = unquote("/".join(path_segs))
        meta = repo._meta.get(path)
        if meta is None:
            # X-Repo-Commit lets the client cache the miss under .no_exist/<commit>/.
            return self._error(404, "EntryNotFound", f"{path} does not exist on {repo.commit}",
                               {"X-Repo-Commit": repo.commit})
        headers = {
            "X-Repo-Commit": repo.commit,
            "ETag": f'"{meta.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if meta.sha256 is not None:
            headers["X-Linked-Etag"] = f'"{meta.sha256}"'
            headers["X-Linked-Size"] = str(len(meta.data))
        self._send_bytes(headers, meta.data, (repo.repo_id, path))

    def _serve_asset(self, path: str) -> None:
        data = self.server.hub._asset(path)
        if data is None:
            return self._error(404, None, f"No asset {path}")
        self._send_bytes({"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}, data, (None, path))

    def _send_bytes(self, headers: dict[str, str], data: bytes, cut_key: tuple[str | None, str]) -> None:
        """200 or 206 (Range) with a paced, possibly cut body."""
        status, body = 200, memoryview(data)
        if (header := self.headers.get("Range")) is not None and (span := _parse_range(header, len(data))) is not None:
            if not span:
                return self._send(416, {**headers, "Content-Range": f"bytes */{len(data)}"}, b"")
            status, body = 206, body[span.start : span.stop]
            headers = {**headers, "Content-Range": f"bytes {span.start}-{span.stop - 1}/{len(data)}"}
        cut = self.server.hub._take_cut(cut_key) if self.command == "GET" else None
        self._send(status, headers, body, throttled=True, cut=cut)


def _model_info(repo: HubRepo, query: str) -> dict:
    """Body of /api/models/ORG/NAME; sizes and hashes only with blobs=true, as on the hub."""
    blobs = parse_qs(query).get("blobs", ["false"])[0].lower() == "true"
    siblings = []
    for path, meta in repo._meta.items():
        sibling: dict = {"rfilename": path}
        if blobs:
            sibling.update(size=len(meta.data), blobId=meta.blob_id)
            if meta.sha256 is not None:
                sibling["lfs"] = {"size": len(meta.data), "sha256": meta.sha256, "pointerSize": meta.pointer_size}
        siblings.append(sibling)
    return {
        "_id": (repo.commit or "")[:24],
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": repo.repo_id.split("/")[0],
        "sha": repo.commit,
        "lastModified": _TIMESTAMP,
        "createdAt": _TIMESTAMP,
        "private": False,
        "disabled": False,
        "gated": "manual" if repo.gated else False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
        "usedStorage": sum(len(m.data) for m in repo._meta.values()),
    }


def _tree_entries(repo: HubRepo, prefix: str, recursive: bool) -> list[dict] | None:
    """Tree listing under prefix ("" = root); None if prefix is not a folder."""
    base = f"{prefix}/" if prefix else ""
    files: list[dict] = []
    folders: set[str] = set()
    for path, meta in repo._meta.items():
        if not path.startswith(base):
            continue
        parts = path[len(base):].split("/")
        if not recursive and len(parts) > 1:
            folders.add(base + parts[0])
            continue
        folders.update(base + "/".join(parts[:i]) for i in range(1, len(parts)))
        files.append(meta.tree_entry(path))
    if prefix and not files and not folders:
        return None
    dirs = [{"type": "directory", "oid": hashlib.sha1(f"tree {d}".encode()).hexdigest(), "size": 0, "path": d}
            for d in folders]
    return sorted(dirs + files, key=lambda entry: entry["path"])


def _main(argv: list[str] | None = None) -> int:
    """CLI: serve a folder as one repo until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Serve a folder as a Hugging Face model repo on 127.0.0.1.")
    parser.add_argument("--serve-dir", required=True, type=Path, help="folder whose files form the repo")
    parser.add_argument("--repo", required=True, help="repo id, ORG/NAME")
    parser.add_argument("--commit", help="40-hex commit (default: derived from the files)")
    parser.add_argument("--port", type=int, default=0, help="port (default: ephemeral)")
    args = parser.parse_args(argv)
    root: Path = args.serve_dir
    files = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }
    repo = HubRepo(args.repo, files, commit=args.commit)
    hub = TestHub([repo]).start(args.port)
    print(hub.url, flush=True)  # stdout carries only the URL, so a script can read the port
    print(f"serving {repo.repo_id} at {repo.commit} ({len(files)} files); HF_ENDPOINT={hub.url}; Ctrl-C stops",
          file=sys.stderr, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
