#!/usr/bin/env python3
"""Bundle throughput: cache-models --export / --import against plain `tar` of the same files.

    venv/core/bin/python scripts/bench_bundle.py            # 1 GB of model files, 5 paired rounds
    venv/core/bin/python scripts/bench_bundle.py --quick    # 64 MB, 2 rounds (what the tests run)

A model is registered into a scratch cache with --from-dir (random weights under the catalog's large-v3 key, at a
commit whose tree listing the cache is given first, as a cache that once saw the hub's listing holds it), then each round times, in alternating order, `./cache-models.sh --export` against `tar -chf` of the snapshot
(links followed, no hashing), and `./cache-models.sh --import` into an empty cache against `tar -xf` into an
empty folder. Our side hashes every byte (export: against the hub ids; import: before anything enters the
cache), so the figure is throughput including hashing. Prints the median of the per-round ratios
(tar seconds / ours; target >= 0.8) and the MB/s of each side.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = "faster-whisper-large-v3"
COMMIT = "b" * 40


def run(*cmd: str) -> float:
    """Seconds a command takes; exits on failure."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    return time.perf_counter() - started


def make_model(folder: Path, size: int) -> None:
    folder.mkdir(parents=True)
    for name, text in (("config.json", '{"alignment_heads": []}'), ("preprocessor_config.json", "{}"),
                       ("tokenizer.json", "{}"), ("vocabulary.json", "[]")):
        (folder / name).write_text(text)
    with open(folder / "model.bin", "wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(os.urandom(1 << 20))


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 MB, 2 rounds")
    parser.add_argument("--mb", type=int, default=None, help="model size in MB (default 1000; --quick 64)")
    parser.add_argument("--rounds", type=int, default=None, help="paired rounds (default 5; --quick 2)")
    parser.add_argument("--work-dir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    mb = args.mb or (64 if args.quick else 1000)
    rounds = args.rounds or (2 if args.quick else 5)
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
        export_ratios, import_ratios, ours_export, ours_import = [], [], [], []
        for r in range(rounds):
            archive, plain = work / "b.tar", work / "plain.tar"
            target, untar = work / "target", work / "untar"
            for p in (archive, plain):
                p.unlink(missing_ok=True)
            sides = [("ours", lambda: run(*cm, "--export", str(archive), KEY, "--cache-dir", str(source))),
                     ("tar", lambda: run("tar", "-chf", str(plain), "-C", str(snapshot), "."))]
            times = dict((name, fn()) for name, fn in (sides if r % 2 == 0 else sides[::-1]))
            export_ratios.append(times["tar"] / times["ours"])
            ours_export.append(times["ours"])
            for p in (target, untar):
                shutil.rmtree(p, ignore_errors=True)
            untar.mkdir()
            sides = [("ours", lambda: run(*cm, "--import", str(archive), "--cache-dir", str(target))),
                     ("tar", lambda: run("tar", "-xf", str(plain), "-C", str(untar)))]
            times = dict((name, fn()) for name, fn in (sides if r % 2 == 0 else sides[::-1]))
            import_ratios.append(times["tar"] / times["ours"])
            ours_import.append(times["ours"])
        mbs = size / 1e6
        print(f"bundle of {mbs:.0f} MB, {rounds} paired rounds (median of per-round ratios; target >= 0.8)")
        print(f"export throughput / plain tar: {statistics.median(export_ratios):.2f} "
              f"(ours {mbs / statistics.median(ours_export):.0f} MB/s, hashing every byte)")
        print(f"import throughput / plain tar: {statistics.median(import_ratios):.2f} "
              f"(ours {mbs / statistics.median(ours_import):.0f} MB/s, hashing every byte)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
