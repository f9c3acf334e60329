"""The one output sink of the command line: consoles, sizes, JSON, tables and progress reporters.

Commands print results on stdout (a table, or exactly one JSON document with --json) and everything else
(notes, progress, errors) on stderr.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def live(console: Console = out) -> bool:
    """Whether to draw live bars and boxed tables: a real terminal, not a pipe, a file or TERM=dumb."""
    return console.is_terminal and not console.is_dumb_terminal


def print_table(title: str, columns: list[str], rows: list[list[str]], console: Console = out) -> None:
    """A table: boxed on a terminal; plain aligned columns, never wrapped or cut, in a pipe or a log."""
    if live(console):
        table = Table(title=title)
        for col in columns:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    lines = [title, "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    print("\n".join(lines), file=console.file, flush=True)


def emit_json(data) -> None:
    """Print one JSON document on stdout."""
    print(json.dumps(data, indent=2, default=str))


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


# ---- progress ------------------------------------------------------------------------------------------


class RichReporter:
    """Bytes per file and in total, as rich bars (terminal only)."""

    def __init__(self, total_bytes: int):
        self.progress = Progress(
            TextColumn("{task.description}", table_column=None),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=out,
            transient=False,
        )
        self.total = self.progress.add_task("[bold]total", total=total_bytes)
        self.tasks: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def file_started(self, key: str, path: str, size: int) -> None:
        with self.lock:
            task = self.tasks.get((key, path))
            if task is None:
                self.tasks[(key, path)] = self.progress.add_task(f"{key}/{path}", total=size or None)
            else:  # a retry restarts the file
                self.progress.update(self.total, advance=-self.progress.tasks[task].completed)
                self.progress.reset(task, total=size or None)

    def advance(self, key: str, path: str, nbytes: int) -> None:
        with self.lock:
            task = self.tasks.get((key, path))
            if task is not None:
                self.progress.advance(task, nbytes)
            self.progress.advance(self.total, nbytes)

    def file_done(self, key: str, path: str) -> None:
        with self.lock:
            task = self.tasks.pop((key, path), None)
            if task is not None:
                self.progress.remove_task(task)


class LineReporter:
    """Plain lines for logs and pipes: one when a file starts, one when it is done, one per 10 % of the total."""

    def __init__(self, total_bytes: int, stream=sys.stdout):
        self.total_bytes = total_bytes
        self.done = 0
        self.next_mark = 0.1
        self.stream = stream
        self.lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def file_started(self, key: str, path: str, size: int) -> None:
        self._print(f"fetching {key}/{path} ({human(size)})")

    def advance(self, key: str, path: str, nbytes: int) -> None:
        with self.lock:
            self.done += nbytes
            if self.total_bytes and self.done >= self.next_mark * self.total_bytes:
                self._print(f"  {self.done * 100 // self.total_bytes}% of {human(self.total_bytes)}")
                self.next_mark = self.done / self.total_bytes + 0.1

    def file_done(self, key: str, path: str) -> None:
        self._print(f"done     {key}/{path}")


class PipelineProgress:
    """Rich progress for run-pipeline: one bar per job, in audio seconds of its current stage."""

    def __init__(self) -> None:
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:>7.1f}/{task.total:.1f} s audio"),
            TimeElapsedColumn(),
            console=err,
            transient=False,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> PipelineProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bars.stop()

    def _task(self, job: str) -> int:
        if job not in self.tasks:
            self.tasks[job] = self.bars.add_task(job, total=1.0)
        return self.tasks[job]

    def stage_started(self, stage: str, jobs: list[str], pid: int) -> None:
        self.bars.console.print(f"[bold]{stage}[/bold]: {len(jobs)} job(s) in one process (pid {pid})")

    def job_skipped(self, job: str, stage: str) -> None:
        self.bars.console.print(f"  {job}: {stage} up to date, skipped")

    def job_started(self, job: str, stage: str, seconds: float) -> None:
        self.bars.update(
            self._task(job), description=f"{job} [cyan]{stage}[/cyan]", total=max(seconds, 0.001), completed=0
        )

    def progress(self, job: str, stage: str, seconds: float) -> None:
        self.bars.update(self._task(job), completed=seconds)

    def job_done(self, job: str, stage: str, info: dict, duration: float) -> None:
        task = self._task(job)
        self.bars.update(task, completed=self.bars.tasks[task].total, description=f"{job} {stage} done")

    def job_failed(self, job: str, stage: str, error: str, log: Path) -> None:
        self.bars.update(self._task(job), description=f"{job} [red]{stage} failed[/red]")


class PipelineLines:
    """Plain lines for run-pipeline when stderr is not a terminal."""

    def __enter__(self) -> PipelineLines:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def stage_started(self, stage: str, jobs: list[str], pid: int) -> None:
        err.print(f"{stage}: {len(jobs)} job(s) in one process (pid {pid})")

    def job_skipped(self, job: str, stage: str) -> None:
        err.print(f"{job}: {stage} up to date, skipped")

    def job_started(self, job: str, stage: str, seconds: float) -> None:
        err.print(f"{job}: {stage} started ({seconds:.1f} s of audio)")

    def progress(self, job: str, stage: str, seconds: float) -> None:
        pass

    def job_done(self, job: str, stage: str, info: dict, duration: float) -> None:
        err.print(f"{job}: {stage} done in {duration:.2f} s")

    def job_failed(self, job: str, stage: str, error: str, log: Path) -> None:
        err.print(f"{job}: {stage} failed")
