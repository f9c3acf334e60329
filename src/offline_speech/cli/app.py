"""The typer application, its entry point, and the one place where errors become messages and exit codes.

Exit codes: 0 ok, 1 something requested failed, 2 bad input or a bad state file (nothing was done),
130 interrupted.
"""

from __future__ import annotations

import sys

import typer

from ..errors import OfflineSpeechError
from .output import err

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None)

SHIMS = {"cache-models": "cache-models.sh", "prepare-job": "prepare-job.sh", "run-pipeline": "run-pipeline.sh"}


@app.callback()
def _commands() -> None:
    """offline-speech: provision models once, then run speech pipelines offline."""


def _report(exc: OfflineSpeechError) -> int:
    for line in exc.lines:
        err.print(f"error: {line}")
    return exc.exit_code


def main(argv: list[str] | None = None) -> None:
    """Entry point; a shim's command runs under the shim's own name so --help and errors show what users type."""
    from . import cache_models, prepare_job, run_pipeline  # noqa: F401 - registers the commands

    argv = sys.argv[1:] if argv is None else argv
    group = typer.main.get_command(app)
    try:
        if argv and argv[0] in SHIMS:
            command = group.commands[argv[0]]  # type: ignore[attr-defined]
            command.main(args=argv[1:], prog_name=SHIMS[argv[0]], standalone_mode=True)
        else:
            group.main(args=argv, prog_name="offline-speech")
    except OfflineSpeechError as exc:
        sys.exit(_report(exc))
