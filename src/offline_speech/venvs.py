"""Create and refresh the project's virtualenvs, one per backend, from the pinned locks in requirements/.

Standard library only: this runs before any venv exists (``./venv-setup`` execs it with a plain Python).

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
import collections
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__:
    from . import __version__ as VERSION
    from .settings import platform_parts, venv_python
    from .util import sha256_file, utc_now
else:  # run as a script by ./venv-setup, before any venv exists: load the stdlib-only siblings by path
    import importlib.util

    def _sibling(name: str):
        spec = importlib.util.spec_from_file_location(f"offline_speech.{name}", Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module

    _settings, _util = _sibling("settings"), _sibling("util")
    VERSION = _sibling("__init__").__version__
    platform_parts, venv_python = _settings.platform_parts, _settings.venv_python
    sha256_file, utc_now = _util.sha256_file, _util.utc_now

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"

# What each venv's stages import: the smoke test after every install, and the up-to-date check.
SMOKE_IMPORTS = {
    "core": ("huggingface_hub", "typer", "rich", "av", "offline_speech"),
    "whisperx": ("whisperx", "faster_whisper", "ctranslate2", "torch", "transformers", "nltk", "offline_speech"),
    # PyPI `indictranstoolkit` installs the module `IndicTransToolkit`.
    "translation": ("transformers", "torch", "sentencepiece", "ctranslate2", "IndicTransToolkit", "offline_speech"),
    "mlx": ("mlx.core", "mlx_whisper", "offline_speech"),
}
VENV_NAMES = tuple(SMOKE_IMPORTS)
MIN_PYTHON = (3, 10)
STAMP_NAME = ".offline-speech.json"
PTH_NAME = "offline_speech.pth"
PIP_TAIL_LINES = 15

# Run inside a venv's python: import each module, report every failure on one line.
_SMOKE_SCRIPT = """\
import importlib, sys
bad = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        bad.append(f"{name}: {type(exc).__name__}: {exc}".splitlines()[0])
print("; ".join(bad))
sys.exit(1 if bad else 0)
"""
_INSPECT_SCRIPT = (
    "import json, sys, sysconfig; "
    "print(json.dumps({'version': '%d.%d.%d' % sys.version_info[:3], 'purelib': sysconfig.get_path('purelib')}))"
)


class UsageError(Exception):
    """Bad command-line input: exit code 2."""


class StepError(Exception):
    """One setup step of one venv failed; `tail` holds the last lines of the tool's output."""

    def __init__(self, step: str, message: str, tail: tuple[str, ...] = ()):
        super().__init__(f"{step}: {message}")
        self.step, self.message, self.tail = step, message, tail


@dataclasses.dataclass(frozen=True)
class Options:
    """What every venv's setup needs to know, resolved from the command line."""

    venv_dir: Path
    requirements_dir: Path
    base_python: str
    base_version: str
    python_given: bool
    force: bool
    pip_verbose: bool
    installer: str = "auto"  # auto | uv | pip


@dataclasses.dataclass(frozen=True)
class VenvResult:
    """The outcome of one venv: the --json record."""

    name: str
    status: str  # created | updated | up-to-date | failed
    seconds: float
    error: str | None = None


# Venvs whose locks cannot resolve on a platform: (system, machine) -> {venv: why}. torch 2.8 publishes no wheel
# for Intel macOS, and every backend venv needs torch.
UNSUPPORTED = {
    ("darwin", "x86_64"): dict.fromkeys(("whisperx", "translation", "mlx"), "torch 2.8 has no wheel for Intel macOS"),
}
# What creating a venv needs from the system, and the command that installs it where we know it.
VENV_CHECK = "import ensurepip, venv"


def unsupported(names: list[str], system: str, machine: str) -> dict[str, str]:
    """{venv: why} for the selected venvs that cannot be built on this platform."""
    table = UNSUPPORTED.get((system.lower(), {"amd64": "x86_64"}.get(machine.lower(), machine.lower())), {})
    return {n: table[n] for n in names if n in table}


def check_can_create_venvs(python: str, version: str) -> None:
    """UsageError naming the install command when `python -m venv` cannot work (Debian's python3-venv)."""
    try:
        proc = subprocess.run([python, "-I", "-c", VENV_CHECK], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"{python}: does not run ({exc})") from None
    if proc.returncode != 0:
        short = ".".join(version.split(".")[:2])
        fix = (f"sudo apt-get install python{short}-venv" if Path("/etc/debian_version").exists()
               else "install your Python's venv/ensurepip package")
        raise UsageError(f"Python {version} ({python}) cannot create virtualenvs (no ensurepip): {fix}")


def is_apple_silicon(system: str, machine: str) -> bool:
    """True for macOS on arm64, the only platform where MLX uses the GPU."""
    return system.lower() == "darwin" and machine.lower() in ("arm64", "aarch64")


def default_venvs(system: str, machine: str) -> list[str]:
    """The venvs set up when none is named: every backend that runs well on this platform."""
    names = ["core", "whisperx", "translation"]
    if is_apple_silicon(system, machine):
        names.append("mlx")
    return names


def select_venvs(requested: list[str], system: str, machine: str) -> list[str]:
    """Expand `all`, check names, drop duplicates; returned in setup order (core first)."""
    unknown = [n for n in requested if n not in VENV_NAMES and n != "all"]
    if unknown:
        raise UsageError(f"unknown venv {unknown[0]!r} (choose from {', '.join(VENV_NAMES)}, all)")
    if not requested:
        wanted = set(default_venvs(system, machine))
    elif "all" in requested:
        wanted = set(VENV_NAMES)
    else:
        wanted = set(requested)
    return [n for n in VENV_NAMES if n in wanted]


def inspect_python(python: str | Path) -> dict | None:
    """{'version', 'purelib'} of an interpreter, or None when it is missing or does not run."""
    try:
        proc = subprocess.run(
            [str(python), "-I", "-c", _INSPECT_SCRIPT], check=False, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return None


def version_tuple(version: str) -> tuple[int, ...]:
    """'3.11.7' -> (3, 11, 7)."""
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def read_stamp(venv: Path) -> dict | None:
    """The stamp of the last successful setup, or None."""
    try:
        stamp = json.loads((venv / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def write_stamp(venv: Path, lock: Path, lock_sha: str, python_version: str, installer: str) -> None:
    """Record a successful setup; written atomically so a crash never leaves half a stamp."""
    stamp = {
        "lock": display(lock),
        "lock_sha256": lock_sha,
        "python": python_version,
        "installer": installer,
        "src": str(SRC),
        "time": utc_now(),
    }
    tmp = venv / (STAMP_NAME + ".tmp")
    tmp.write_text(json.dumps(stamp, indent=2) + "\n")
    os.replace(tmp, venv / STAMP_NAME)


def pth_is_current(purelib: str) -> bool:
    """Whether the venv's .pth points at this checkout's src/."""
    try:
        return (Path(purelib) / PTH_NAME).read_text().strip() == str(SRC)
    except OSError:
        return False


def write_pth(purelib: str) -> None:
    """Make `import offline_speech` find <root>/src in this venv, with no build or install step."""
    site = Path(purelib)
    site.mkdir(parents=True, exist_ok=True)
    (site / PTH_NAME).write_text(str(SRC) + "\n")


def smoke_test(python: Path, name: str) -> str | None:
    """Import what the venv's stages need, in that venv (isolated: no cwd, no PYTHONPATH); None when all import."""
    try:
        proc = subprocess.run(
            [str(python), "-I", "-c", _SMOKE_SCRIPT, *SMOKE_IMPORTS[name]],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=str(python.parent),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode == 0:
        return None
    lines = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    return lines[-1] if lines else f"python exited {proc.returncode}"


def run_tool(cmd: list[str], step: str, verbose: bool, env: dict[str, str] | None = None) -> None:
    """Run pip, uv or venv; show its output live on a terminal, else keep it and show the tail only on failure."""
    if verbose:
        code = subprocess.run(cmd, check=False, env=env).returncode
        if code != 0:
            raise StepError(step, f"exit {code} (its output is above)")
        return
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env
    )
    tail: collections.deque[str] = collections.deque(maxlen=PIP_TAIL_LINES)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip():
            tail.append(line.rstrip())
    code = proc.wait()
    if code != 0:
        raise StepError(step, f"exit {code}", tuple(tail))


def find_uv(opts: Options) -> str | None:
    """The uv that fills the backend venvs: venv/core's (pinned by the core lock), else one on PATH; None for pip."""
    if opts.installer == "pip":
        return None
    bundled = venv_python(opts.venv_dir / "core").with_name("uv.exe" if os.name == "nt" else "uv")
    found = str(bundled) if bundled.is_file() else shutil.which("uv")
    if found is None and opts.installer == "uv":
        raise StepError("find uv", f"--installer uv: no uv in {display(bundled.parent)} or on PATH (./venv-setup core)")
    return found


def uv_env(opts: Options) -> dict[str, str]:
    """uv's environment: its cache beside the venvs (same file system, so files are hard-linked, never copied)."""
    env = dict(os.environ)
    env.setdefault("UV_CACHE_DIR", str(opts.venv_dir / ".uv-cache"))
    return env


def remove_venv(venv: Path) -> None:
    """Delete a venv directory, refusing anything that does not look like one."""
    if not venv.exists() and not venv.is_symlink():
        return
    if venv.is_dir() and not venv.is_symlink() and ((venv / "pyvenv.cfg").exists() or not any(venv.iterdir())):
        shutil.rmtree(venv)
        return
    raise StepError("remove", f"{venv} exists and is not a venv (no pyvenv.cfg); refusing to delete it")


def display(path: Path) -> str:
    """A path relative to the project root when it lies inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def setup_venv(name: str, opts: Options, log) -> VenvResult:
    """Bring venv/<name> to the state its lock describes; never raises for a failed step."""
    start = time.monotonic()
    venv = opts.venv_dir / name
    lock = opts.requirements_dir / f"{name}.txt"
    python = venv_python(venv)
    created = False
    step = "read lock"
    try:
        if not lock.is_file():
            raise StepError(step, f"{display(lock)} not found")
        lock_sha = sha256_file(lock)
        step = "find uv"
        uv = None if name == "core" else find_uv(opts)  # core is where uv comes from: pip fills it

        step = "check"
        info = inspect_python(python) if python.exists() else None
        reason = None
        if not venv.exists():
            reason = "new"
        elif opts.force:
            reason = "--force"
        elif info is None:
            reason = "python missing or broken"
        elif opts.python_given and info["version"] != opts.base_version:
            reason = f"python {info['version']} -> {opts.base_version}"

        if reason is None:
            stamp = read_stamp(venv)
            if stamp is None:
                log(f"{name}: no stamp (the last setup did not finish); installing into {display(venv)}")
            elif stamp.get("lock_sha256") != lock_sha:
                log(f"{name}: {display(lock)} changed since the last setup; updating {display(venv)}")
            elif not pth_is_current(info["purelib"]):
                log(f"{name}: {PTH_NAME} does not point at {SRC}; relinking")
            else:
                error = smoke_test(python, name)
                if error is None:
                    log(f"{name}: up to date")
                    return VenvResult(name, "up-to-date", round(time.monotonic() - start, 2))
                log(f"{name}: stamp matches but the smoke test fails ({error}); reinstalling")

        # From here on the venv is being changed: no stamp until every step has passed.
        (venv / STAMP_NAME).unlink(missing_ok=True)
        if reason is not None:
            step = "create venv"
            if reason != "new":
                log(f"{name}: recreating {display(venv)} ({reason})")
                remove_venv(venv)
            log(f"{name}: creating {display(venv)} with python {opts.base_version} ({opts.base_python})")
            venv.parent.mkdir(parents=True, exist_ok=True)
            run_tool([opts.base_python, "-m", "venv", str(venv)], step, verbose=False)
            created = True
            info = inspect_python(python)
            if info is None:
                raise StepError(step, f"{python} does not run after python -m venv")
            if uv is None:
                step = "upgrade pip"
                log(f"{name}: upgrading pip")
                try:
                    run_tool([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], step, verbose=False)
                except StepError as exc:  # the bundled pip installs the locks too; a mirror may simply lack pip
                    log(f"{name}: warning: could not upgrade pip ({exc.tail[-1] if exc.tail else exc.message})")

        quiet = [] if opts.pip_verbose else ["-q"]
        if uv is None:
            installer = "pip"
            step = f"pip install -r {display(lock)}"
            log(f"{name}: {step}")
            run_tool([str(python), "-m", "pip", "install", *quiet, "-r", str(lock)], step, opts.pip_verbose)
        else:
            installer = "uv"
            env = uv_env(opts)
            step = f"uv pip install -r {display(lock)}"
            log(f"{name}: {step} (shared cache {display(Path(env['UV_CACHE_DIR']))})")
            cmd = [uv, "pip", "install", *quiet, "--python", str(python), "-r", str(lock)]
            run_tool(cmd, step, opts.pip_verbose, env)

        step = f"write {PTH_NAME}"
        write_pth(info["purelib"])

        step = "smoke test"
        log(f"{name}: smoke test: import {', '.join(SMOKE_IMPORTS[name])}")
        error = smoke_test(python, name)
        if error is not None:
            raise StepError(step, error)

        write_stamp(venv, lock, lock_sha, info["version"], installer)
        seconds = round(time.monotonic() - start, 2)
        status = "created" if created else "updated"
        log(f"{name}: {status} in {seconds:.1f} s")
        return VenvResult(name, status, seconds)
    except StepError as exc:
        return VenvResult(name, "failed", round(time.monotonic() - start, 2), "\n".join((str(exc), *exc.tail)))
    except OSError as exc:
        return VenvResult(name, "failed", round(time.monotonic() - start, 2), f"{step}: {exc}")


@contextlib.contextmanager
def venv_lock(venv_dir: Path, name: str, log):
    """Serialise setups of one venv across processes (people share venv/); unlocked where there is no fcntl."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    venv_dir.mkdir(parents=True, exist_ok=True)
    with open(venv_dir / f".{name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"{name}: waiting for another venv-setup working on {display(venv_dir / name)}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def resolve_base_python(given: str | None) -> tuple[str, str]:
    """(path, version) of the interpreter that creates the venvs; UsageError when unusable."""
    if given is None:
        # Inside a venv, create from the interpreter that venv was made from.
        python = getattr(sys, "_base_executable", None) or sys.executable
    else:
        python = shutil.which(given) or given
        if not Path(python).is_file():
            raise UsageError(f"--python {given}: no such file")
    info = inspect_python(python)
    if info is None:
        raise UsageError(f"--python {python}: does not run")
    if version_tuple(info["version"]) < MIN_PYTHON:
        raise UsageError(f"--python {python}: Python {info['version']} is too old (need >= 3.10)")
    return python, info["version"]


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


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
    parser.add_argument(
        "--venv-dir", type=Path, default=ROOT / "venv", help="where the venvs live (default: %(default)s)"
    )
    parser.add_argument("--force", action="store_true", help="delete and recreate the selected venvs")
    parser.add_argument(
        "--installer",
        choices=("auto", "uv", "pip"),
        default="auto",
        help="what fills the backend venvs: uv with a shared cache (auto: when found), or pip (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="progress on stderr; a JSON list of results on stdout")
    parser.add_argument("--requirements-dir", type=Path, default=ROOT / "requirements", help=argparse.SUPPRESS)
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
            raise UsageError(f"{', '.join(skipped)} cannot be built on {system}-{machine}: {next(iter(skipped.values()))}")
    except UsageError as exc:
        print(f"venv-setup: error: {exc}", file=sys.stderr)
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
        log(f"{', '.join(skipped)}: cannot be built on {system}-{machine} ({next(iter(skipped.values()))}); "
            f"setting up {', '.join(n for n in names if n not in skipped)}")
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
