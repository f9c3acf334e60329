"""--from-hf-cache: a cache that huggingface_hub itself made is taken over by hard link, verified, without a request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.universe import TINY_EN_COMMIT, TINY_EN_REPO

TINY = "faster-whisper-tiny.en"
FILES = ["config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*"]


def hub_made_cache(cli, other: Path) -> Path:
    """tiny.en downloaded into `other` by huggingface_hub's own snapshot_download, as a user's cache would be."""
    code = (
        f"from huggingface_hub import snapshot_download\n"
        f"print(snapshot_download({TINY_EN_REPO!r}, allow_patterns={FILES!r}, cache_dir={str(other)!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=cli.env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def test_a_hub_made_cache_is_linked_verified_and_needs_no_request(cli, universe, tmp_path):
    other = tmp_path / "user-hf-cache"
    snapshot = hub_made_cache(cli, other)
    assert snapshot.name == TINY_EN_COMMIT
    universe.hub.stop()  # from here on there is no hub, and the run is in a network namespace too

    proc = cli.run("--whisperx", "--asr-model", "tiny.en", "--from-hf-cache", "--hf-cache", str(other), netns=True)
    assert "linked from" in proc.stderr, proc.stderr
    verified = cli.json("--verify", TINY, netns=True)
    assert verified["problems"] == 0
    ours = cli.cache / "huggingface/hub/models--Systran--faster-whisper-tiny.en/snapshots" / TINY_EN_COMMIT
    assert (ours / "model.bin").resolve().stat().st_ino == (snapshot / "model.bin").resolve().stat().st_ino
    lock = json.loads((cli.cache / "offline-speech.lock.json").read_text())
    assert lock["models"][TINY]["commit"] == TINY_EN_COMMIT
    again = cli.json("--whisperx", "--asr-model", "tiny.en", netns=True)
    assert [r["message"] for r in again["results"]] == ["cached"]


def test_a_damaged_blob_in_the_other_cache_is_not_taken(cli, universe, tmp_path):
    other = tmp_path / "user-hf-cache"
    snapshot = hub_made_cache(cli, other)
    blob = (snapshot / "model.bin").resolve()
    data = bytearray(blob.read_bytes())
    data[4096] ^= 1
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))
    universe.hub.stop()
    proc = cli.run(
        "--whisperx", "--asr-model", "tiny.en", "--from-hf-cache", "--hf-cache", str(other), netns=True, check_code=1
    )
    assert "model.bin damaged there" in proc.stderr, proc.stderr
    assert (
        not (cli.cache / "offline-speech.lock.json").exists()
        or TINY not in json.loads((cli.cache / "offline-speech.lock.json").read_text())["models"]
    )


def test_hf_cache_without_from_hf_cache_is_a_usage_error(cli, tmp_path):
    proc = cli.run("--whisperx", "--hf-cache", str(tmp_path), check_code=2)
    assert proc.stderr.strip() == "error: --hf-cache goes with --from-hf-cache"


def test_info_names_what_your_own_hf_cache_has_and_the_command_that_links_it(cli, universe, tmp_path):
    other = tmp_path / "user-hf-cache"
    hub_made_cache(cli, other)
    universe.hub.stop()
    mine = {"HF_HUB_CACHE": str(other)}  # the user's own cache, as settings.user_hub_cache() finds it
    command = f"./cache-models.sh {TINY} --from-hf-cache"
    info = cli.json("--info", netns=True, **mine)
    assert info["in_your_hf_cache"] == {"hf_cache": str(other), "keys": [TINY], "command": command}
    proc = cli.run("--info", netns=True, **mine)
    assert f"link them (verified, no download) with:\n  {command}\n" in proc.stdout, proc.stdout
    cli.run(*command.split()[1:], netns=True, **mine)  # the command exactly as --info gave it
    assert cli.json("--info", netns=True, **mine)["in_your_hf_cache"] is None
