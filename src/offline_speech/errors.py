"""Every error the toolkit reports to a user: one base class, one exit code per kind.

The command line maps any `OfflineSpeechError` to one line on stderr (`error: <message>`) and its exit code:
2 when the input or a state file is wrong (nothing was done), 1 when requested work failed, 130 when the user
stopped the run (`interrupted: <message>`). Standard library
only: stage processes in every venv import it.
"""

from __future__ import annotations

BAD_INPUT = 2
FAILED = 1
INTERRUPTED = 130


class OfflineSpeechError(Exception):
    """Base of every error with a message meant for a user; `exit_code` says what kind it is."""

    exit_code = BAD_INPUT
    label = "error"  # what each printed line starts with

    @property
    def lines(self) -> list[str]:
        """The message as the lines to print (most errors have one)."""
        return str(self).splitlines() or [type(self).__name__]


class BadInput(OfflineSpeechError):
    """A flag, argument or file the user gave cannot be used."""


class StateError(OfflineSpeechError):
    """A state file (lock, job, manifest, request) is unreadable or invalid; the message names it and the fix."""


class WorkFailed(OfflineSpeechError):
    """Requested work was attempted and failed (a download, a conversion, a stage)."""

    exit_code = FAILED


class Stopped(OfflineSpeechError):
    """The user stopped the run (Ctrl-C); what was done is kept, and the same command resumes it."""

    exit_code = INTERRUPTED
    label = "interrupted"

    def __init__(self, message: str = "run the same command again to resume") -> None:
        super().__init__(message)


class Interrupted(Exception):
    """The run was stopped (Ctrl-C): raised in download threads and set on the futures still unfinished (not an
    OfflineSpeechError: it is never shown as a message; the run ends as interrupted)."""
