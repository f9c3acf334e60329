"""One stage process: `python -m <module> REQUEST` in the stage's venv with the offline environment, its protocol
events read line by line from stdout, its stderr copied into the jobs' logs, and never outliving the runner."""

from __future__ import annotations

import ctypes
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ..settings import PROJECT_ROOT


def _die_with_parent() -> None:
    """Child side of fork: on Linux, get SIGKILL when the runner dies (kill -9 included), so nothing half-runs."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: the runner's own handlers stop the child


class StageProcess:
    """A started stage process. Iterate `events()` for its protocol events (dicts; any other line as a str),
    call `stop()` when the runner is interrupted, `close()` when done."""

    def __init__(self, python: Path, module: str, request: Path, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [str(python), "-m", module, str(request)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(PROJECT_ROOT),
            text=True,
            encoding="utf-8",
            errors="replace",
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self._stderr: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def copy_stderr(self, write: Callable[[str], None]) -> None:
        """From now on, hand every stderr line (library output, tracebacks) to `write`, in a thread."""
        self._stderr = threading.Thread(target=lambda: [write(line) for line in self.proc.stderr], daemon=True)
        self._stderr.start()

    def events(self) -> Iterator[dict | str]:
        """Each stdout line: a protocol event as a dict, or the raw line when it is not one."""
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                yield line
                continue
            yield event if isinstance(event, dict) else line

    def wait(self) -> int:
        return self.proc.wait()

    def stop(self) -> None:
        """Terminate, then kill after 5 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        if self._stderr is not None and self._stderr.is_alive():
            self._stderr.join(timeout=5)
