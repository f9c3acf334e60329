"""A stdlib-only Hugging Face Hub stand-in on 127.0.0.1 that real `huggingface_hub` downloads work against.

It answers the HTTP subset huggingface_hub 2.4 uses for model repos (model info, tree listing, HEAD/GET resolve
with ranges, typed errors via `X-Error-Code`) plus plain `/assets/...` files, logs every request, and injects
faults (cut connections, error statuses, bandwidth limits).

Like the Hub, it announces its LFS files as Xet-backed by default (`xet=True`): their HEAD carries `X-Xet-Hash` and
a refresh route, the tree listing their `xetHash`, and the refresh route points hf-xet's own client at a local CAS
that hf-xet's own upload filled (hub_xet.py); huggingface_hub then downloads through hf-xet and leaves the shared
blob store layout real users get. That local CAS is a folder (`local://DIR`): hf-xet reads it with no socket, so
nothing can count, pace or cut those bytes. `xet="http"` serves the same CAS over HTTP instead (xet_cas.py, on a
third port), so a test can: `hub.xet_bytes_sent`, `hub.xet_requests`, `hub.xet_throttle(rate)`,
`hub.xet_cut_after(n)`. `xet=False` is a mirror without Xet (plain HTTP for every file), as is a client with
`HF_HUB_DISABLE_XET=1`: GET still serves every file's bytes.
Run it by hand with `python tests/support/hub.py --serve-dir DIR --repo ORG/NAME [--no-xet | --xet-http]`.

This module is TestHub (lifecycle, request log, the faults it arms) and that command line; what a repo serves is
hub_repo.py, the HTTP handler hub_http.py, the faults hub_faults.py, the Xet store hub_xet.py, its HTTP server
xet_cas.py.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if not __package__:  # run by path (python tests/support/hub.py): import the siblings as the package `support`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "support"

from .hub_faults import Faults
from .hub_http import Request, Server
from .hub_repo import HubRepo, git_blob_sha1, is_lfs_by_default, sha256_hex

if TYPE_CHECKING:
    from .xet_cas import Request as XetRequest
    from .xet_cas import XetCasServer

__all__ = ["HubRepo", "Request", "TestHub", "git_blob_sha1", "is_lfs_by_default", "sha256_hex"]


class TestHub:
    """HF-compatible server for tests: `with TestHub([HubRepo(...)]) as hub:` then use `hub.url` as endpoint.

    xet: True (the default) announces LFS files as Xet-backed, their bytes in a `local://` CAS; "http" announces
    them the same way with the CAS served over HTTP by an XetCasServer that start() and stop() run with the hub;
    False announces no Xet at all.
    """

    __test__ = False  # despite the name, not a pytest test class

    def __init__(
        self,
        repos: Iterable[HubRepo] = (),
        assets: dict[str, bytes] | None = None,
        *,
        tree_page_size: int = 1000,
        xet: bool | Literal["http"] = True,
    ) -> None:
        if xet not in (True, False, "http"):
            raise ValueError(f"xet must be True, False or 'http', not {xet!r}")
        self._lock = threading.Lock()
        self.xet = bool(xet)  # whether LFS files are announced as Xet-backed (hub_http.py reads it)
        self.xet_cas: XetCasServer | None = None  # xet="http": the CAS hf-xet downloads from, run with the hub
        if xet == "http":
            from .hub_xet import shared_store
            from .xet_cas import XetCasServer

            self.xet_cas = XetCasServer(shared_store().folder)
        self._xet_hashes: dict[str, str] = {}  # sha256 -> Xet hash of the LFS files served
        self._repos: dict[str, HubRepo] = {}
        self._history: dict[tuple[str, str | None], HubRepo] = {}  # (repo, commit) -> an older main
        self._assets: dict[str, bytes] = dict(assets or {})
        self._log: list[Request] = []
        self.faults = Faults()
        self._stopping = threading.Event()
        self._server: Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._cdn: Server | None = None  # large files: the hub answers 302 to here, as the Hub does to its CDN
        self._cdn_thread: threading.Thread | None = None
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
        if self.xet:
            self._announce_xet(repo)
        with self._lock:
            old = self._repos.get(repo.repo_id)
            if keep_history and old is not None and old.commit != repo.commit:
                self._history[(repo.repo_id, old.commit)] = old
            self._repos[repo.repo_id] = repo
            self._history.pop((repo.repo_id, repo.commit), None)
        return repo

    def _announce_xet(self, repo: HubRepo) -> None:
        """Store the repo's LFS files in the Xet CAS (hf-xet's own upload), so they can be announced as Xet files."""
        from .hub_xet import shared_store

        lfs = {meta.sha256: meta.data for path in repo.files if (meta := repo.file(path)) and meta.sha256}
        hashes = shared_store().add(lfs)
        with self._lock:
            self._xet_hashes.update(hashes)

    def xet_hash(self, sha256: str | None) -> str | None:
        """The Xet hash the hub announces for an LFS file (by its sha256); None for plain files or without Xet."""
        if not self.xet or sha256 is None:
            return None
        with self._lock:
            return self._xet_hashes.get(sha256)

    def is_xet(self, repo_id: str, path: str) -> bool:
        """Whether the hub announces this file as Xet-backed."""
        repo = self._repo(repo_id)
        meta = repo.file(path) if repo is not None else None
        return meta is not None and self.xet_hash(meta.sha256) is not None

    @property
    def xet_endpoint(self) -> str:
        """The CAS URL the refresh route answers: `local://DIR`, or with xet="http" the HTTP server of DIR."""
        if self.xet_cas is not None:
            return self.xet_cas.url
        from .hub_xet import shared_store

        return shared_store().endpoint

    def add_asset(self, path: str, data: bytes) -> None:
        """Serve data at `{url}/assets/{path}` (a stand-in for non-hub mirrors)."""
        with self._lock:
            self._assets[path.lstrip("/")] = data

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self, port: int = 0) -> TestHub:
        """Listen on 127.0.0.1 (ephemeral port by default), and the CDN on a second port (with xet="http" the Xet
        CAS on a third one), in daemon threads."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = Server(self, ("127.0.0.1", port))
        self._cdn = Server(self, ("127.0.0.1", 0), cdn=True)
        self._serve_thread = self._serve(self._server)
        self._cdn_thread = self._serve(self._cdn)
        if self.xet_cas is not None:
            self.xet_cas.start()
        return self

    @staticmethod
    def _serve(server: Server) -> threading.Thread:
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits up to one poll interval
            name=f"testhub-serve:{server.server_address[1]}",
            daemon=True,
        )
        thread.start()
        return thread

    def stop(self) -> None:
        """Close the listening sockets and every open connection, then join all server threads (the Xet CAS's
        too)."""
        server, serve_thread = self._server, self._serve_thread
        if server is None or serve_thread is None:
            return
        if self.xet_cas is not None:
            self.xet_cas.stop()
        self._stopping.set()  # wakes throttled writers
        for each in (server, self._cdn):
            each.shutdown()
            each.server_close()
        with self._lock:
            conns, threads = list(self._conns), list(self._conn_threads)
        for sock in conns:
            # Keep-alive connections would otherwise stay usable (and their threads blocked in recv).
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in [*threads, serve_thread, self._cdn_thread]:
            thread.join(timeout=5)
        self._server = self._serve_thread = self._cdn = self._cdn_thread = None
        with self._lock:
            self._conn_threads = [t for t in self._conn_threads if t.is_alive()]

    @property
    def cdn_url(self) -> str:
        """Where large (LFS) files are served from, as the Hub redirects them to a CDN: another host (port)."""
        if self._cdn is None:
            raise RuntimeError("TestHub is not started")
        return f"http://127.0.0.1:{self._cdn.server_address[1]}"

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
        threads += [t for t in (self._serve_thread, self._cdn_thread) if t is not None and t.is_alive()]
        return threads + (self.xet_cas.threads if self.xet_cas is not None else [])

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

    def file_gets(self, repo_id: str | None = None, path: str | None = None) -> list[Request]:
        """The GETs that carried a repo file's bytes (from the hub for small files, from its CDN for LFS files;
        the hub's 302s left out), oldest first, optionally of one repo and one file."""
        out = []
        for r in self.requests:
            if r.method != "GET" or r.status == 302:
                continue
            if "/resolve/" in r.path:
                repo, _, rest = r.path[1:].partition("/resolve/")
                file = rest.split("/", 1)[1] if "/" in rest else ""
            elif r.path.startswith("/cdn/"):
                _, org, name, _, file = r.path[1:].split("/", 4)
                repo = f"{org}/{name}"
            else:
                continue
            if (repo_id is None or repo == repo_id) and (path is None or file == path):
                out.append(r)
        return out

    def reset_requests(self) -> None:
        """Forget the logged requests (and with xet="http" the Xet CAS's requests and byte count)."""
        with self._lock:
            self._log.clear()
        if self.xet_cas is not None:
            self.xet_cas.reset_counters()

    # -- the Xet CAS over HTTP (xet="http"; see xet_cas.py) -------------------------------------------
    def _http_cas(self) -> XetCasServer:
        if self.xet_cas is None:
            raise RuntimeError('only a TestHub(xet="http") serves Xet bytes over HTTP')
        return self.xet_cas

    @property
    def xet_bytes_sent(self) -> int:
        """Xorb body bytes the Xet CAS sent since the last reset_requests() (hf-xet's download traffic: Xet
        files' bytes, still compressed, never counted in `requests` or file_gets())."""
        return self._http_cas().xorb_bytes

    @property
    def xet_requests(self) -> list[XetRequest]:
        """A snapshot (copies) of the Xet CAS's request log, oldest first: reconstructions and xorb ranges."""
        cas = self._http_cas()
        with cas._lock:
            return [replace(r) for r in cas.requests]

    def xet_throttle(self, bytes_per_second: float | None) -> None:
        """Pace the Xet CAS's xorb bodies to this rate, all connections together (None: full speed); applies to
        responses in flight too. throttle() paces only the plain-HTTP bodies."""
        self._http_cas().rate = bytes_per_second

    def xet_cut_after(self, nbytes: int | None) -> None:
        """Once the Xet CAS has sent nbytes xorb body bytes in all since the last reset_requests(), cut the response
        in flight mid-body, once (hf-xet retries the whole range); None disarms. `xet_cas.cuts` counts the cuts."""
        self._http_cas().cut_after = nbytes

    # -- fault injection (see hub_faults.py) ----------------------------------------------------------
    def cut_after(self, repo_id: str | None, path: str, nbytes: int, times: int = 1) -> None:
        """Next `times` GETs of the file (repo_id None: of the asset) send full headers, nbytes of body, then close."""
        self.faults.cut_after(repo_id, path, nbytes, times)

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next n requests, whatever they are, answer `status` with an empty JSON body (429 with the Hub's
        `Retry-After: 1`, as it answers a client over its rate limit)."""
        self.faults.fail_next(n, status)

    def throttle(self, bytes_per_second: int | None) -> None:
        """Pace file and asset GET bodies to this rate (None: full speed); applies to responses in flight too."""
        self.faults.throttle(bytes_per_second)

    # -- internals used by the server (hub_http.py) ---------------------------------------------------
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


def _main(argv: list[str] | None = None) -> int:
    """CLI: serve a folder as one repo until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Serve a folder as a Hugging Face model repo on 127.0.0.1.")
    parser.add_argument("--serve-dir", required=True, type=Path, help="folder whose files form the repo")
    parser.add_argument("--repo", required=True, help="repo id, ORG/NAME")
    parser.add_argument("--commit", help="40-hex commit (default: derived from the files)")
    parser.add_argument("--port", type=int, default=0, help="port (default: ephemeral)")
    parser.add_argument("--no-xet", action="store_true", help="a mirror without Xet: plain HTTP for every file")
    parser.add_argument("--xet-http", action="store_true", help="serve the Xet CAS over HTTP, not as local://")
    args = parser.parse_args(argv)
    root: Path = args.serve_dir
    files = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }
    repo = HubRepo(args.repo, files, commit=args.commit)
    hub = TestHub([repo], xet=False if args.no_xet else "http" if args.xet_http else True).start(args.port)
    print(hub.url, flush=True)  # stdout carries only the URL, so a script can read the port
    print(
        f"serving {repo.repo_id} at {repo.commit} ({len(files)} files); HF_ENDPOINT={hub.url}; Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
