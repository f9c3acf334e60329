"""Hardening round three (issue 19), its security cases: remote code named across repos, bundles that lie, names
from a manifest or a lock that would become paths outside the cache, and --from-dir links that leave the folder.
Each hostile input is built here (no binary checked in) and must give one line, the right exit code, and leave the
good cache as it was."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from offline_speech import cache
from offline_speech.catalog import load_catalog
from offline_speech.remote_code import remote_code_refusal
from support import ROOT
from support.sample import CLIP
from support.shell import one_line, prepare, run_pipeline, shim
from support.universe import TINY_EN_REPO

CATALOG = load_catalog()
TINY = "faster-whisper-tiny.en"
TINY_MULTI = "faster-whisper-tiny"
IT2 = "indictrans2-en-indic-1B"  # the model an en -> hi job loads
IT2_OTHER = "indictrans2-indic-en-1B"
MANIFEST = "offline-speech-bundle/manifest.json"
FILES = "offline-speech-bundle/files/"


def folder(path: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def tree_digest(root: Path) -> dict[str, str]:
    """Every file of a cache (links followed) with its sha256, and every link with its target: what must not change."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if rel.startswith((".locks", "offline-speech/verified.json")) or p.is_dir() and not p.is_symlink():
            continue
        out[rel] = ("-> " + str(p.readlink())) if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ---- remote code across repos ---------------------------------------------------------------------------------


def test_auto_map_code_from_another_repo_is_checked_against_that_repos_pins(tmp_path):
    own = folder(
        tmp_path / "own",
        {
            "config.json": json.dumps(
                {"auto_map": {"AutoConfig": "ai4bharat/other--configuration_evil.EvilConfig"}}
            ).encode()
        },
    )
    other = folder(tmp_path / "other", {"configuration_evil.py": b"print('evil')\n"})
    spec = {
        "key": IT2,
        "repo": "ai4bharat/own",
        "commit": "e" * 40,
        "path": str(own),
        "trust_remote_code": True,
        "code_sha256": {},
    }
    refused = remote_code_refusal(spec)  # no .py of its own: the old check passed it
    assert refused and "ai4bharat/other--configuration_evil.py" in refused
    pinned = {"configuration_evil.py": hashlib.sha256(b"print('evil')\n").hexdigest()}
    foreign = {"ai4bharat/other": {"path": str(other), "code_sha256": pinned}}
    assert remote_code_refusal(spec | {"foreign_code": foreign}) is None  # reviewed code of a catalog repo: runs
    (other / "configuration_evil.py").write_text("print('changed')\n")
    assert "ai4bharat/other--configuration_evil.py" in remote_code_refusal(spec | {"foreign_code": foreign})
    missing = folder(
        tmp_path / "missing", {"config.json": json.dumps({"auto_map": {"AutoModel": "modeling_x.X"}}).encode()}
    )
    assert "modeling_x.py" in remote_code_refusal(spec | {"path": str(missing)})


def test_code_named_from_another_cached_repo_never_runs(provisioned, tmp_path):
    cache_dir = tmp_path / "cache"
    shutil.copytree(provisioned, cache_dir, symlinks=True)
    marker = tmp_path / "evil-ran"
    j = lambda d: json.dumps(d).encode()  # noqa: E731 - a local one-line helper
    weights = {
        "dict.SRC.json": j({"a": 0}),
        "dict.TGT.json": j({"b": 0}),
        "model.SRC": b"s",
        "model.TGT": b"t",
        "model.safetensors": bytes(4096),
        "tokenizer_config.json": j({}),
    }
    other_repo = CATALOG.get(IT2_OTHER).repo
    carrier = folder(
        tmp_path / "carrier",
        weights
        | {
            "config.json": j({"model_type": "IndicTrans"}),
            "configuration_evil.py": f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n".encode(),
        },
    )
    caller = folder(
        tmp_path / "caller",
        weights
        | {  # no .py of its own
            "config.json": j(
                {"model_type": "IndicTrans", "auto_map": {"AutoConfig": f"{other_repo}--configuration_evil.EvilConfig"}}
            )
        },
    )
    for key, source in ((IT2_OTHER, carrier), (IT2, caller)):
        shim(
            "cache-models.sh",
            "--from-dir",
            str(source),
            "--key",
            key,
            "--revision",
            "e" * 40,
            cache=cache_dir,
            netns=True,
        )
    out = tmp_path / "out"
    job = prepare(out, cache_dir, "-s", "en", "--no-align", "--end-time", "3", "--workflow", "translate", "-t", "hi")
    refused = run_pipeline(out, cache_dir, job, code=None, netns=True)
    one_line(refused, "would run remote code", f"{other_repo}--configuration_evil.py", "--trust-remote-code")
    assert not marker.exists()


# ---- bundles that lie ---------------------------------------------------------------------------------------------


def read_bundle(archive: Path) -> tuple[dict, dict[str, bytes]]:
    with tarfile.open(archive) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    manifest = json.loads(members.pop(MANIFEST))
    return manifest, {name[len(FILES) :]: data for name, data in members.items()}


def write_bundle(archive: Path, manifest: dict, files: dict[str, bytes]) -> Path:
    with tarfile.open(archive, "w") as tar:
        for name, data in [*((FILES + i, d) for i, d in files.items()), (MANIFEST, json.dumps(manifest).encode())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def with_file(manifest: dict, files: dict[str, bytes], key: str, path: str, data: bytes, lfs: bool) -> None:
    """Add (or replace) a file of a model entry everywhere a consistent liar would: blob, file list, tree, lock."""
    entry = manifest["models"][key]
    file_id = hashlib.sha256(data).hexdigest() if lfs else git_sha1(data)
    files[file_id] = data
    entry["files"] = [f for f in entry["files"] if f["path"] != path] + [
        {"path": path, "size": len(data), "id": file_id}
    ]
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{file_id}\nsize {len(data)}\n".encode()
    entry["tree"][path] = (
        {"size": len(data), "blob_id": git_sha1(pointer), "lfs_sha256": file_id, "lfs_size": len(data)}
        if lfs
        else {"size": len(data), "blob_id": file_id}
    )
    kind = "sha256" if lfs else "git-sha1"
    entry["lock"]["files"] = [f for f in entry["lock"]["files"] if f["path"] != path] + [
        {"path": path, "size": len(data), kind: file_id}
    ]


def test_import_holds_bundles_to_the_catalog_and_to_themselves(cli, universe, tmp_path):
    cli.run("--whisperx", "--asr-model", "tiny.en")
    cli.run("--whisperx", "--asr-model", "tiny")
    good = tmp_path / "good.tar"
    cli.run("--export", str(good))
    before = tree_digest(cli.cache)
    manifest, files = read_bundle(good)

    def lie(name: str, change) -> Path:
        m, f = json.loads(json.dumps(manifest)), dict(files)
        change(m, f)
        return write_bundle(tmp_path / f"{name}.tar", m, f)

    other_weights = bytes(range(256)) * 300
    cases = {
        "not the pinned model.bin": (
            lie("weights", lambda m, f: with_file(m, f, TINY, "model.bin", other_weights, True)),
            "model.bin is not the file the catalog pins",
        ),
        "an extra evil.py": (
            lie("evil", lambda m, f: with_file(m, f, TINY, "evil.py", b"import os\n", False)),
            "evil.py (the catalog's patterns do not select)",
        ),
        "lock hashes that differ": (
            lie("hashes", lambda m, f: m["models"][TINY]["lock"]["files"][0].update(size=1)),
            "its lock entry disagrees with its files",
        ),
        "a lock naming another repo": (
            lie("repo", lambda m, f: m["models"][TINY]["lock"].update(repo="evil/evil-model")),
            "its lock entry disagrees with its files",
        ),
        "another commit of a followed repo": (
            lie("commit", lambda m, f: _recommit(m, TINY_MULTI, "e" * 40)),
            f"{TINY_MULTI} is cached here at",
        ),
    }
    for how, (bundle, says) in cases.items():
        proc = cli.run("--import", str(bundle), check_code=None, netns=True)
        one_line(proc, says)
        assert tree_digest(cli.cache) == before, how
    assert cli.json("--verify", netns=True)["problems"] == 0
    lock = json.loads(cache.lock_path(cli.cache).read_text())
    assert all(e["repo"] != "evil/evil-model" for e in lock["models"].values())


def _recommit(manifest: dict, key: str, commit: str) -> None:
    entry = manifest["models"][key]
    entry["commit"] = entry["lock"]["commit"] = commit


def test_a_conversion_whose_source_commit_is_a_path_is_refused(cli, universe, tmp_path):
    cli.run("--whisperx", "--asr-model", "tiny.en")
    good = tmp_path / "good.tar"
    cli.run("--export", str(good))
    manifest, files = read_bundle(good)
    data = b"converted"
    file_id = hashlib.sha256(data).hexdigest()
    files[file_id] = data
    nllb = next(m for m in CATALOG.models if m.group == "nllb")
    key = cache.derived_key(nllb)
    escape = "../../../../EVIL-derived"
    manifest["derived"][key] = {
        "files": [{"path": f"offline-speech/ct2/{nllb.key}/{escape}-int8/model.bin", "size": len(data), "id": file_id}],
        "lock": {
            "source_commit": escape,
            "dest": f"offline-speech/ct2/{nllb.key}/{escape}-int8",
            "files": {"model.bin": {"size": len(data), "sha256": file_id}},
        },
    }
    bundle = write_bundle(tmp_path / "escape.tar", manifest, files)
    before = tree_digest(cli.cache)
    one_line(cli.run("--import", str(bundle), check_code=None, netns=True), "malformed")
    assert tree_digest(cli.cache) == before
    assert not list(tmp_path.rglob("EVIL-derived*"))


def test_a_hand_edited_lock_is_one_line_naming_it_and_the_fix(cli, universe):
    cli.run("--whisperx", "--asr-model", "tiny.en")
    path = cache.lock_path(cli.cache)
    good = path.read_text()
    for edit, says in (
        (lambda e: e.pop("files"), "'files' are missing or malformed"),
        (lambda e: e.update(commit="../../../etc"), "is not a commit"),
    ):
        data = json.loads(good)
        edit(data["models"][TINY])
        path.write_text(json.dumps(data))
        for args in (("--verify",), ("--info",), ("--whisperx", "--asr-model", "tiny.en")):
            one_line(cli.run(*args, check_code=None, netns=True), str(path), says, "--verify --repair")
        repaired = cli.run("--verify", "--repair", netns=True)  # the fix it names: the lock rebuilt from the files
        assert "rebuilt it from the cache's files" in repaired.stderr, repaired.stderr
        assert cache.read_lock(cli.cache)["models"][TINY]["commit"] == json.loads(good)["models"][TINY]["commit"]


# ---- --from-dir links ----------------------------------------------------------------------------------------


def test_from_dir_refuses_a_link_that_leaves_the_folder(cli, tiny_en_files, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(tiny_en_files["vocabulary.txt"])
    secret.chmod(0o640)
    source = folder(tmp_path / "usb", {k: v for k, v in tiny_en_files.items() if k != "vocabulary.txt"})
    (source / "vocabulary.txt").symlink_to(secret)
    proc = cli.run("--from-dir", str(source), "--key", TINY, check_code=None, netns=True)
    one_line(proc, "vocabulary.txt is a link to", "outside the folder", "nothing was changed")
    assert not cache.lock_path(cli.cache).exists()
    assert not list(cache.hub_dir(cli.cache).glob("models--*/blobs/*"))
    (source / "vocabulary.txt").unlink()
    (source / "vocabulary.txt").write_bytes(tiny_en_files["vocabulary.txt"])
    (source / "alias.txt").symlink_to(source / "vocabulary.txt")  # a link inside the folder is the folder's
    assert cli.json("--from-dir", str(source), "--key", TINY, netns=True)["results"][0]["ok"]
    assert TINY_EN_REPO in cache.read_lock(cli.cache)["models"][TINY]["repo"]


# ---- paths that are not files, places that cannot be written ---------------------------------------------------


def in_namespace(setup: str, command: list[str]) -> list[str]:
    """`command` in a private mount namespace after the shell `setup` ($0 is the first word of the command line)."""
    return ["unshare", "-m", "sh", "-c", f'{setup} && exec "$@"', "sh", *command]


def run_one_line(cli, command: list[str], *needles: str, code: int = 2) -> None:
    proc = subprocess.run(command, env=cli.env(), capture_output=True, text=True, timeout=600)
    one_line(proc, *needles, code=code)


def test_export_outputs_that_are_not_files_or_cannot_be_written(cli, universe, tmp_path):
    cli.run("--whisperx", "--asr-model", "tiny.en")
    universe.hub.stop()
    (tmp_path / "a-folder").mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target, says in (
        ("/dev/full", "is a device"),
        (str(tmp_path / "a-folder"), "is a folder"),
        ("/proc/version", "is a virtual file system"),
        (str(fifo), "is a FIFO"),
        (str(tmp_path / "nowhere" / "x.tar"), "is nothing, not a folder"),
    ):
        one_line(cli.run("--export", target, check_code=None, netns=True), says)
    assert Path("/dev/full").is_char_device()
    readonly = tmp_path / "ro"
    readonly.mkdir()
    run_one_line(
        cli,
        in_namespace(
            f"mount --bind {readonly} {readonly} && mount -o remount,bind,ro {readonly}",
            cli.args("--export", str(readonly / "b.tar")),
        ),
        "cannot write in",
        "read-only",
    )
    small = tmp_path / "small"
    small.mkdir()
    run_one_line(
        cli,
        in_namespace(f"mount -t tmpfs -o size=4m tmpfs {small}", cli.args("--export", str(small / "b.tar"))),
        f"no space left in {small}",
        "needs about",
        code=1,
    )  # a plain tar's size is known: refused up front
    proc = subprocess.run(
        in_namespace(f"mount -t tmpfs -o size=4m tmpfs {small}", cli.args("--export", str(small / "b.tar.zst"))),
        env=cli.env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    last = proc.stderr.strip().splitlines()[-1]  # compressed: found full while writing, after the "exporting" line
    assert (
        proc.returncode == 1 and "Traceback" not in proc.stderr and last.startswith(f"error: no space left in {small}")
    )
    assert list(small.iterdir()) == []


def test_state_file_paths_that_are_not_files(cli, universe, tmp_path):
    cli.run("--whisperx", "--asr-model", "tiny.en")
    universe.hub.stop()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for flag in ("--lock-file", "--import"):
        for path, says in (
            ("/dev/zero", "is a device, not a file"),
            (str(fifo), "is a FIFO, not a file"),
            (str(tmp_path), "is a folder, not a file"),
        ):
            args = (flag, path) if flag == "--import" else (flag, path, "--whisperx")
            one_line(cli.run(*args, check_code=None, netns=True), f"{flag} {path}: {says}")
    one_line(
        cli.run("--export", str(tmp_path / "x.tar"), "--since", "/dev/zero", check_code=None, netns=True),
        "--since /dev/zero: is a device",
    )
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "offline_speech", "cache-models", "--info", "--cache-dir", str(a_file)],
        env=cli.env(),
        capture_output=True,
        text=True,
    )
    one_line(proc, f"--cache-dir {a_file}: is a file, not a folder")
    locks = cli.cache / ".locks" / f"entry-{TINY}.lock"
    locks.unlink()
    locks.mkdir()
    one_line(cli.run("--clear", TINY, "--yes", check_code=None, netns=True), f"{locks} is a folder, not a lock file")


def test_import_onto_a_full_disk_says_the_space_needed_and_leaves_nothing(cli, universe, tmp_path):
    cli.run("--whisperx", "--asr-model", "tiny.en")
    bundle = tmp_path / "b.tar"
    cli.run("--export", str(bundle))
    universe.hub.stop()
    small = tmp_path / "small"
    small.mkdir()
    command = [
        sys.executable,
        "-m",
        "offline_speech",
        "cache-models",
        "--import",
        str(bundle),
        "--cache-dir",
        str(small / "cache"),
    ]
    # the staging folder is gone afterwards: what is left in the cache is listed before the namespace ends
    script = f'mount -t tmpfs -o size=8m tmpfs {small} && "$@"; code=$?; ls -A {small / "cache"} >&2; exit $code'
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", *command],
        env=cli.env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and lines[0].startswith(f"error: no space left in {small / 'cache'}"), proc.stderr
    assert "needs about" in lines[0] and not [name for name in lines[1:] if name.startswith(".import-")], proc.stderr


def test_a_killed_exports_temp_file_is_removed_by_the_next_export(cli, universe, tmp_path):
    cli.run("--whisperx", "--asr-model", "tiny.en")
    universe.hub.stop()
    left = tmp_path / ".b.tar0a1b2c3d.tmp"
    left.write_bytes(b"x" * 1000)
    os.utime(left, (1, 1))
    cli.run("--export", str(tmp_path / "b.tar"), netns=True)
    assert not left.exists() and (tmp_path / "b.tar").is_file()


# ---- poor results made one clear line ---------------------------------------------------------------------------


def test_a_job_prepared_with_out_dir_is_found_by_cache_models_job(provisioned, tmp_path):
    out = tmp_path / ("a-long-folder-name-" * 4) / "out"
    proc = shim(
        "prepare-job.sh",
        "--media",
        str(CLIP),
        "--asr-model",
        "tiny.en",
        "-s",
        "en",
        "--no-align",
        "--out-dir",
        str(out),
        cache=provisioned,
        netns=True,
        COLUMNS="80",
    )
    summary, job = proc.stdout.strip().splitlines()  # piped: one summary line however long, then the id
    assert summary.startswith(f"job {out / job}: transcribe") and len(summary) > 80
    missing = shim("cache-models.sh", "--job", job, code=2, cache=provisioned, netns=True)
    assert "needs --out-dir DIR here too" in missing.stderr
    found = shim("cache-models.sh", "--job", job, "--out-dir", str(out), "--json", cache=provisioned, netns=True)
    assert [r["message"] for r in json.loads(found.stdout)["results"]] == ["cached"]


def test_a_hand_edited_clip_past_the_media_is_said_as_such(provisioned, tmp_path):
    out = tmp_path / "out"
    job = prepare(out, provisioned, "-s", "en", "--no-align", "--end-time", "3")
    path = out / job / "job.json"
    data = json.loads(path.read_text())
    data["clip"]["end"] = 1e9
    path.write_text(json.dumps(data))
    proc = run_pipeline(out, provisioned, job, code=None, netns=True)
    one_line(proc, "job.json is corrupt", "past the end of the media", "prepare the job again")


def test_venv_setup_says_usage_errors_as_the_other_commands_do():
    for command in ("venv-setup", "cache-models.sh"):
        proc = subprocess.run([str(ROOT / command), "--bogus"], capture_output=True, text=True)
        one_line(proc, "--bogus", f"(see {command} --help)")


def test_speakers_that_is_a_file_is_said_as_such(provisioned, tmp_path):
    a_file = tmp_path / "anna.wav"
    a_file.write_bytes(b"RIFF")
    proc = shim(
        "prepare-job.sh",
        "--media",
        str(CLIP),
        "--asr-model",
        "tiny.en",
        "-s",
        "en",
        "--diarize",
        "--speakers",
        str(a_file),
        "--out-dir",
        str(tmp_path / "out"),
        code=None,
        cache=provisioned,
        netns=True,
    )
    one_line(proc, f"speakers folder {a_file} is a file, not a folder")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_an_export_waits_for_a_clear_of_its_entry_and_says_what_vanished(cli, universe, tmp_path):
    """--export takes the entries' locks (those --clear takes): it waits for a clear that holds one, and files the
    clear removed meanwhile are one line, nothing written (it was a FileNotFoundError traceback)."""
    import fcntl

    cli.run("--whisperx", "--asr-model", "tiny.en")
    universe.hub.stop()
    lock = cli.cache / ".locks" / f"entry-{TINY}.lock"
    target = tmp_path / "b.tar"
    with open(lock, "a") as held:  # a --clear of the entry, holding its lock
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = subprocess.Popen(
            cli.args("--export", str(target), netns=True),
            env=cli.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr.readline().startswith("exporting 1 entries")  # planned: it writes once it has the lock
        time.sleep(1)
        assert proc.poll() is None  # waiting for the entry's lock
        shutil.rmtree(cache.repo_dir(cli.cache, TINY_EN_REPO))  # what the clear removes
        shutil.rmtree(cache.shared_store(cli.cache), ignore_errors=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("error: ") and "vanished while it was exported" in err, err
    assert not target.exists() and not list(tmp_path.glob(".b.tar*"))
