"""A thread pool for downloads that a Ctrl-C can walk away from.

`concurrent.futures.ThreadPoolExecutor` joins its threads when the `with` block ends and again when the interpreter
exits, so a Ctrl-C waits until every running download reads its next chunk (seconds on a slow link, 38 s on the
throttled test hub before this pool). Here the threads are daemons, never joined on exit, and `interrupt()` fails
every unfinished future at once: whoever waits on one wakes up immediately, while its thread stops at its next chunk
(download.py raises `Interrupted` there) or simply ends with the process.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Executor, Future

from ..errors import Interrupted


class DaemonPool(Executor):
    """At most `workers` daemon threads, started as work arrives; futures as `concurrent.futures` makes them."""

    def __init__(self, workers: int, name: str):
        self._max, self._name = max(1, workers), name
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._unfinished: set[Future] = set()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name}: submit after shutdown")
            self._unfinished.add(future)
            if len(self._threads) < min(self._max, len(self._unfinished)):
                thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._jobs.put((future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args, kwargs = job
            with self._lock:  # interrupt() may have settled it already
                if future not in self._unfinished or not future.set_running_or_notify_cancel():
                    self._unfinished.discard(future)
                    continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to whoever waits on the future
                self._settle(future, exc=exc)
            else:
                self._settle(future, result=result)

    def _settle(self, future: Future, result=None, exc: BaseException | None = None) -> None:
        with self._lock:
            if future not in self._unfinished:
                return
            self._unfinished.discard(future)
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)

    def interrupt(self) -> None:
        """Fail every unfinished future with `Interrupted` now, running or queued; take no more work."""
        with self._lock:
            self._closed = True
            for future in self._unfinished:
                future.set_exception(Interrupted())
            self._unfinished.clear()
        self.shutdown(wait=False)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, timeout: float | None = None) -> None:
        """Let the threads end once the queued work is done; `wait` joins them (up to `timeout` seconds)."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        if wait:
            for thread in threads:
                thread.join(timeout)
