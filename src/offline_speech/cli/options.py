"""Typed options shared by every command (one definition, one help text)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

CacheDir = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", help="Cache root (default: $OFFLINE_SPEECH_CACHE or <project>/.cache)."),
]
OutDir = Annotated[Optional[Path], typer.Option("--out-dir", help="Where job folders are (default <project>/out).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as one JSON document on stdout.")]
