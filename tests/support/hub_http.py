"""The test hub's HTTP side: a threading server whose connections the hub can find and close, and the handler
that routes the subset of the Hugging Face Hub API huggingface_hub uses (model info, tree listing, HEAD/GET
resolve with ranges, typed errors via `X-Error-Code`, the Xet headers and the Xet token refresh route) plus plain
`/assets/...` files.

Standard library only (hub.py also runs by path in other venvs). It serves what hub_repo.py describes, logs a
Request per answer and applies the faults of hub_faults.py; hub.py's TestHub owns the state it reads.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from .hub_repo import HubRepo

if TYPE_CHECKING:
    from .hub import TestHub


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


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer whose connection threads and sockets the hub can find and close."""

    daemon_threads = True

    def __init__(self, hub: TestHub, address: tuple[str, int], cdn: bool = False) -> None:
        self.hub = hub
        self.cdn = cdn  # the CDN host: serves only /cdn/ORG/NAME/COMMIT/PATH, where the hub redirects large files
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
    server: Server

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
        if (status := hub.faults.take_failure()) is not None:
            retry = {"Retry-After": "1"} if status == 429 else {}
            return self._send(status, {"Content-Type": "application/json", **retry}, b"{}")
        # Split before decoding: revisions arrive with "/" encoded as %2F, file paths with real "/".
        segs = split.path.split("/")[1:]
        if self.server.cdn:
            if self.command in ("GET", "HEAD") and segs[0] == "cdn" and len(segs) >= 5:
                return self._from_cdn(segs[1:])
            return self._error(404, None, f"Not found: {self._rec.path}")
        if self.command in ("GET", "HEAD"):
            if segs[:2] == ["api", "models"] and len(segs) >= 4:
                return self._api(segs[2:], split.query)
            if segs[0] == "assets" and len(segs) > 1:
                return self._serve_asset(unquote("/".join(segs[1:])))
            if len(segs) >= 5 and segs[2] == "resolve":
                return self._resolve(segs)
        self._error(404, None, f"Not found: {self._rec.path}")

    def _send(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes | memoryview,
        *,
        throttled: bool = False,
        cut: int | None = None,
    ) -> None:
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
        for chunk in hub.faults.chunks(body, throttled, hub._stopping):
            self._rec.bytes_sent += len(chunk)  # counted before sending so a client never outruns the log
            self.wfile.write(chunk)

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
        """/api/models/ORG/NAME[/revision/REV | /tree/REV[/PATH] | /xet-read-token/REV]."""
        org, name, *rest = segs
        two = len(rest) == 2 and rest[0] in ("revision", "xet-read-token")
        if not (rest == [] or two or (len(rest) >= 2 and rest[0] == "tree")):
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
        if rest and rest[0] == "xet-read-token":
            return self._xet_token(repo)
        self._send(
            200, {"Content-Type": "application/json"}, json.dumps(repo.model_info(_flag(query, "blobs"))).encode()
        )

    def _tree(self, repo: HubRepo, prefix: str, query: str) -> None:
        params = parse_qs(query)
        entries = repo.tree_entries(prefix.strip("/"), _flag(query, "recursive"), self.server.hub.xet_hash)
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

    def _refused(self, repo: HubRepo) -> bool:
        """Answer (and True) when a gated repo is asked without a token that has access to it."""
        if not repo.gated:
            return False
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
        if token in repo.tokens:
            return False
        # Like the hub: 401 when anonymous, 403 when the token has no access; GatedRepo either way.
        message = (
            f"Access to model {repo.repo_id} is restricted. You must have access to it and be "
            "authenticated to access it. Please log in."
        )
        self._error(401 if token is None else 403, "GatedRepo", message)
        return True

    def _xet_token(self, repo: HubRepo) -> None:
        """The Xet token refresh route: where the CAS is, with a short-lived token (headers only, as on the Hub)."""
        if self._refused(repo):
            return
        hub = self.server.hub
        if not hub.xet:
            return self._error(404, None, f"Not found: {self._rec.path}")
        headers = {
            "X-Xet-Cas-Url": hub.xet_endpoint,
            "X-Xet-Access-Token": "xet_" + uuid.uuid4().hex,
            "X-Xet-Token-Expiration": str(int(time.time()) + 3600),
            "Content-Type": "application/json",
        }
        self._send(200, headers, json.dumps({"casUrl": hub.xet_endpoint}).encode())

    def _resolve(self, segs: list[str]) -> None:
        """/ORG/NAME/resolve/REV/PATH: the file, with the headers hf_hub_download reads on HEAD (the Xet ones for a
        Xet-backed file: its hash and the token refresh route, in a header and as a `Link` rel="xet-auth")."""
        org, name, _, rev, *path_segs = segs
        repo = self._find_repo(org, name)
        repo = repo and self._at_revision(repo, unquote(rev))
        if repo is None or self._refused(repo):
            return
        assert repo.commit is not None
        path = unquote("/".join(path_segs))
        meta = repo.file(path)
        if meta is None:
            # X-Repo-Commit lets the client cache the miss under .no_exist/<commit>/.
            return self._error(
                404, "EntryNotFound", f"{path} does not exist on {repo.commit}", {"X-Repo-Commit": repo.commit}
            )
        headers = {
            "X-Repo-Commit": repo.commit,
            "ETag": f'"{meta.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if meta.sha256 is not None:
            headers["X-Linked-Etag"] = f'"{meta.sha256}"'
            headers["X-Linked-Size"] = str(len(meta.data))
        if (xet_hash := self.server.hub.xet_hash(meta.sha256)) is not None:
            host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
            refresh = f"http://{host}/api/models/{repo.repo_id}/xet-read-token/{repo.commit}"
            headers["X-Xet-Hash"] = xet_hash
            headers["X-Xet-Refresh-Route"] = refresh
            headers["Link"] = f'<{refresh}>; rel="xet-auth"'
        if meta.sha256 is not None:
            # Like the Hub: an LFS file's bytes come from a CDN (another host), its ids in this answer's headers.
            headers["Location"] = f"{self.server.hub.cdn_url}/cdn/{repo.repo_id}/{repo.commit}/{path}"
            return self._send(302, headers, b"")
        self._send_bytes(headers, meta.data, (repo.repo_id, path))

    def _from_cdn(self, segs: list[str]) -> None:
        """/cdn/ORG/NAME/COMMIT/PATH on the CDN host: the bytes, with ranges, pacing and cuts, no hub headers."""
        org, name, commit, *path_segs = segs
        repo_id, path = f"{unquote(org)}/{unquote(name)}", unquote("/".join(path_segs))
        hub = self.server.hub
        repo = hub._repo(repo_id)
        if repo is not None and repo.commit != commit:
            repo = hub._older(repo_id, commit)
        meta = repo.file(path) if repo is not None else None
        if meta is None:
            return self._error(404, None, f"No such object: {self._rec.path}")
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream", "ETag": f'"{meta.sha256}"'}
        self._send_bytes(headers, meta.data, (repo_id, path))

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
        cut = self.server.hub.faults.take_cut(cut_key) if self.command == "GET" else None
        self._send(status, headers, body, throttled=True, cut=cut)


def _flag(query: str, name: str) -> bool:
    """Whether the query string sets `name=true` (case-insensitively), as the hub reads its boolean parameters."""
    return parse_qs(query).get(name, ["false"])[0].lower() == "true"
