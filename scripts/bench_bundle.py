#!/usr/bin/env python3
"""Bundle throughput: cache-models --export / --import against plain `tar` of the same files.

    venv/core/bin/python scripts/bench_bundle.py            # 3 GB of model files, 3 paired rounds
    venv/core/bin/python scripts/bench_bundle.py --quick    # 64 MB, 2 rounds (what the tests run)

A model is registered into a scratch cache with --from-dir (random weights under the catalog's large-v3 key, of
about its real size: its model.bin is 3.09 GB; --mb sets another; at a
commit whose tree listing the cache is given first, as a cache that once saw the hub's listing holds it), then
each round times, in alternating order, `./cache-models.sh --export` against `tar -chf` of the snapshot
(links followed, no hashing), and `./cache-models.sh --import` into an empty cache against `tar -xf` into an
empty folder. Before each timed command, outside its time, its output is removed and the page cache's dirty pages
are written out, so no side pays for the writes of the one before. Import hashes every byte before anything
enters the cache; export hashes a file unless the cache's verified index vouches for its unchanged stat (recorded
whenever its bytes were hashed, e.g. by an earlier export), so each round also times an export with the index
removed: every byte hashed. Prints the median of the per-round ratios (tar seconds / ours; target >= 0.8) and the
MB/s of ours, and for information a .tar.zst export (the size it reaches: weights barely compress) and the ratios
by CPU seconds, steadier on a shared machine.

All of it twice: into the page cache (each side timed until it exits, the kernel writing to disk afterwards: the
copy is a memcpy at about the speed sha256 runs on one core, the hardest case for a tool that hashes) and to disk
(each side timed until what it wrote is on disk: a sync after it, inside the time; what carrying an archive away
needs).

Two figures of stopping and resuming, over plain HTTP on the throttled test hub and through Xet (hf-xet from the
test hub's CAS) (tests/support/interrupt.py): Ctrl-C to exit of
./cache-models.sh mid-download (SIGINT to its process group, as a terminal sends it; target <= 1.5 s), and the
bytes a rerun fetches after a kill -9 at >= 90 % of a file, over the file's size (target <= 0.15).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = "faster-whisper-large-v3"
# sha256 of the files, in the blocks the bundle code hashes (4 MiB), in a bare Python: the hashing alone.
SHA256 = """import hashlib, sys
for path in sys.argv[1:]:
    h, buf = hashlib.sha256(), bytearray(4 << 20)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(memoryview(buf)[:n])
"""
COMMIT = "b" * 40


def run(*cmd: str) -> float:
    """Seconds a command takes; exits on failure."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    return time.perf_counter() - started


def timed(fn, output: Path | None, durable: bool) -> tuple[float, float]:
    """(seconds, CPU seconds of the processes it ran): on a shared machine the CPU figure is the steadier one.
    Each side starts alike: what it writes removed beforehand (replacing a file whose pages are still being written
    back waits for them) and the page cache's dirty pages written out (else a side pays for the one before it).
    `durable`: the time runs until what it wrote is on disk (a sync after it, timed)."""
    if output is not None and output.is_dir():
        shutil.rmtree(output)
        output.mkdir()
    elif output is not None:
        output.unlink(missing_ok=True)
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    fn()
    if durable:
        os.sync()
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def make_model(folder: Path, size: int) -> None:
    folder.mkdir(parents=True)
    for name, text in (
        ("config.json", '{"alignment_heads": []}'),
        ("preprocessor_config.json", "{}"),
        ("tokenizer.json", "{}"),
        ("vocabulary.json", "[]"),
    ):
        (folder / name).write_text(text)
    with open(folder / "model.bin", "wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(os.urandom(1 << 20))


def _support() -> None:
    """Make the package and tests/support importable (see tests/support/__init__.py)."""
    for path in (str(ROOT / "src"), str(ROOT / "tests")):
        if path not in sys.path:
            sys.path.insert(0, path)


def _big_files(mb: int) -> dict[str, bytes]:
    """The interrupted entry's files with its big file of `mb` MiB (random, in 16 MiB draws)."""
    import random

    from support.interrupt import BIG, repo_files

    rng = random.Random(13)
    return repo_files(size=1) | {BIG: b"".join(rng.randbytes(1 << 24) for _ in range(max(1, mb // 16)))}


def ctrl_c_latency(work: Path, rounds: int, xet: bool = False) -> list[float]:
    """Seconds from Ctrl-C to the exit of ./cache-models.sh downloading: over plain HTTP a 10.5 MiB file at 1 MB/s,
    once 20 % of it is on disk; through Xet (hf-xet from the test hub's local CAS, which cannot be slowed down) a
    400 MiB file, 0.3 s after its first bytes are on disk. One figure per round, each into an empty cache."""
    _support()
    from support.interrupt import BIG, KEY, repo_files, serve, start, wait_for_partial

    files = _big_files(400) if xet else repo_files()
    seconds = []
    with serve(files, xet=xet) as hub:
        hub.throttle(None if xet else 1_000_000)
        for r in range(rounds):
            cache_root = work / f"ctrl-c-{xet}-{r}" / "cache"
            proc = start(hub, cache_root, KEY)
            wait_for_partial(proc, cache_root, files[BIG], 0.0001 if xet else 0.2)
            if xet:
                time.sleep(0.3)
            sent = time.perf_counter()
            os.killpg(proc.pid, signal.SIGINT)
            proc.communicate(timeout=60)
            seconds.append(time.perf_counter() - sent)
            if proc.returncode != 130:
                sys.exit(f"Ctrl-C: cache-models exited {proc.returncode}, not 130")
    return seconds


def resume_fraction(work: Path, mb: int, rate: int, xet: bool = False) -> tuple[float, int]:
    """Bytes the rerun fetches after a kill -9 at >= 90 % of an `mb` MiB file (served at `rate` bytes/s over plain
    HTTP; through Xet at the local CAS's own speed), over the file's size; and that size. A rerun that goes through
    Xet again counts the whole file (the local CAS keeps no chunk cache to spare any of it)."""
    _support()
    from support.interrupt import BIG, KEY, fetched, hub_env, repo_files, serve, start, wait_for_partial
    from support.shell import shim

    files = _big_files(mb) if xet else repo_files(size=mb * (1 << 20) + (1 << 19))  # 90 % shows on disk
    size = len(files[BIG])
    cache_root = work / f"resume-{xet}" / "cache"
    with serve(files, xet=xet) as hub:
        hub.throttle(None if xet else rate)
        proc = start(hub, cache_root, KEY)
        wait_for_partial(proc, cache_root, files[BIG], 0.9, timeout=600)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        hub.throttle(None)
        hub.reset_requests()
        shim("cache-models.sh", KEY, cache=cache_root, **hub_env(hub, cache_root))
        again = size if any("xet-read-token" in r.path for r in hub.requests) else 0
        return (fetched(hub) + again) / size, size


def record_listing(cache_root: Path, folder: Path) -> None:
    """trees/COMMIT.json of the files, as the hub lists them: --from-dir checks the files against it and registers
    them under COMMIT (files nothing here knows would become a local, unverified revision, which no bundle carries)."""
    from offline_speech import cache
    from offline_speech.catalog import load_catalog
    from offline_speech.provisioning.register import lfs_pointer_sha1, looks_like_lfs
    from offline_speech.util import git_sha1_file, sha256_file

    files = {}
    for p in sorted(folder.iterdir()):
        size = p.stat().st_size
        if looks_like_lfs(p.name, size):
            sha = sha256_file(p)
            files[p.name] = cache.RemoteFile(p.name, size, lfs_pointer_sha1(sha, size), sha)
        else:
            files[p.name] = cache.RemoteFile(p.name, size, git_sha1_file(p))
    cache.write_tree(cache_root, load_catalog().get(KEY).repo, COMMIT, files)


def rounds_of(cm: list[str], work: Path, source: Path, snapshot: Path, rounds: int, durable: bool) -> dict:
    """Per round: seconds of each side of export (index trusted, every byte hashed, tar, .tar.zst) and of import
    (ours, tar -x), and the CPU seconds; `durable`: each time until what it wrote is on disk."""
    figures: dict[str, list[float]] = {}
    index = source / "offline-speech" / "verified.json"
    archive, plain, zst = work / "b.tar", work / "plain.tar", work / "b.tar.zst"
    target, untar = work / "target", work / "untar"
    for p in (target, untar):
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir()

    def export(dest: Path):
        return lambda: run(*cm, "--export", str(dest), KEY, "--cache-dir", str(source))

    def export_hashing_every_byte() -> float:
        index.unlink(missing_ok=True)
        return export(archive)()

    blobs = [str(p.resolve()) for p in sorted(snapshot.iterdir())]
    for r in range(rounds):
        exports = [
            ("export", export(archive), archive),
            ("tar", lambda: run("tar", "-chf", str(plain), "-C", str(snapshot), "."), plain),
        ]
        imports = [
            ("import", lambda: run(*cm, "--import", str(archive), "--cache-dir", str(target)), target),
            ("tar -x", lambda: run("tar", "-xf", str(plain), "-C", str(untar)), untar),
        ]
        # "hashed" first: it also records what "export" then trusts. Paired sides in alternating order.
        sides = [
            ("hashed", export_hashing_every_byte, archive),
            *(exports if r % 2 == 0 else exports[::-1]),
            ("zstd", export(zst), zst),
            *(imports if r % 2 == 0 else imports[::-1]),
            ("sha256", lambda: run(sys.executable, "-c", SHA256, *blobs), None),
        ]
        for name, fn, out in sides:
            seconds, cpu = timed(fn, out, durable)
            figures.setdefault(name, []).append(seconds)
            figures.setdefault(f"{name} cpu", []).append(cpu)
    figures["zstd size"] = [zst.stat().st_size / archive.stat().st_size]
    return figures


def report(f: dict[str, list[float]], size: int, durable: bool) -> None:
    """The medians of the paired ratios (tar seconds / ours) and the MB/s of ours."""

    def ratio(tar: str, ours: str) -> float:
        return statistics.median(t / o for t, o in zip(f[tar], f[ours]))

    def rate(name: str) -> str:
        return f"{size / 1e6 / statistics.median(f[name]):.0f} MB/s"

    print(
        "to disk (each side timed until what it wrote is on disk: a sync after it):"
        if durable
        else "into the page cache (each side timed until it exits; the kernel writes to disk afterwards):"
    )
    print(
        f"  export throughput / plain tar: {ratio('tar', 'export'):.2f} "
        f"(ours {rate('export')}, files the verified index vouches for unhashed)"
    )
    print(
        f"  export hashing every byte (no verified index) / plain tar: {ratio('tar', 'hashed'):.2f} "
        f"(ours {rate('hashed')})"
    )
    print(
        f"  import throughput / plain tar: {ratio('tar -x', 'import'):.2f} (ours {rate('import')}, hashing every byte)"
    )
    if not durable:  # (to disk, tar's time includes the writes and the hashing alone none: no bound)
        print(
            f"  the most any tool that hashes every byte on one core can reach: plain tar -x / sha256 of the files "
            f"alone: {ratio('tar -x', 'sha256'):.2f} (sha256 {rate('sha256')})"
        )
    print(f"  .tar.zst export: {rate('zstd')}, {f['zstd size'][0]:.3f} of the .tar's size")
    print(
        f"  by CPU seconds (user + sys, process start included), tar / ours: export "
        f"{ratio('tar cpu', 'export cpu'):.2f}, hashed {ratio('tar cpu', 'hashed cpu'):.2f}, "
        f"import {ratio('tar -x cpu', 'import cpu'):.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 MB, 2 rounds")
    parser.add_argument(
        "--mb", type=int, default=None, help="model size in MB (default 3000, about large-v3's model.bin; --quick 64)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="paired rounds (default 3; --quick 2)")
    parser.add_argument("--work-dir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    mb = args.mb or (64 if args.quick else 3000)
    rounds = args.rounds or (2 if args.quick else 3)
    python = ROOT / "venv" / "core" / "bin" / "python"
    cm = [str(python), "-m", "offline_speech", "cache-models"]
    work = Path(tempfile.mkdtemp(dir=args.work_dir, prefix="bench-bundle-"))
    try:
        make_model(work / "model", mb << 20)
        source = work / "cache"
        record_listing(source, work / "model")
        run(*cm, "--from-dir", str(work / "model"), "--key", KEY, "--revision", COMMIT, "--cache-dir", str(source))
        snapshot = next((source / "huggingface" / "hub").glob("models--*/snapshots/*"))
        size = sum(p.stat().st_size for p in snapshot.iterdir())
        print(f"bundle of {size / 1e6:.0f} MB, {rounds} paired rounds (median of per-round ratios; target >= 0.8)")
        fixed = statistics.median(
            run(*cm, "--export", str(work / "none.tar"), KEY, "--dry-run", "--cache-dir", str(source)) for _ in range(3)
        )
        print(
            f"fixed cost of one run, in every time of ours below (process start + planning: --export --dry-run): "
            f"{fixed:.2f} s"
        )
        for durable in (False, True):
            figures = rounds_of(cm, work, source, snapshot, rounds, durable)
            report(figures, size, durable)
        for xet in (False, True):
            how = "through Xet" if xet else "over plain HTTP"
            latencies = ctrl_c_latency(work, 1 if args.quick else 5, xet)
            print(
                f"Ctrl-C to exit, {how}: {statistics.median(latencies):.2f} s median of {len(latencies)} "
                f"{[round(s, 2) for s in latencies]} (target <= 1.5 s)"
            )
            mb_resume = (10 if args.quick else 100) if not xet else (400 if args.quick else 1000)
            fraction, size = resume_fraction(work, mb_resume, 2_000_000 if args.quick else 20_000_000, xet)
            print(
                f"bytes fetched after a kill at 90 %, {how} / file size: {fraction:.3f} (file of {size / 1e6:.1f} MB; "
                "target <= 0.15)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
