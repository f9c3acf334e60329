"""Typed options shared by every command (one definition, one help text)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import __version__


def _show_version(ctx: typer.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        print(f"{ctx.find_root().info_name} (offline-speech) {__version__}")
        raise typer.Exit(0)


CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Cache root (default: $OFFLINE_SPEECH_CACHE or <project>/.cache)."),
]
OutDir = Annotated[Path | None, typer.Option("--out-dir", help="Where job folders are (default <project>/out).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as one JSON document on stdout.")]
Version = Annotated[
    bool | None,
    typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit."),
]
