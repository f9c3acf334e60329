"""A Xet CAS over HTTP on 127.0.0.1 that serves what `hf_xet.upload_files(..., "local://DIR", ...)` wrote in DIR
(hub_xet.XetStore's folder), so that hf-xet's own remote client downloads Xet files through a socket that tests can
count, pace and cut, as they can the hub's plain-HTTP transfers. TestHub(xet="http") runs one (hub.py).

    with XetCasServer(DIR) as cas:   # then answer `X-Xet-Cas-Url: {cas.url}` on the hub's Xet refresh route

What hf-xet 1.8's remote client asks for when it downloads a file (xet-core `remote_client.rs`, `cas_types`):
  GET /v2/reconstructions/{file_hash}  -> 404 here: on 404/501 the client falls back to V1 (and stays there).
  GET /v1/reconstructions/{file_hash}  Range: bytes=a-b  -> JSON QueryReconstructionResponse:
      offset_into_first_range: where byte a lies in the first term;
      terms: [{hash: xorb, unpacked_length, range: {start, end}}], chunk indices, end exclusive;
      fetch_info: {xorb: [{range: {start, end}, url, url_range: {start, end}}]}, url_range in bytes, end inclusive.
  GET {url} with Range: bytes={url_range.start}-{url_range.end} (no token) -> 206, raw xorb bytes (chunks still
      compressed; the client decompresses and checks them). A cut fetch is retried whole, from url_range.start.
Nothing else: no chunk or shard requests. Hashes are MerkleHash hex: each of the four little-endian u64 words of the
raw 32 bytes printed as 16 hex digits.

The local CAS keeps MDB shards in DIR/xet/xorbs/shards/*.mdb and xorbs in DIR/xet/xorbs/xorbs/default.<hash>. A
shard's file-info section gives each file's segments (xorb, chunk range, unpacked bytes); a xorb's chunk byte
offsets come from walking its 8-byte chunk headers (version u8, compressed len u24 LE, scheme u8, raw len u24 LE).

Standard library only, like the rest of the hub (hub.py also runs by path in venvs without hf_xet).
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_FLAG_VERIFICATION = 1 << 31  # each segment is followed by a 48-byte verification entry
_FLAG_METADATA_EXT = 1 << 30  # the file block ends with a 48-byte metadata entry (sha256)
_BOOKEND = b"\xff" * 32  # ends the file-info section
_BLOCK = 64 * 1024  # xorb bodies are written, paced and counted in blocks of this many bytes


def _hexhash(raw: bytes) -> str:
    """MerkleHash.hex(): four little-endian u64 words, each printed big-endian."""
    return "".join(raw[i : i + 8][::-1].hex() for i in range(0, 32, 8))


@dataclass(frozen=True)
class Segment:
    """A run of chunks of one xorb that makes `size` consecutive bytes of a file."""

    xorb: str
    chunk_start: int
    chunk_end: int  # exclusive
    size: int  # unpacked bytes


def parse_shard_files(data: bytes) -> dict[str, list[Segment]]:
    """File hash -> its segments, from an MDB shard's file-info section (its offset read from the footer: the
    header is a 32-byte tag, u64 version, u64 footer size; the footer is u64 version, u64 file-info offset, ...)."""
    footer_size = struct.unpack_from("<Q", data, 40)[0]
    pos = struct.unpack_from("<Q", data, len(data) - footer_size + 8)[0]
    files: dict[str, list[Segment]] = {}
    while data[pos : pos + 32] != _BOOKEND:
        if pos + 48 > len(data):
            raise ValueError("shard ends inside its file-info section")
        file_hash = _hexhash(data[pos : pos + 32])
        flags, count = struct.unpack_from("<II", data, pos + 32)
        pos += 48
        segments = []
        for _ in range(count):
            _, size, start, end = struct.unpack_from("<IIII", data, pos + 32)
            segments.append(Segment(_hexhash(data[pos : pos + 32]), start, end, size))
            pos += 48
        pos += 48 * count * bool(flags & _FLAG_VERIFICATION) + 48 * bool(flags & _FLAG_METADATA_EXT)
        files[file_hash] = segments
    return files


def xorb_chunks(path: Path) -> tuple[list[int], list[int]]:
    """A serialized xorb's chunk byte offsets (plus the end of the last chunk, where the footer starts) and the
    uncompressed size of each chunk, from walking the 8-byte chunk headers."""
    offsets, sizes = [0], []
    with open(path, "rb") as f:
        while (header := f.read(8)) and len(header) == 8 and header[0] == 0:  # the footer starts with b"XETBLOB"
            offsets.append(offsets[-1] + 8 + int.from_bytes(header[1:4], "little"))
            sizes.append(int.from_bytes(header[5:8], "little"))
            f.seek(offsets[-1])
    return offsets, sizes


@dataclass
class Request:
    """One request the server answered; `sent` is the body bytes written (it grows while a xorb body streams)."""

    method: str
    path: str
    range: str | None
    status: int = 0
    sent: int = 0
    cut: bool = False


@dataclass
class XetCasServer:
    """Serve FOLDER (a `local://FOLDER` CAS) over HTTP. Thread-safe; every knob may be changed while it runs.

    rate: bytes/second for xorb bodies, shared by all connections (None: full speed).
    cut_after: once this many xorb body bytes have been sent in total, the response in flight is cut (connection
        shut down mid-body) and the knob disarms itself (set it again for another cut); `cuts` counts them.
    max_term_chunks: split reconstruction terms at chunk indices that are multiples of this (None: one term per
        shard segment, as the Hub does), so that a file is fetched in several xorb range requests rather than one
        per xorb (up to 64 MB).
    xorb_bytes: xorb body bytes handed to the socket since the last reset_counters() (what hf-xet downloaded; when
        a client is killed, up to a socket buffer of it may never have been read). requests: every request answered.
    """

    folder: Path
    rate: float | None = None
    cut_after: int | None = None
    max_term_chunks: int | None = None
    host: str = "127.0.0.1"
    requests: list[Request] = field(default_factory=list)
    xorb_bytes: int = 0
    cuts: int = 0

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self._lock = threading.Lock()
        self._files: dict[str, list[Segment]] = {}
        self._shards: set[Path] = set()  # shards already read
        self._xorb_paths: dict[str, Path] = {}
        self._chunks: dict[str, tuple[list[int], list[int]]] = {}  # xorb -> (byte offsets, chunk sizes)
        self._pace_until = 0.0
        self._admitted = 0  # xorb_bytes plus blocks being written
        self._gen = 0  # bumped by reset_counters: bytes of older responses no longer count
        self._stopping = threading.Event()  # wakes paced writers on stop()
        self._httpd: _Server | None = None
        self._serve_thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The CAS endpoint, for `X-Xet-Cas-Url`."""
        if self._httpd is None:
            raise RuntimeError("XetCasServer is not started")
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    def start(self) -> XetCasServer:
        """Listen on an ephemeral port of `host`, in daemon threads (named testhub-xet-cas*, like the hub's)."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _Server((self.host, 0), type("Handler", (_Handler,), {"cas": self}))
        self._serve_thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"testhub-xet-cas:{self._httpd.server_address[1]}",
            daemon=True,
        )
        self._serve_thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and every open connection (paced ones too), then join the server threads."""
        httpd, serve_thread = self._httpd, self._serve_thread
        if httpd is None or serve_thread is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        threads = httpd.close_connections()
        for thread in [*threads, serve_thread]:
            thread.join(timeout=5)
        self._httpd = self._serve_thread = None

    @property
    def threads(self) -> list[threading.Thread]:
        """Server threads still alive (empty after stop())."""
        httpd, serve = self._httpd, self._serve_thread
        threads = httpd.live_threads() if httpd is not None else []
        return threads + ([serve] if serve is not None and serve.is_alive() else [])

    def __enter__(self) -> XetCasServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset_counters(self) -> None:
        """Forget the requests, xorb_bytes and cuts; bytes of responses still in flight are not counted."""
        with self._lock:
            self.requests.clear()
            self.xorb_bytes = self._admitted = self.cuts = 0
            self._gen += 1

    # -- the store ---------------------------------------------------------------------------------------------
    def _rescan(self) -> None:
        """Read shards not read yet and list the xorbs (called under the lock when a hash is unknown)."""
        for shard in sorted(self.folder.rglob("shards/*.mdb")):
            if shard in self._shards:
                continue
            try:
                self._files.update(parse_shard_files(shard.read_bytes()))
            except (OSError, ValueError, struct.error):  # still being written: read it on the next rescan
                continue
            self._shards.add(shard)
        for xorb in self.folder.rglob("xorbs/*.*"):
            name = xorb.name.rsplit(".", 1)[-1]
            if re.fullmatch(r"[0-9a-f]{64}", name):
                self._xorb_paths[name] = xorb

    def segments(self, file_hash: str) -> list[Segment] | None:
        """A file's segments (None: unknown, even after a rescan)."""
        with self._lock:
            if file_hash not in self._files:
                self._rescan()  # uploaded since the last look
            return self._files.get(file_hash)

    def chunks(self, xorb: str) -> tuple[list[int], list[int]] | None:
        """A xorb's chunk byte offsets and chunk sizes (None: unknown, even after a rescan)."""
        with self._lock:
            if xorb not in self._xorb_paths:
                self._rescan()
            if xorb in self._xorb_paths and xorb not in self._chunks:
                self._chunks[xorb] = xorb_chunks(self._xorb_paths[xorb])
            return self._chunks.get(xorb)

    def xorb_path(self, xorb: str) -> Path | None:
        """Where a xorb is stored (None: unknown)."""
        with self._lock:
            return self._xorb_paths.get(xorb)

    def reconstruction(self, file_hash: str, first: int, last: int | None, base_url: str) -> dict | int:
        """V1 reconstruction of bytes [first, last] (inclusive; last=None: to the end), or an HTTP error status.
        Whole terms are returned: a ranged read fetches every term it overlaps, as with the Hub's V1."""
        segments = self.segments(file_hash)
        if segments is None or any(self.chunks(seg.xorb) is None for seg in segments):
            return 404
        terms: list[dict] = []
        fetch: dict[str, list[dict]] = {}
        pos, offset_into_first = 0, None
        for seg in self._split(segments):
            seg_end = pos + seg.size
            if seg_end > first and (last is None or pos <= last):
                offset_into_first = first - pos if offset_into_first is None else offset_into_first
                chunks = {"start": seg.chunk_start, "end": seg.chunk_end}
                terms.append({"hash": seg.xorb, "unpacked_length": seg.size, "range": chunks})
                offsets = self._chunks[seg.xorb][0]
                info = {
                    "range": chunks,
                    "url": f"{base_url}/xorbs/{seg.xorb}",
                    "url_range": {"start": offsets[seg.chunk_start], "end": offsets[seg.chunk_end] - 1},
                }
                if info not in fetch.setdefault(seg.xorb, []):
                    fetch[seg.xorb].append(info)
            pos = seg_end
        if not terms:
            return 416
        return {"offset_into_first_range": offset_into_first, "terms": terms, "fetch_info": fetch}

    def _split(self, segments: list[Segment]) -> list[Segment]:
        """Segments cut at chunk indices that are multiples of max_term_chunks (unchanged without it)."""
        k = self.max_term_chunks
        if not k:
            return segments
        out = []
        for seg in segments:
            sizes, start = self._chunks[seg.xorb][1], seg.chunk_start
            while start < seg.chunk_end:
                end = min(seg.chunk_end, (start // k + 1) * k)
                out.append(Segment(seg.xorb, start, end, sum(sizes[start:end])))
                start = end
        return out

    # -- pacing, cuts, counting (called by the handler around every block of a xorb body) ------------------------
    def _admit(self, n: int, gen: int) -> tuple[int, bool]:
        """After waiting for the pace: how many of the next n body bytes to send, and whether to cut after them."""
        with self._lock:
            cut = self.cut_after is not None and self._admitted + n >= self.cut_after
            if cut:
                n = max(0, self.cut_after - self._admitted)
                self.cut_after = None
                self.cuts += 1
            self._admitted += n if gen == self._gen else 0
            wait = 0.0
            if self.rate:
                now = time.monotonic()
                self._pace_until = max(self._pace_until, now) + n / self.rate
                wait = self._pace_until - now
        if wait > 0:
            self._stopping.wait(wait)
        return n, cut

    def _count(self, req: Request, n: int, sent: bool, gen: int) -> None:
        """Record n admitted bytes as written (sent) or not (the client hung up); reset_counters forgets old ones."""
        with self._lock:
            req.sent += n if sent else 0
            if gen == self._gen:
                self.xorb_bytes += n if sent else 0
                self._admitted -= 0 if sent else n

    def _record(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its connections, so stop() can close keep-alive ones and join their threads."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type) -> None:
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:  # type: ignore[override]
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"testhub-xet-cas-conn:{self.server_address[1]}",
            daemon=True,
        )
        with self._conns_lock:
            self._conns[request] = thread
        thread.start()

    def shutdown_request(self, request) -> None:  # type: ignore[override]
        with self._conns_lock:
            self._conns.pop(request, None)
        super().shutdown_request(request)

    def close_connections(self) -> list[threading.Thread]:
        """Shut every open connection down; the threads that served them."""
        with self._conns_lock:
            conns = dict(self._conns)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return list(conns.values())

    def live_threads(self) -> list[threading.Thread]:
        with self._conns_lock:
            return [t for t in self._conns.values() if t.is_alive()]

    def handle_error(self, request, client_address) -> None:  # type: ignore[override]
        pass  # clients hanging up, cuts and stop() end connections mid-write: expected, not worth a traceback


class _Handler(BaseHTTPRequestHandler):
    """Routes one keep-alive connection's requests: V2 (404), V1 reconstructions and xorb ranges."""

    protocol_version = "HTTP/1.1"  # keep-alive, as hf-xet's reqwest client expects
    timeout = 60  # an idle keep-alive connection must not pin a thread forever
    cas: XetCasServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle + delayed-ACK stalls

    def log_message(self, format: str, *args: object) -> None:
        pass  # `cas.requests` is the log

    def do_GET(self) -> None:
        req = Request("GET", self.path, self.headers.get("Range"))
        self.cas._record(req)
        m = re.fullmatch(r"/v1/reconstructions/([0-9a-f]{64})", self.path)
        if m:
            first, last = _parse_range(req.range)
            host = self.headers.get("Host") or f"{self.cas.host}:{self.server.server_address[1]}"
            result = self.cas.reconstruction(m.group(1), first, last, f"http://{host}")
            if isinstance(result, int):
                return self._send(req, result, b"")
            return self._send(req, 200, json.dumps(result).encode(), "application/json")
        m = re.fullmatch(r"/xorbs/([0-9a-f]{64})", self.path)
        if m:
            return self._send_xorb(req, m.group(1))
        self._send(req, 404, b"")  # /v2/reconstructions included: the client falls back to V1

    def _send(self, req: Request, status: int, body: bytes, ctype: str = "text/plain") -> None:
        req.status = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        req.sent = len(body)

    def _send_xorb(self, req: Request, xorb: str) -> None:
        """206 with the xorb bytes asked for (200 without Range), paced, counted, and cut when cut_after says so."""
        path = self.cas.xorb_path(xorb) if self.cas.chunks(xorb) is not None else None
        if path is None:
            return self._send(req, 404, b"")
        size = path.stat().st_size
        first, last = _parse_range(req.range)
        last = size - 1 if last is None else min(last, size - 1)
        if first > last:
            return self._send(req, 416, b"")
        req.status = 206 if req.range else 200
        self.send_response(req.status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(last - first + 1))
        if req.range:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        gen = self.cas._gen
        with open(path, "rb") as f:
            f.seek(first)
            left = last - first + 1
            while left:
                block = f.read(min(_BLOCK, left))
                n, cut = self.cas._admit(len(block), gen)
                try:
                    if self.cas._stopping.is_set():
                        raise ConnectionAbortedError("the CAS is stopping")
                    self.wfile.write(block[:n])
                except OSError:  # the client hung up (killed, or gave up), or stop()
                    self.cas._count(req, n, False, gen)
                    self.close_connection = True
                    return
                self.cas._count(req, n, True, gen)
                left -= n
                if cut:  # hang up with the body unfinished
                    req.cut = self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return


def _parse_range(header: str | None) -> tuple[int, int | None]:
    """`bytes=a-b` -> (a, b) inclusive; `bytes=a-` -> (a, None); none -> (0, None). hf-xet sends no suffix ranges."""
    if not header:
        return 0, None
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", header.strip())
    if not m:
        return 0, None
    return int(m.group(1)), int(m.group(2)) if m.group(2) else None
