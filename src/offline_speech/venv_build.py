"""Bring one venv to the state its lock describes: create it, install the lock (pip or uv), link src/, smoke-test,
stamp; and serialise setups of one venv across processes.

Standard library only, like the rest of venv-setup: it runs before any venv exists. venvs.py (the command line)
decides which venvs to build and calls setup_venv for each; a failed step never raises, it becomes the result.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from .settings import PROJECT_ROOT, SRC_DIR, venv_python
from .util import sha256_file, utc_now
from .venv_select import SMOKE_IMPORTS, inspect_python

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
        "src": str(SRC_DIR),
        "time": utc_now(),
    }
    tmp = venv / (STAMP_NAME + ".tmp")
    tmp.write_text(json.dumps(stamp, indent=2) + "\n")
    os.replace(tmp, venv / STAMP_NAME)


def pth_is_current(purelib: str) -> bool:
    """Whether the venv's .pth points at this checkout's src/."""
    try:
        return (Path(purelib) / PTH_NAME).read_text().strip() == str(SRC_DIR)
    except OSError:
        return False


def write_pth(purelib: str) -> None:
    """Make `import offline_speech` find <root>/src in this venv, with no build or install step."""
    site = Path(purelib)
    site.mkdir(parents=True, exist_ok=True)
    (site / PTH_NAME).write_text(str(SRC_DIR) + "\n")


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
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env)
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
        return str(path.relative_to(PROJECT_ROOT))
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
                log(f"{name}: {PTH_NAME} does not point at {SRC_DIR}; relinking")
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
