"""Bundles for air-gapped machines: export on one cache, import into another, run a job with no network; every
tampered archive refused with one line and the cache unchanged; delta exports; importing twice changes nothing."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from support import ROOT
from support.sample import CLIP, SENTENCES, text_between
from support.wer import word_error_rate

TINY = "faster-whisper-tiny.en"


def tree_state(root: Path) -> dict[str, bytes]:
    """Every path under a cache with its bytes (links as their target): what 'unchanged' compares."""
    if not root.exists():
        return {}
    state = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            state[rel] = b"-> " + os.readlink(p).encode()
        elif p.is_file() and p.parent.name != ".locks":
            state[rel] = p.read_bytes()
        else:
            state[rel] = b"<dir>"
    return state


def bundled_files(archive: Path) -> list[tuple[str, bytes]]:
    """A bundle's file members in order, with their bytes (the manifest aside: it carries a time stamp)."""
    with tarfile.open(archive) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar if m.name.startswith("offline-speech-bundle/files/")]


@pytest.fixture()
def exported(cli, tmp_path) -> Path:
    """A bundle of tiny.en, a word aligner and punkt_tab, exported from a cache provisioned from the test hub."""
    cli.run(TINY, "align-hi", "nltk-punkt_tab")
    archive = tmp_path / "models.tar"
    cli.run("--export", str(archive))
    return archive


def test_export_then_import_into_an_empty_cache_runs_a_job_offline(cli, exported, tmp_path):
    assert exported.read_bytes()[257:262] == b"ustar"  # a .tar is written uncompressed
    names = [m.name for m in tarfile.open(exported)]
    assert names[-1] == "offline-speech-bundle/manifest.json" and len(names) == len(set(names))
    assert all(m.isfile() for m in tarfile.open(exported))  # no links: blobs are resolved
    manifest = json.load(tarfile.open(exported).extractfile(names[-1]))
    assert set(manifest["models"]) == {TINY, "align-hi"} and set(manifest["assets"]) == {"nltk-punkt_tab"}

    dry = cli.json("--export", str(tmp_path / "dry.tar"), "--dry-run")
    assert dry["bytes"] > 70_000_000 and not (tmp_path / "dry.tar").exists()

    target = tmp_path / "airgapped"
    imported = subprocess.run(
        [
            "unshare",
            "-n",
            str(ROOT / "cache-models.sh"),
            "--import",
            str(exported),
            "--cache-dir",
            str(target),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=cli.env(),
    )
    assert imported.returncode == 0, imported.stderr
    assert {r["key"]: r["status"] for r in json.loads(imported.stdout)["imported"]} == {
        TINY: "imported",
        "align-hi": "imported",
        "nltk-punkt_tab": "imported",
    }
    verified = replace(cli, cache=target).json("--verify", netns=True)
    assert verified["problems"] == 0 and len(verified["verified"]) == 3
    assert (
        json.loads((target / "offline-speech.lock.json").read_text())["models"][TINY]["commit"]
        == json.loads((cli.cache / "offline-speech.lock.json").read_text())["models"][TINY]["commit"]
    )

    out = tmp_path / "out"
    env = cli.env()
    end = max(s["end"] for s in SENTENCES if s["end"] <= 20) + 0.2  # a clip of whole sentences: a fair reference
    prep = subprocess.run(
        [
            str(ROOT / "prepare-job.sh"),
            "--media",
            str(CLIP),
            "-s",
            "en",
            "--asr-model",
            "tiny.en",
            "--no-align",
            "--end-time",
            f"{end:.2f}",
            "--out-dir",
            str(out),
            "--cache-dir",
            str(target),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert prep.returncode == 0, prep.stderr
    job = prep.stdout.strip().splitlines()[-1]
    run = subprocess.run(
        ["unshare", "-n", str(ROOT / "run-pipeline.sh"), "-j", job, "--out-dir", str(out), "--cache-dir", str(target)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert word_error_rate(text_between(0, end), (out / job / "speech-en.en.txt").read_text()) <= 0.15

    before = tree_state(target)
    again = replace(cli, cache=target).json("--import", str(exported))
    assert {r["status"] for r in again["imported"]} == {"cached"}
    assert tree_state(target) == before  # importing the same archive twice is a no-op


def _rewrite(src: Path, dest: Path, edit) -> None:
    """A copy of a bundle whose member list went through `edit(list of (TarInfo, bytes))`."""
    with tarfile.open(src) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else b"") for m in tar]
    members = edit(members)
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as out:
        for info, data in members:
            out.addfile(info, io.BytesIO(data) if info.isfile() else None)


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


def _flip(members):
    info, data = max(members[:-1], key=lambda m: m[0].size)
    i = members.index((info, data))
    members[i] = (info, data[:1000] + bytes([data[1000] ^ 1]) + data[1001:])
    return members


TAMPERED = {
    "flipped byte": (_flip, "does not match its hash"),
    "traversal": (lambda m: [_file("offline-speech-bundle/files/../../evil", b"x")] + m, "unexpected member"),
    "absolute path": (lambda m: [_file("/tmp/evil-offline-speech", b"x")] + m, "unexpected member"),
    "link leaving the archive": (
        lambda m: [_link("offline-speech-bundle/files/" + "a" * 64, "/etc/passwd")] + m,
        "is a link",
    ),
    "duplicate entry": (lambda m: [m[0]] + m, "appears twice"),
    "truncated": (None, "truncated"),
    "manifest lies about a path": (None, "leaves its folder"),
}


@pytest.mark.parametrize("how", list(TAMPERED))
def test_a_tampered_archive_is_refused_in_one_line_and_the_cache_is_unchanged(cli, exported, tmp_path, how):
    edit, says = TAMPERED[how]
    bad = tmp_path / "bad.tar"
    if how == "truncated":
        data = exported.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif how == "manifest lies about a path":

        def lie(members):
            info, data = members[-1]
            manifest = json.loads(data)
            manifest["models"][TINY]["files"][0]["path"] = "../../../../outside.json"
            return members[:-1] + [_file(info.name, json.dumps(manifest).encode())]

        _rewrite(exported, bad, lie)
    else:
        _rewrite(exported, bad, edit)
    target = tmp_path / "target"
    other = replace(cli, cache=target)
    other.run(TINY)  # a cache that already holds something
    before = tree_state(target)
    proc = other.run("--import", str(bad), check_code=2)
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if not re.match(r"\s*\d+% of ", line)]  # progress aside
    assert len(errors) == 1 and errors[0].startswith("error: ") and says in errors[0], proc.stderr
    assert tree_state(target) == before
    assert not Path("/tmp/evil-offline-speech").exists() and not (tmp_path / "outside.json").exists()


def test_a_delta_export_holds_only_what_the_target_lock_lacks(cli, exported, tmp_path):
    target = tmp_path / "target"
    other = replace(cli, cache=target)
    other.run(TINY)
    delta = tmp_path / "delta.tar"
    result = cli.json("--export", str(delta), "--since", str(target / "offline-speech.lock.json"))
    assert sorted(result["entries"]) == ["align-hi", "nltk-punkt_tab"]
    manifest = json.load(tarfile.open(delta).extractfile("offline-speech-bundle/manifest.json"))
    assert TINY not in manifest["models"] and delta.stat().st_size < exported.stat().st_size / 4
    imported = other.json("--import", str(delta))
    assert {r["key"] for r in imported["imported"]} == {"align-hi", "nltk-punkt_tab"}
    assert other.json("--verify")["problems"] == 0


def test_export_refuses_a_damaged_cache_and_leaves_no_archive(cli, tmp_path):
    cli.run(TINY)
    lock = json.loads((cli.cache / "offline-speech.lock.json").read_text())
    commit = lock["models"][TINY]["commit"]
    snap = cli.cache / "huggingface/hub/models--Systran--faster-whisper-tiny.en/snapshots" / commit / "model.bin"
    blob = snap.resolve()
    data = bytearray(blob.read_bytes())
    data[500] ^= 1
    blob.write_bytes(bytes(data))  # same size: only the hash tells
    proc = cli.run("--export", str(tmp_path / "x.tar"), check_code=2)
    assert "does not match its recorded hash" in proc.stderr and "--verify --repair" in proc.stderr
    assert not list(tmp_path.glob("*x.tar*"))
    shutil.rmtree(cli.cache)


def test_a_zst_name_exports_zstd_and_import_tells_it_by_its_magic_bytes(cli, exported, tmp_path):
    zstandard = pytest.importorskip("zstandard")
    archive = tmp_path / "models.tar.zst"
    cli.run("--export", str(archive))
    assert archive.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    plain = tmp_path / "decompressed.tar"
    with archive.open("rb") as src, zstandard.ZstdDecompressor().stream_reader(src) as reader:
        plain.write_bytes(reader.read())
    assert bundled_files(plain) == bundled_files(exported)  # the same tar, compressed

    renamed = tmp_path / "models.bundle"  # import goes by the bytes, not by the name
    renamed.write_bytes(archive.read_bytes())
    target = replace(cli, cache=tmp_path / "target")
    imported = target.json("--import", str(renamed))
    assert {r["status"] for r in imported["imported"]} == {"imported"} and len(imported["imported"]) == 3
    assert target.json("--verify", netns=True)["problems"] == 0

    truncated = tmp_path / "truncated.tar.zst"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    other = replace(cli, cache=tmp_path / "other")
    other.run(TINY)
    before = tree_state(other.cache)
    proc = other.run("--import", str(truncated), check_code=2)
    errors = [line for line in proc.stderr.splitlines() if not re.match(r"\s*\d+% of ", line)]
    assert len(errors) == 1 and "truncated" in errors[0] and "Traceback" not in proc.stderr, proc.stderr
    assert tree_state(other.cache) == before


def test_export_hashes_a_file_only_when_its_stat_changed_since_it_was_verified(cli, exported, tmp_path):
    index = json.loads((cli.cache / "offline-speech" / "verified.json").read_text())["files"]
    lock = json.loads((cli.cache / "offline-speech.lock.json").read_text())
    commit = lock["models"][TINY]["commit"]
    snapshot = cli.cache / "huggingface/hub/models--Systran--faster-whisper-tiny.en/snapshots" / commit
    blob = (snapshot / "model.bin").resolve()  # the repo blob, or the shared store payload it links to (Xet)
    sha256 = next(f["sha256"] for f in lock["models"][TINY]["files"] if f["path"] == "model.bin")
    assert index[str(blob.relative_to(cli.cache))][0] == sha256  # recorded when its bytes were hashed
    again = tmp_path / "again.tar"
    result = cli.json("--export", str(again))  # copied unhashed (by the kernel): the same files
    assert result["files_hashed"] == 0 and result["files"] > 0
    assert bundled_files(again) == bundled_files(exported)
    os.utime(blob)  # its stat changed, its bytes did not: hashed again, and only it
    assert cli.json("--export", str(tmp_path / "touched.tar"))["files_hashed"] == 1
    # Once its stat changed it is hashed again: a same-size flip is caught.
    damaged = bytearray(blob.read_bytes())
    damaged[100] ^= 1
    blob.write_bytes(bytes(damaged))
    proc = cli.run("--export", str(tmp_path / "x.tar"), check_code=2)
    assert "does not match its recorded hash" in proc.stderr
