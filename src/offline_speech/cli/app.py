"""The typer application, its entry point, and the one place where errors become messages and exit codes.

Exit codes: 0 ok, 1 something requested failed, 2 bad input, a usage error or a bad state file (nothing was
done), 130 interrupted.
"""

from __future__ import annotations

import importlib
import sys

import typer
from typer._click import exceptions as click_errors  # typer vendors its click: its errors are these

from ..errors import BAD_INPUT, INTERRUPTED, OfflineSpeechError
from .options import Version
from .output import err

HELP = ["-h", "--help"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": HELP},
)

SHIMS = {"cache-models": "cache-models.sh", "prepare-job": "prepare-job.sh", "run-pipeline": "run-pipeline.sh"}


@app.callback()
def _commands(version: Version = None) -> None:
    """offline-speech: provision models once, then run speech pipelines offline."""


def run(command, args: list[str], prog_name: str) -> int:
    """Run one click command and turn every way it can end into an exit code, printing one line on error."""
    try:
        code = command.main(args=args, prog_name=prog_name, standalone_mode=False, help_option_names=HELP)
    except click_errors.NoArgsIsHelpError as exc:
        print(exc.format_message())
        return BAD_INPUT
    except click_errors.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else prog_name
        err.print(f"error: {exc.format_message()} (see {where} --help)")
        return BAD_INPUT
    except click_errors.ClickException as exc:
        err.print(f"error: {exc.format_message()}")
        return exc.exit_code
    except typer.Abort:
        err.print("interrupted")
        return INTERRUPTED
    except OfflineSpeechError as exc:
        for line in exc.lines:
            err.print(f"{exc.label}: {line}")
        return exc.exit_code
    return code if isinstance(code, int) else 0


def main(argv: list[str] | None = None) -> None:
    """Entry point; a shim's command runs under the shim's own name so --help and errors show what users type."""
    argv = sys.argv[1:] if argv is None else argv
    shim = argv[0] if argv and argv[0] in SHIMS else None
    # Importing a command's module registers it: a shim's command imports only its own (each loads what only it
    # needs, a fast start); the bare command line lists them all.
    for command in [shim] if shim else SHIMS:
        importlib.import_module(f"{__package__}.{command.replace('-', '_')}")
    group = typer.main.get_command(app)
    if shim:
        sys.exit(run(group.commands[shim], argv[1:], SHIMS[shim]))  # type: ignore[attr-defined]
    sys.exit(run(group, argv, "offline-speech"))
