"""Nothing unverified is trusted: --from-dir checks files against what is known of their commit (the catalog's
pins, a cached tree listing) and refuses others without touching the cache; files nothing knows become a local,
unverified revision of their own; blobs get a download's mode; and a model's remote code (IndicTrans2) runs only
when the catalog pins it for the commit, or when the user allows it for one run. All through the real commands,
against the test hub where a download is involved, offline (a network namespace) otherwise."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from offline_speech import cache
from offline_speech.catalog import COMMIT_RE, load_catalog
from offline_speech.remote_code import remote_code_refusal
from offline_speech.settings import offline_env
from support import ROOT
from support.shell import Cli, one_line, prepare, run_pipeline, shim, venv_python
from support.universe import TINY_EN_COMMIT, TINY_EN_REPO

CATALOG = load_catalog()
TINY = "faster-whisper-tiny.en"
TINY_MULTI = "faster-whisper-tiny"  # follows "main": nothing pins its files
IT2 = "indictrans2-en-indic-1B"
MADE_UP = "e" * 40


def folder(path: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def blob_modes(root: Path) -> set[int]:
    return {stat.S_IMODE(p.stat().st_mode) for p in cache.hub_dir(root).glob("models--*/blobs/*")}


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)  # what the shells of a team sharing a cache have: downloads are 0644
    yield
    os.umask(old)


def test_from_dir_refuses_what_is_not_the_pinned_commit_and_never_replaces_a_good_model(
    cli, tiny_en_files, tmp_path, umask_022
):
    good = folder(tmp_path / "good", tiny_en_files)
    weights = tiny_en_files["model.bin"]
    bad = {
        "missing weights": ({k: v for k, v in tiny_en_files.items() if k != "model.bin"}, "model.bin: missing"),
        "random bytes": (
            tiny_en_files | {"model.bin": random.Random(1).randbytes(len(weights))},
            "model.bin: sha256 differs",
        ),
        "truncated": (tiny_en_files | {"model.bin": weights[: len(weights) // 2]}, "model.bin: sha256 differs"),
        "invalid config": (tiny_en_files | {"config.json": b"{not json"}, "config.json: sha256 differs"),
    }
    sources = {how: folder(tmp_path / how.replace(" ", "-"), files) for how, (files, _) in bad.items()}
    for how, (_, says) in bad.items():
        proc = cli.run("--from-dir", str(sources[how]), "--key", TINY, check_code=None, netns=True)
        one_line(
            proc,
            f"not the files of {TINY_EN_REPO}@{TINY_EN_COMMIT[:8]}",
            "the catalog's pins",
            says,
            "nothing was changed",
        )
        assert not cache.lock_path(cli.cache).exists() and not blob_modes(cli.cache), how
    registered = cli.json("--from-dir", str(good), "--key", TINY, netns=True)["results"][0]
    assert registered["ok"] and "checked against the catalog's pins" in registered["message"]
    snap = cache.snapshot_dir(cli.cache, TINY_EN_REPO, TINY_EN_COMMIT)
    for how, (_, says) in bad.items():  # a good cached model is never replaced by a bad one (now checked against
        proc = cli.run("--from-dir", str(sources[how]), "--key", TINY, check_code=None, netns=True)  # its tree listing)
        one_line(proc, "the tree listing in the cache", says.split(":")[0] + ":", "nothing was changed")
    assert cli.json("--verify", netns=True)["problems"] == 0
    assert (
        hashlib.sha256((snap / "model.bin").read_bytes()).hexdigest()
        == CATALOG.get(TINY).pinned_files(TINY_EN_COMMIT)["model.bin"]
    )
    downloaded = Cli(cli.home, tmp_path / "downloaded", cli.endpoint, cli.asset_mirror)
    downloaded.run("--whisperx", "--asr-model", "tiny.en")
    # a download's mode: 0644 under umask 022 (Xet files: huggingface_hub keeps its shared store payloads 0444)
    assert blob_modes(cli.cache) == {0o644} and blob_modes(downloaded.cache) <= {0o644, 0o444}


def test_from_dir_checks_against_the_cached_tree_listing(cli, universe, tmp_path):
    repo = CATALOG.get(TINY_MULTI).repo
    cli.run("--whisperx", "--asr-model", "tiny")  # from the hub: its tree listing and the lock are in the cache
    files = {p: universe.files[repo][p] for p in universe.wanted[repo]}
    commit = universe.commits[repo]
    truncated = folder(tmp_path / "truncated", files | {"model.bin": files["model.bin"][:100]})
    one_line(
        cli.run("--from-dir", str(truncated), "--key", TINY_MULTI, check_code=None, netns=True),
        f"not the files of {repo}@{commit[:8]}",
        "the tree listing in the cache",
        f"model.bin: truncated (100 bytes, expected {len(files['model.bin'])})",
    )
    unknown = folder(tmp_path / "unknown", files | {"model.bin": bytes(len(files["model.bin"]))})
    one_line(
        cli.run("--from-dir", str(unknown), "--key", TINY_MULTI, "--revision", MADE_UP, check_code=None, netns=True),
        f"{TINY_MULTI} is cached at hub commit {commit[:8]}",
        "unverified files never replace it",
        f"--clear {TINY_MULTI}",
    )
    good = folder(tmp_path / "good", files)
    registered = cli.json("--from-dir", str(good), "--key", TINY_MULTI, netns=True)["results"][0]
    assert registered["ok"] and "checked against the tree listing in the cache" in registered["message"]
    assert json.loads(cache.lock_path(cli.cache).read_text())["models"][TINY_MULTI]["commit"] == commit
    assert cli.json("--verify", netns=True)["problems"] == 0


def test_files_nothing_knows_are_a_local_unverified_revision_never_the_claimed_commit(cli, universe, tmp_path):
    repo = CATALOG.get(TINY_MULTI).repo
    files = {p: universe.files[repo][p] for p in universe.wanted[repo]}
    one_line(
        cli.run(
            "--from-dir",
            str(folder(tmp_path / "no-weights", {"config.json": b"{}"})),
            "--key",
            TINY_MULTI,
            check_code=None,
            netns=True,
        ),
        "no weights among config.json",
    )
    one_line(
        cli.run(
            "--from-dir",
            str(folder(tmp_path / "bad-json", files | {"config.json": b"{"})),
            "--key",
            TINY_MULTI,
            check_code=None,
            netns=True,
        ),
        "config.json is not valid JSON",
    )
    assert not cache.lock_path(cli.cache).exists()
    source = folder(tmp_path / "usb", files)
    registered = cli.json("--from-dir", str(source), "--key", TINY_MULTI, "--revision", MADE_UP, netns=True)["results"][
        0
    ]
    assert (
        "local, unverified" in registered["message"]
        and f"--revision {MADE_UP} is unknown here" in registered["message"]
    )
    commit = json.loads(cache.lock_path(cli.cache).read_text())["models"][TINY_MULTI]["commit"]
    assert commit.startswith("local-") and len(commit) == 40 and not COMMIT_RE.match(commit)
    assert not cache.snapshot_dir(cli.cache, repo, MADE_UP).exists()
    assert cache.read_ref(cli.cache, repo, "main") == commit
    info = cli.run("--info", TINY_MULTI, "--json", netns=True)
    row = json.loads(info.stdout)["models"][0]
    assert (row["revision"], row["status"]) == (commit, "complete")
    assert f"{TINY_MULTI} is local, unverified ({commit})" in info.stderr
    verified = cli.run("--verify", netns=True)
    assert f"{TINY_MULTI} is local, unverified" in verified.stderr and " ok" in verified.stdout
    exported = cli.run("--export", str(tmp_path / "b.tar"), TINY_MULTI, check_code=None, netns=True)
    assert f"{TINY_MULTI} left out: {commit} is local, unverified" in exported.stderr, exported.stderr
    assert exported.returncode != 0 and not (tmp_path / "b.tar").exists()


# ---- remote code -------------------------------------------------------------------------------------------------


def test_remote_code_runs_only_when_every_py_file_is_pinned_or_allowed(tmp_path):
    snapshot = folder(tmp_path / "snap", {"modeling_x.py": b"# model\n", "configuration_x.py": b"# config\n"})
    pins = {
        name: hashlib.sha256((snapshot / name).read_bytes()).hexdigest()
        for name in ("modeling_x.py", "configuration_x.py")
    }
    spec = {"key": IT2, "commit": MADE_UP, "path": str(snapshot), "trust_remote_code": True}
    assert remote_code_refusal(spec | {"code_sha256": pins}) is None
    assert remote_code_refusal(spec | {"trust_remote_code": False}) is None
    assert remote_code_refusal(spec | {"code_sha256": None, "remote_code_allowed": True}) is None
    refused = remote_code_refusal(spec | {"code_sha256": None})
    assert "configuration_x.py, modeling_x.py" in refused and "--trust-remote-code" in refused
    (snapshot / "modeling_evil.py").write_text("raise SystemExit\n")
    refused = remote_code_refusal(spec | {"code_sha256": pins})
    assert "(modeling_evil.py)" in refused and "not the code the catalog pins for it" in refused
    (snapshot / "modeling_x.py").write_text("# changed\n")
    assert "(modeling_evil.py, modeling_x.py)" in remote_code_refusal(spec | {"code_sha256": pins})


def evil_model(path: Path, marker: Path) -> Path:
    """An IndicTrans2-shaped folder whose own code, once imported, writes `marker`."""
    j = lambda d: json.dumps(d).encode()  # noqa: E731 - a local one-line helper
    return folder(
        path,
        {
            "config.json": j(
                {
                    "model_type": "IndicTrans",
                    "auto_map": {
                        "AutoConfig": "modeling_evil.EvilConfig",
                        "AutoModelForSeq2SeqLM": "modeling_evil.Evil",
                    },
                }
            ),
            "tokenizer_config.json": j(
                {
                    "tokenizer_class": "EvilTokenizer",
                    "auto_map": {"AutoTokenizer": ["modeling_evil.EvilTokenizer", None]},
                }
            ),
            "modeling_evil.py": f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n".encode(),
            "dict.SRC.json": j({"a": 0}),
            "dict.TGT.json": j({"b": 0}),
            "model.SRC": b"src",
            "model.TGT": b"tgt",
            "model.safetensors": random.Random(2).randbytes(4096),
        },
    )


def test_planted_remote_code_registered_with_from_dir_never_runs(provisioned, tmp_path):
    cache_dir = tmp_path / "cache"
    shutil.copytree(provisioned, cache_dir, symlinks=True)
    marker = tmp_path / "evil-ran"
    evil = evil_model(tmp_path / "evil", marker)
    registered = shim(
        "cache-models.sh",
        "--from-dir",
        str(evil),
        "--key",
        IT2,
        "--revision",
        MADE_UP,
        "--json",
        cache=cache_dir,
        netns=True,
    )
    assert "local, unverified" in json.loads(registered.stdout)["results"][0]["message"]
    commit = json.loads(cache.lock_path(cache_dir).read_text())["models"][IT2]["commit"]
    snapshot = cache.snapshot_dir(cache_dir, CATALOG.get(IT2).repo, commit)
    assert (snapshot / "modeling_evil.py").is_file()

    out = tmp_path / "out"
    known = prepare(out, cache_dir, "-s", "en", "--no-align", "--end-time", "3", "--workflow", "translate", "-t", "hi")
    refused = run_pipeline(out, cache_dir, known, code=None, netns=True)  # the source is known: refused at preflight
    one_line(
        refused, f"job {known}: {IT2}@{commit[:14]} would run remote code (modeling_evil.py)", "--trust-remote-code"
    )
    assert not marker.exists()

    detected = prepare(
        out, cache_dir, "-s", "auto", "--no-align", "--end-time", "3", "--workflow", "translate", "-t", "hi"
    )
    failed = run_pipeline(out, cache_dir, detected, code=1, netns=True)  # routed after ASR: refused before the stage
    assert f"error: job {detected}: stage translate: {IT2}@{commit[:14]} would run remote code" in failed.stderr
    assert "Traceback" not in failed.stderr and not marker.exists()

    # the stage's own gate, asked directly, as a runner that forgot the check would
    doc = json.loads((out / detected / "work" / "aligned.json").read_text())
    request = {
        "schema": 1,
        "stage": "translate",
        "models": {
            IT2: {
                "key": IT2,
                "repo": CATALOG.get(IT2).repo,
                "commit": commit,
                "kind": "indictrans2",
                "path": str(snapshot),
                "trust_remote_code": True,
                "code_sha256": None,
                "ct2": None,
            }
        },
        "jobs": [
            {
                "id": detected,
                "dir": str(tmp_path),
                "job": {},
                "inputs": {"transcript": str(out / detected / "work" / "aligned.json")},
                "outputs": {"hi": str(tmp_path / "hi.json")},
                "targets": [{"language": "hi", "model": IT2, "src": "eng_Latn", "tgt": "hin_Deva"}],
            }
        ],
    }
    assert doc["language"] == "en"
    (tmp_path / "request.json").write_text(json.dumps(request))
    env = offline_env(cache_dir) | {"PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [
            "unshare",
            "-n",
            str(venv_python("translation")),
            "-m",
            "offline_speech.stages.translate",
            str(tmp_path / "request.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["job_started", "job_failed", "finished"], proc.stderr[-2000:]
    assert "would run remote code (modeling_evil.py)" in events[1]["error"] and not marker.exists()

    # allowed for one run, the planted code does run: what the refusals above kept from running
    allowed = run_pipeline(out, cache_dir, known, code=1, netns=True, extra=("--trust-remote-code",))
    assert marker.read_text() == "ran", allowed.stderr
    assert "remote_code" not in (out / known / "job.json").read_text()  # the leave was for that run: recorded nowhere
    assert "remote_code_allowed" not in (out / known / "manifest.json").read_text()
