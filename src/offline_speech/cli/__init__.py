"""The offline-speech command line: the shell shims exec `python -m offline_speech <command>`.

Each command parses its options, makes one library call and renders what it returns (a table, or one JSON
document with --json); `app.main` turns every `OfflineSpeechError` into one line and its exit code.
"""

from .app import app, main

__all__ = ["app", "main"]
