"""The faults the test hub injects: connections cut after N body bytes, error statuses for the next N requests,
and a bandwidth limit that paces file bodies (also those already in flight).

Standard library only (hub.py also runs by path in other venvs). Thread-safe: tests arm faults while the server's
connection threads consume them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

_FULL_SPEED_CHUNK = 1024 * 1024


class Faults:
    """Armed faults, consumed by the server's handler; TestHub's cut_after/fail_next/throttle arm them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cuts: dict[tuple[str | None, str], list[int]] = {}  # key -> [nbytes, times left]
        self._failures: tuple[int, int] = (0, 503)  # (requests left, status)
        self._rate: int | None = None

    def cut_after(self, repo_id: str | None, path: str, nbytes: int, times: int = 1) -> None:
        """Arm a cut: `times` GETs of (repo_id, path) stop after nbytes of body (TestHub.cut_after)."""
        if nbytes < 0 or times < 1:
            raise ValueError("need nbytes >= 0 and times >= 1")
        with self._lock:
            self._cuts[(repo_id, path)] = [nbytes, times]

    def fail_next(self, n: int, status: int = 503) -> None:
        """Arm n failures answering `status` (TestHub.fail_next)."""
        with self._lock:
            self._failures = (n, status)

    def throttle(self, bytes_per_second: int | None) -> None:
        """Set the pace of file bodies in bytes per second, None for full speed (TestHub.throttle)."""
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive or None")
        self._rate = bytes_per_second

    def take_failure(self) -> int | None:
        """The status this request must fail with, if a failure is armed (counting it down)."""
        with self._lock:
            left, status = self._failures
            if left <= 0:
                return None
            self._failures = (left - 1, status)
            return status

    def take_cut(self, key: tuple[str | None, str]) -> int | None:
        """How many body bytes this GET of `key` may send before hanging up, if a cut is armed (counting it down)."""
        with self._lock:
            entry = self._cuts.get(key)
            if entry is None:
                return None
            entry[1] -= 1
            if entry[1] == 0:
                del self._cuts[key]
            return entry[0]

    def chunks(self, body: memoryview, throttled: bool, stopping: threading.Event) -> Iterator[memoryview]:
        """The body in chunks to write, paced at the current rate when `throttled`; stops when `stopping` is set."""
        pos = 0
        while pos < len(body):
            if stopping.is_set():
                raise ConnectionAbortedError("hub stopped")
            rate = self._rate if throttled else None  # re-read per chunk: throttle() affects in-flight bodies
            size = _FULL_SPEED_CHUNK if rate is None else max(1, min(_FULL_SPEED_CHUNK, rate // 10))
            chunk = body[pos : pos + size]
            yield chunk
            pos += len(chunk)
            if rate is not None:
                stopping.wait(len(chunk) / rate)  # ~0.1 s per chunk; stop() interrupts it
