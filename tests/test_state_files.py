"""Every command against every broken state file: one line naming the file and the fix, exit 2, no traceback,
and the fix works (the lock heals from the cache's own files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from support.shell import one_line, prepare, shim

LOCK = "offline-speech.lock.json"
TINY = "faster-whisper-tiny.en"
BROKEN_LOCKS = {
    "empty": "",
    "truncated": '{"schema": 1, "models": {"faster-whisper-tiny.en": {"repo": "Sys',
    "garbage": "\x00\x01garbage",
    "null": "null",
    "a list": "[]",
    "newer schema": '{"schema": 99, "models": {}}',
    "models is a list": '{"schema": 1, "models": []}',
}


@pytest.fixture()
def world(provisioned, tmp_path) -> tuple[Path, Path, str]:
    """A private copy of a provisioned cache, and a prepared job on it: (cache, out, job id)."""
    cache = tmp_path / "cache"
    shutil.copytree(provisioned, cache, symlinks=True)
    out = tmp_path / "out"
    return cache, out, prepare(out, cache, "-s", "en", "--no-align", "--end-time", "3")


def commands(out: Path, job: str) -> dict[str, tuple[str, ...]]:
    return {
        "cache-models": ("cache-models.sh", "--whisperx", "--asr-model", "tiny.en"),
        "cache-models --verify": ("cache-models.sh", "--verify"),
        "cache-models --info": ("cache-models.sh", "--info"),
        "cache-models --job": ("cache-models.sh", "--job", str(out / job)),
        "prepare-job": (
            "prepare-job.sh",
            "--media",
            str(Path(__file__).parents[1] / "samples/speech-en.opus"),
            "-s",
            "en",
            "--no-align",
            "--asr-model",
            "tiny.en",
            "--out-dir",
            str(out),
        ),
        "run-pipeline": ("run-pipeline.sh", "-j", job, "--out-dir", str(out)),
    }


@pytest.mark.parametrize("how", list(BROKEN_LOCKS))
def test_a_broken_lock_is_one_line_everywhere_and_verify_repair_rebuilds_it(world, how):
    cache, out, job = world
    good = json.loads((cache / LOCK).read_text())
    (cache / LOCK).write_text(BROKEN_LOCKS[how])
    for _name, (cmd, *args) in commands(out, job).items():
        one_line(shim(cmd, *args, cache=cache, code=None, netns=True), str(cache / LOCK), "--verify --repair")
    fixed = shim("cache-models.sh", "--verify", "--repair", cache=cache, netns=True)  # offline: from the files
    assert "rebuilt it from the cache's files" in fixed.stderr and " ok" in fixed.stdout
    rebuilt = json.loads((cache / LOCK).read_text())
    assert rebuilt["models"][TINY]["commit"] == good["models"][TINY]["commit"]
    assert rebuilt["models"][TINY]["files"] == good["models"][TINY]["files"]
    assert [p.name for p in cache.glob(LOCK + ".broken-*")]  # the broken one is kept
    for name, (cmd, *args) in commands(out, job).items():
        assert shim(cmd, *args, cache=cache, code=None, netns=True).returncode == 0, name


def test_a_lock_lost_after_the_files_were_complete_heals_on_the_next_run(world):
    cache, out, job = world
    (cache / LOCK).unlink()  # what a kill -9 between the last file and the lock's rename leaves
    proc = shim("cache-models.sh", "--verify", cache=cache, netns=True)
    assert "missing from the lock (an interrupted run): recorded" in proc.stderr and " ok" in proc.stdout
    assert TINY in json.loads((cache / LOCK).read_text())["models"]
    shim("run-pipeline.sh", "-j", job, "--out-dir", str(out), cache=cache, netns=True)


EDITS = {
    "clip.start a string": (lambda d: d["clip"].update(start="0"), "field 'start' is str"),
    "targets a string": (lambda d: d.update(target_languages="fr"), "field 'target_languages' is str"),
    "a target like a path": (lambda d: d.update(target_languages=["../../x"]), "language '../../x'"),
    "media.path a number": (lambda d: d["media"].update(path=5), "field 'path' is int"),
    "models a list": (lambda d: d.update(models=[]), "field 'models' is list"),
    "align a number": (lambda d: d.update(align=1), "field 'align' is int"),
    "no media": (lambda d: d.pop("media"), "missing or unexpected field"),
    "not JSON": (None, "not readable JSON"),
}


@pytest.mark.parametrize("how", list(EDITS))
def test_a_hand_edited_job_is_refused_in_one_line_by_every_command_that_reads_it(world, how):
    cache, out, job = world
    edit, says = EDITS[how]
    path = out / job / "job.json"
    if edit is None:
        path.write_text('{"schema": 2, "id": ')
    else:
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))
    for cmd, *args in (
        ("run-pipeline.sh", "-j", job, "--out-dir", str(out)),
        ("cache-models.sh", "--job", str(out / job), "--dry-run"),
    ):
        one_line(shim(cmd, *args, cache=cache, code=None), "job.json is corrupt", says, "prepare the job again")


@pytest.mark.parametrize("text", ['{"kind": "offline-speech/manifest", "schema": 1, "stages": null}', "[", "null"])
def test_a_broken_manifest_means_the_stages_run_again(world, text):
    cache, out, job = world
    shim("run-pipeline.sh", "-j", job, "--out-dir", str(out), cache=cache)
    (out / job / "manifest.json").write_text(text)
    proc = shim("run-pipeline.sh", "-j", job, "--out-dir", str(out), cache=cache)
    assert "Traceback" not in proc.stderr and f"{job}: done" in proc.stdout
    assert json.loads((out / job / "manifest.json").read_text())["status"] == "done"
