"""Create and refresh the project's virtualenvs, one per backend, from the pinned locks in requirements/.

Standard library only: this runs before any venv exists (``./venv-setup`` execs it with a plain Python). This file
is the command line; venv_select.py decides which venvs and which Python, venv_build.py builds one venv.

Examples:
  ./venv-setup                      # core, whisperx, translation (+ mlx on Apple Silicon)
  ./venv-setup core                 # only the core venv
  ./venv-setup all --force          # every venv, recreated from nothing
  ./venv-setup core --json          # progress on stderr, a JSON list of results on stdout
  ./venv-setup --python /usr/bin/python3.12 --venv-dir /data/venvs

Each venv is venv/<name>: created with ``python -m venv``, filled from requirements/<name>.txt, given an
``offline_speech.pth`` that puts <root>/src on its path (no build step), then smoke-tested by importing what its
stages need. A stamp (``.offline-speech.json``: sha256 of the lock, python version, installer, time) is written only
after all of that succeeded; a later run whose stamp matches and whose smoke test passes does nothing.

core is filled by pip; the backend venvs by uv (from venv/core, else on PATH), whose cache (venv/.uv-cache, or
$UV_CACHE_DIR) holds one copy of each package, hard-linked into every venv: torch and its CUDA libraries (6.3 GB) are
on disk once, not once per venv. --installer pip uses pip everywhere (each venv its own copy). uv does not read
pip's configuration: for a mirror set UV_DEFAULT_INDEX (or UV_INDEX_URL) and UV_FIND_LINKS.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

if not __package__:
    # Run as a script by ./venv-setup, before any venv exists: register this folder as the package by its path
    # (not from sys.path), so that the imports below work as they do inside the package. The modules venv-setup
    # imports (this one, venv_select, venv_build, settings, util, errors, __init__) are standard library only.
    import importlib.util

    _here = Path(__file__).resolve().parent
    _spec = importlib.util.spec_from_file_location(
        "offline_speech", _here / "__init__.py", submodule_search_locations=[str(_here)]
    )
    sys.modules["offline_speech"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["offline_speech"])  # type: ignore[union-attr]

from offline_speech import __version__ as VERSION
from offline_speech.settings import PROJECT_ROOT, VENV_ROOT, platform_parts
from offline_speech.venv_build import Options, VenvResult, display, setup_venv, venv_lock
from offline_speech.venv_select import (
    VENV_NAMES,
    UsageError,
    check_can_create_venvs,
    is_apple_silicon,
    resolve_base_python,
    select_venvs,
    unsupported,
)


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")  # the format of the other three commands


def build_parser() -> argparse.ArgumentParser:
    """The command line of ./venv-setup."""
    parser = _Parser(
        prog="venv-setup",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s (offline-speech) {VERSION}")
    parser.add_argument("names", nargs="*", metavar="VENV", help=f"{', '.join(VENV_NAMES)} or all")
    parser.add_argument("--python", help="interpreter (>= 3.10) that creates the venvs; default: this one")
    parser.add_argument("--venv-dir", type=Path, default=VENV_ROOT, help="where the venvs live (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="delete and recreate the selected venvs")
    parser.add_argument(
        "--installer",
        choices=("auto", "uv", "pip"),
        default="auto",
        help="what fills the backend venvs: uv with a shared cache (auto: when found), or pip (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="progress on stderr; a JSON list of results on stdout")
    parser.add_argument("--requirements-dir", type=Path, default=PROJECT_ROOT / "requirements", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ./venv-setup: 0 when every venv is ready, 1 when one failed, 2 for bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = sys.stderr if args.json else sys.stdout

    def log(line: str) -> None:
        print(line, file=out, flush=True)

    try:
        system, machine = platform_parts()
        names = select_venvs(args.names, system, machine)
        if not args.requirements_dir.is_dir():
            raise UsageError(f"--requirements-dir {args.requirements_dir}: not a directory")
        base_python, base_version = resolve_base_python(args.python)
        check_can_create_venvs(base_python, base_version)
        skipped = unsupported(names, system, machine)
        if skipped and len(skipped) == len(names):
            raise UsageError(
                f"{', '.join(skipped)} cannot be built on {system}-{machine}: {next(iter(skipped.values()))}"
            )
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    opts = Options(
        venv_dir=args.venv_dir.resolve(),
        requirements_dir=args.requirements_dir.resolve(),
        base_python=base_python,
        base_version=base_version,
        python_given=args.python is not None,
        force=args.force,
        pip_verbose=sys.stdout.isatty() and not args.json,
        installer=args.installer,
    )
    if skipped:
        log(
            f"{', '.join(skipped)}: cannot be built on {system}-{machine} ({next(iter(skipped.values()))}); "
            f"setting up {', '.join(n for n in names if n not in skipped)}"
        )
        names = [n for n in names if n not in skipped]
    if "mlx" in names and not is_apple_silicon(system, machine):
        log(f"mlx: not Apple Silicon ({system} {machine}): installs mlx[cpu]; mlx-whisper runs here on CPU only")

    results = []
    for name in names:
        try:
            with venv_lock(opts.venv_dir, name, log):
                result = setup_venv(name, opts, log)
        except OSError as exc:
            result = VenvResult(name, "failed", 0.0, f"lock {display(opts.venv_dir)}: {exc}")
        if result.status == "failed":
            head, *tail = result.error.splitlines()
            print(f"{name}: FAILED at {head}", file=sys.stderr, flush=True)
            for line in tail:
                print(f"    | {line}", file=sys.stderr, flush=True)
        results.append(result)

    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("venv-setup: interrupted", file=sys.stderr)
        sys.exit(130)
