"""The Hub's Xet path, end to end: the test hub announces its LFS files as Xet-backed as the Hub does, hf-xet's own
client downloads them from a local CAS that hf-xet's own upload filled, and huggingface_hub leaves its shared blob
store layout (`hub/blobs/<2 hex>/<xet hash>`, repo blobs linking into it). Every cache-models mode must take that
layout as the valid state it is."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

from support import ROOT, interrupt
from support import universe as hub_universe
from support.shell import Cli, shim
from support.universe import TINY_EN_COMMIT, TINY_EN_REPO

TINY = "faster-whisper-tiny.en"
TINY_MULTI = "faster-whisper-tiny"
TINY_MULTI_REPO = "Systran/faster-whisper-tiny"
SHA_MODEL = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"  # tiny.en's model.bin (catalog pin)


def repo_blob(cache: Path, repo: str, etag: str) -> Path:
    return cache / "huggingface/hub" / ("models--" + repo.replace("/", "--")) / "blobs" / etag


def store(cache: Path) -> Path:
    return cache / "huggingface/hub/blobs"


def linked_payload(cache: Path, repo: str) -> Path:
    """The shared store payload the repo's model.bin blob links to."""
    blob = repo_blob(cache, repo, SHA_MODEL)
    return (blob.parent / os.readlink(blob)).resolve()


def payloads(cache: Path) -> list[Path]:
    return sorted(p for p in store(cache).glob("??/*") if re.fullmatch(r"[0-9a-f]{64}", p.name))


def test_provisioning_takes_the_xet_path_verifies_and_is_then_answered_from_the_cache(cli, universe):
    proc = cli.run("--whisperx", "--asr-model", "tiny.en")
    percents = [int(p) for p in re.findall(r"(\d+)% of", proc.stdout)]
    assert percents and max(percents) <= 100, proc.stdout  # one bar per file: Xet's network bytes are not added
    requests = universe.hub.requests
    assert [r for r in requests if r.method == "GET" and r.path.endswith("/model.bin")] == []  # 0 plain-HTTP bytes
    assert any(r.path.endswith(f"/xet-read-token/{TINY_EN_COMMIT}") for r in requests)
    assert not any("agent-harnesses" in r.path for r in requests)  # no request the models do not need

    blob = repo_blob(cli.cache, TINY_EN_REPO, SHA_MODEL)
    assert blob.is_symlink()  # huggingface_hub's own layout, kept as it is
    payload = (blob.parent / os.readlink(blob)).resolve()
    assert payload.parent.parent == store(cli.cache).resolve()
    assert payload.name == universe.hub.xet_hash(SHA_MODEL)
    assert (store(cli.cache) / ".huggingface-shared-blobs").read_text() == "1\n"

    verified = cli.json("--verify")
    assert verified["problems"] == 0, verified
    universe.hub.reset_requests()
    again = cli.json("--whisperx", "--asr-model", "tiny.en")
    assert [r["message"] for r in again["results"]] == ["cached"]
    assert universe.hub.requests == []
    offline = cli.json("--whisperx", "--asr-model", "tiny.en", netns=True)
    assert [r["message"] for r in offline["results"]] == ["cached"]


def test_a_damaged_shared_blob_is_found_and_repaired(cli, universe):
    cli.run("--whisperx", "--asr-model", "tiny.en")
    payload = linked_payload(cli.cache, TINY_EN_REPO)
    os.chmod(payload, 0o644)
    with open(payload, "r+b") as f:  # bit rot: same size, one byte flipped
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    verified = cli.json("--verify", check_code=1)
    assert any(p["path"] == "model.bin" for r in verified["verified"] for p in r["problems"]), verified
    cli.run("--verify", "--repair")
    assert cli.json("--verify")["problems"] == 0


def test_the_layout_a_link_must_keep(cli, universe, tmp_path):
    """A repo blob linking anywhere but a regular payload of the shared store is still damage."""
    cli.run("--whisperx", "--asr-model", "tiny.en")
    blob = repo_blob(cli.cache, TINY_EN_REPO, SHA_MODEL)
    payload = linked_payload(cli.cache, TINY_EN_REPO)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(payload.read_bytes())
    blob.unlink()
    blob.symlink_to(outside)
    verified = cli.json("--verify", check_code=1)
    problems = [p for r in verified["verified"] for p in r["problems"]]
    assert [p["path"] for p in problems] == ["model.bin"] and "out of the shared blob store" in problems[0]["detail"]


def test_nothing_is_written_in_home_and_hf_xet_keeps_its_files_in_the_project_cache(universe, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)  # read-only (root could still write: what is found there afterwards is the check)
    cli = Cli(home, tmp_path / "cache", universe.hub.url, universe.hub.url + "/assets")
    cli.run("--whisperx", "--asr-model", "tiny.en", XDG_CACHE_HOME="")
    assert list(home.rglob("*")) == []
    assert list((cli.cache / "huggingface/xet/logs").glob("xet_*.log"))  # hf-xet's logs: in the project cache


def test_export_import_verify_on_a_xet_cache(cli, universe, tmp_path):
    cli.run("--whisperx", "--asr-model", "tiny.en")
    bundle = tmp_path / "models.tar"
    cli.run("--export", str(bundle))
    universe.hub.stop()
    other = Cli(cli.home, tmp_path / "other-cache", cli.endpoint, cli.asset_mirror)
    imported = other.json("--import", str(bundle), netns=True)
    assert [r["status"] for r in imported["imported"]] == ["imported"], imported
    assert other.json("--verify", netns=True)["problems"] == 0
    model = (
        other.cache / "huggingface/hub/models--Systran--faster-whisper-tiny.en/snapshots" / TINY_EN_COMMIT / "model.bin"
    )
    assert (
        model.resolve().read_bytes()
        == (
            cli.cache
            / "huggingface/hub/models--Systran--faster-whisper-tiny.en/snapshots"
            / TINY_EN_COMMIT
            / "model.bin"
        )
        .resolve()
        .read_bytes()
    )


def test_from_hf_cache_adopts_a_cache_made_by_hf_download(cli, universe, tmp_path):
    other = tmp_path / "user-hf-cache"
    files = ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]  # what faster-whisper asks for
    cmd = [
        str(ROOT / "venv/core/bin/hf"),
        "download",
        TINY_EN_REPO,
        *files,
        "--revision",
        TINY_EN_COMMIT,
        "--cache-dir",
        str(other),
    ]
    proc = subprocess.run(cmd, env=cli.env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = other / "models--Systran--faster-whisper-tiny.en/blobs" / SHA_MODEL
    assert theirs.is_symlink() and (other / "blobs/.huggingface-shared-blobs").is_file()  # hf's shared store layout
    universe.hub.stop()
    proc = cli.run("--whisperx", "--asr-model", "tiny.en", "--from-hf-cache", "--hf-cache", str(other), netns=True)
    assert "linked from" in proc.stderr, proc.stderr
    assert cli.json("--verify", TINY, netns=True)["problems"] == 0


def _hub_cli(tmp_path: Path, u: hub_universe.Universe, name: str = "cache") -> Cli:
    home = tmp_path / f"home-{name}"
    home.mkdir()
    return Cli(home, tmp_path / name, u.hub.url, u.hub.url + "/assets")


def _two_repos_sharing_model_bin(tmp_path) -> Cli:
    """A cache holding tiny.en and a second repo with the same files (the Xet files stored once)."""
    tiny_en = hub_universe.tiny_en_files()
    u = hub_universe.build_universe(tiny_en, overrides={TINY_MULTI_REPO: tiny_en})
    with u.hub:
        cli = _hub_cli(tmp_path, u)
        cli.run("--whisperx", "--asr-model", "tiny.en")
        u.hub.reset_requests()
        cli.run("--whisperx", "--asr-model", "tiny")
        assert not any("xet-read-token" in r.path for r in u.hub.requests)  # linked from the store, not downloaded
    return cli


def test_clear_removes_a_shared_blob_only_when_no_other_repo_links_it(tmp_path):
    cli = _two_repos_sharing_model_bin(tmp_path)
    assert len(payloads(cli.cache)) == 2  # model.bin and tokenizer.json, each once for both repos
    model_payload = linked_payload(cli.cache, TINY_MULTI_REPO)
    size = model_payload.stat().st_size

    cleared = cli.json("--clear", TINY, "--yes")
    assert cleared["cleared"][0]["bytes"] < 1_000_000, cleared  # the shared blobs stay: the other repo links them
    assert model_payload.is_file()
    assert cli.json("--verify", TINY_MULTI)["problems"] == 0

    cleared = cli.json("--clear", TINY_MULTI, "--yes")
    assert cleared["cleared"][0]["bytes"] > size, cleared  # now they go
    assert payloads(cli.cache) == []


def test_info_counts_a_shared_blob_once(tmp_path):
    cli = _two_repos_sharing_model_bin(tmp_path)
    info = cli.json("--info", TINY, TINY_MULTI)
    on_disk = sum(p.stat().st_size for p in payloads(cli.cache))
    per_repo = {r["key"]: r["bytes"] for r in info["models"]}
    assert per_repo[TINY] == per_repo[TINY_MULTI]
    assert info["total_bytes"] == 2 * per_repo[TINY] - on_disk


def test_a_mirror_without_xet_and_a_client_with_xet_off_get_plain_blobs(tmp_path):
    tiny_en = hub_universe.tiny_en_files()
    for xet, env in ((False, {}), (True, {"HF_HUB_DISABLE_XET": "1"})):
        u = hub_universe.build_universe(tiny_en, xet=xet)
        with u.hub:
            cli = _hub_cli(tmp_path, u, f"cache-{xet}")
            cli.run("--whisperx", "--asr-model", "tiny.en", **env)
            gets = [r for r in u.hub.requests if r.method == "GET" and r.path.endswith("/model.bin")]
        assert sum(r.bytes_sent for r in gets) == len(tiny_en["model.bin"])
        blob = repo_blob(cli.cache, TINY_EN_REPO, SHA_MODEL)
        assert stat.S_ISREG(blob.lstat().st_mode)
        assert not store(cli.cache).exists()
        assert cli.json("--verify", netns=True)["problems"] == 0


def test_leftovers_of_the_shared_store_are_cleaned(cli, universe):
    cli.run("--whisperx", "--asr-model", "tiny.en")
    prefix = payloads(cli.cache)[0].parent
    leftovers = [
        store(cli.cache) / ".huggingface-shared-blobs.0123abcd.tmp",
        prefix / f"{'ab' * 32}.refs.0123abcd.tmp",
        prefix / f"{'ab' * 32}.refs",
        prefix / f"{'ab' * 32}.lock",
    ]
    for path in leftovers:
        path.write_text("x")
        os.utime(path, (1, 1))
    proc = cli.run("--info", netns=True)
    assert not any(p.exists() for p in leftovers), proc.stdout + proc.stderr
    assert json.loads((cli.cache / "offline-speech.lock.json").read_text())["models"][TINY]
    assert cli.json("--verify", netns=True)["problems"] == 0


def test_prune_removes_the_old_revision_unlinked_shared_blobs_and_stale_partials_and_nothing_in_use(tmp_path):
    tiny_en = hub_universe.tiny_en_files()
    u = hub_universe.build_universe(tiny_en, overrides={TINY_MULTI_REPO: tiny_en})
    with u.hub:
        cli = _hub_cli(tmp_path, u)
        cli.run("--whisperx", "--asr-model", "tiny.en")
        cli.run("--whisperx", "--asr-model", "tiny")
        old = u.commits[TINY_MULTI_REPO]
        newer = dict(tiny_en) | {"config.json": tiny_en["config.json"] + b"\n"}  # the branch moves on: one file differs
        new = u.hub.add_repo(hub_universe.HubRepo(TINY_MULTI_REPO, newer), keep_history=True).commit
        cli.run("--update", TINY_MULTI)
    multi = cli.cache / "huggingface/hub/models--Systran--faster-whisper-tiny"
    assert {p.name for p in (multi / "snapshots").iterdir()} == {old, new}
    stray = store(cli.cache) / "ab" / ("ab" * 32)  # a payload nothing links (a repo removed by hand)
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"x" * 1000)
    partial = multi / "blobs" / f"{'cd' * 32}.0123abcd.incomplete"
    partial.write_bytes(b"y" * 500)
    os.utime(partial, (1, 1))

    before = sorted(str(p) for p in cli.cache.rglob("*"))
    planned = cli.json("--prune", "--dry-run", netns=True)
    assert sorted(str(p) for p in cli.cache.rglob("*")) == before  # a dry run changes nothing
    whats = {i["what"]: i["bytes"] for i in planned["pruned"]}
    assert whats[f"{TINY_MULTI_REPO}@{old[:12]}: a revision the lock no longer names"] == len(tiny_en["config.json"])
    assert whats["a shared blob no cached repo links"] == 1000
    assert whats["a partial download nobody is writing"] == 500
    assert planned["freed_bytes"] == len(tiny_en["config.json"]) + 1500 and planned["dry_run"] is True, planned

    pruned = cli.json("--prune", netns=True)
    assert pruned["freed_bytes"] == planned["freed_bytes"]
    assert {p.name for p in (multi / "snapshots").iterdir()} == {new}
    assert not (multi / "trees" / f"{old}.json").exists() and not stray.exists() and not partial.exists()
    assert len(payloads(cli.cache)) == 2  # model.bin and tokenizer.json: both repos still link them
    assert cli.json("--verify", netns=True)["problems"] == 0
    assert cli.json("--prune", netns=True)["pruned"] == []


def test_ctrl_c_ends_a_xet_download_at_once_records_nothing_and_the_rerun_completes(tmp_path):
    """hf-xet downloads in threads of its own and reports through a callback: Ctrl-C must still end the run within
    1.5 s, with one line, nothing recorded, and no traceback from the callback."""
    rng = random.Random(12)
    big = b"".join(rng.randbytes(1 << 24) for _ in range(36))  # 600 MB: long enough to be caught mid-download
    files = interrupt.repo_files(size=1) | {interrupt.BIG: big}
    with interrupt.serve(files, xet=True) as hub:
        assert hub.is_xet(interrupt.REPO, interrupt.BIG)
        for attempt in range(3):  # hf-xet's threads and the interpreter's exit race: once is not proof
            cache_root = tmp_path / f"cache-{attempt}"
            proc = interrupt.start(hub, cache_root, interrupt.KEY)
            interrupt.wait_for_partial(proc, cache_root, big, 0.0001)
            time.sleep(0.3)
            assert proc.poll() is None, proc.communicate()
            sent = time.monotonic()
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=30)
            took = time.monotonic() - sent
            assert proc.returncode == 130, (out, err)  # not -6: an interpreter exiting under hf-xet's threads aborts
            assert err.strip().splitlines()[-1] == "interrupted: run the same command again to resume", err
            assert "Traceback" not in err and "Fatal" not in err, err
            assert took <= 1.5, took
            lock = cache_root / "offline-speech.lock.json"
            assert not lock.exists() or interrupt.KEY not in json.loads(lock.read_text())["models"]
        shim("cache-models.sh", interrupt.KEY, cache=cache_root, **interrupt.hub_env(hub, cache_root))
    assert (
        json.loads(shim("cache-models.sh", "--verify", "--json", cache=cache_root, netns=True).stdout)["problems"] == 0
    )


def test_after_kill_9_mid_xet_download_the_rerun_fetches_only_the_rest(tmp_path):
    """hf-xet writes a file front to back, so what a killed run left is a true prefix: the rerun asks for the rest
    only (a Range request: hf-xet cannot resume a partial file itself), and the file still verifies."""
    rng = random.Random(12)
    big = b"".join(rng.randbytes(1 << 24) for _ in range(36))
    files = interrupt.repo_files(size=1) | {interrupt.BIG: big}
    cache_root = tmp_path / "cache"
    with interrupt.serve(files, xet=True) as hub:
        proc = interrupt.start(hub, cache_root, interrupt.KEY)
        kept = interrupt.wait_for_partial(proc, cache_root, big, 0.5)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        hub.reset_requests()
        shim("cache-models.sh", interrupt.KEY, cache=cache_root, **interrupt.hub_env(hub, cache_root))
        gets = hub.file_gets(interrupt.REPO, interrupt.BIG)  # over plain HTTP, from the hub's CDN
    assert len(gets) == 1 and gets[0].status == 206 and gets[0].range.startswith("bytes=")
    resumed_from = int(gets[0].range.removeprefix("bytes=").removesuffix("-"))
    assert resumed_from >= kept and gets[0].bytes_sent == len(big) - resumed_from
    assert (
        json.loads(shim("cache-models.sh", "--verify", "--json", cache=cache_root, netns=True).stdout)["problems"] == 0
    )
