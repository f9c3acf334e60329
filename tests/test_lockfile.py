"""Reproducible sets: --lock-file provisions exactly the commits a lock pins, even after the hub's main moved on;
--update moves keys to the newest commit on purpose and says what changed; without it nothing cached is asked
about again."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from offline_speech import cache
from support.hub import HubRepo
from support.shell import Cli
from support.universe import TINY_EN_COMMIT

FOLLOWER = "align-hi"  # an unpinned repo: it follows main
FOLLOWER_REPO = "theainerd/Wav2Vec2-large-xlsr-hindi"
TINY = "faster-whisper-tiny.en"


def move_main(universe, repo: str, keep_history: bool = True) -> str:
    """Publish a new commit of `repo` (one weights file changed) as main; the new commit."""
    files = dict(universe.files[repo])
    files["embedding_model.ckpt"] = random.Random(7).randbytes(160_000)
    return universe.hub.add_repo(HubRepo(repo, files), keep_history=keep_history).commit


def other_cache(cli: Cli, name: str) -> Cli:
    """A second, empty project cache served by the same hub (another machine of the team)."""
    return Cli(cli.home, cli.cache.parent / name, cli.endpoint, cli.asset_mirror)


def lock_of(cli: Cli) -> dict:
    return json.loads((cli.cache / cache.LOCK_NAME).read_text())


def resolved_commits(universe, repo: str) -> set[str]:
    """The commits the hub was asked for files of `repo` at."""
    prefix = f"/{repo}/resolve/"
    return {r.path[len(prefix) :].split("/")[0] for r in universe.hub.requests if r.path.startswith(prefix)}


@pytest.fixture()
def team_lock(cli, universe, tmp_path) -> Path:
    """tiny.en and align-hi (unpinned) provisioned, the cache's lock copied out as a team would commit it."""
    cli.run("--whisperx", "--asr-model", "tiny.en", FOLLOWER)
    copy = tmp_path / "team.lock"
    shutil.copy(cli.cache / cache.LOCK_NAME, copy)
    return copy


def test_lock_file_provisions_the_locked_commit_after_main_moved(cli, universe, team_lock):
    old = universe.commits[FOLLOWER_REPO]
    new = move_main(universe, FOLLOWER_REPO)
    assert new != old
    elsewhere = other_cache(cli, "elsewhere")
    universe.hub.reset_requests()
    result = elsewhere.json("--lock-file", str(team_lock))
    assert result["failed"] == 0
    assert {r["key"] for r in result["results"]} == {TINY, FOLLOWER}
    lock = lock_of(elsewhere)
    assert lock["models"][FOLLOWER]["commit"] == old and lock["models"][FOLLOWER]["revision"] == "main"
    assert lock["models"][TINY]["commit"] == TINY_EN_COMMIT
    assert cache.read_ref(elsewhere.cache, FOLLOWER_REPO, "main") == old
    assert resolved_commits(universe, FOLLOWER_REPO) == {old}
    # the same lock again: all cached, no request; and it verifies
    universe.hub.reset_requests()
    assert [r["message"] for r in elsewhere.json("--lock-file", str(team_lock))["results"]] == ["cached", "cached"]
    assert universe.hub.requests == []
    assert elsewhere.json("--verify")["problems"] == 0
    # with a selection, only that selection, still at the lock's commit
    third = other_cache(cli, "third")
    assert [r["key"] for r in third.json(FOLLOWER, "--lock-file", str(team_lock))["results"]] == [FOLLOWER]
    assert lock_of(third)["models"][FOLLOWER]["commit"] == old


def test_update_moves_on_purpose_and_says_what_changed(cli, universe, team_lock):
    old = universe.commits[FOLLOWER_REPO]
    new = move_main(universe, FOLLOWER_REPO)
    # the seed behaviour: a complete cached entry is never re-checked against the network
    universe.hub.reset_requests()
    result = cli.json("--whisperx", "--asr-model", "tiny.en", FOLLOWER)
    assert [r["message"] for r in result["results"]] == ["cached", "cached"]
    assert universe.hub.requests == []
    assert lock_of(cli)["models"][FOLLOWER]["commit"] == old

    result = cli.json("--update", FOLLOWER)
    [row] = result["results"]
    assert row["ok"] and row["message"].startswith(f"updated {old[:12]} -> {new[:12]}"), row
    assert lock_of(cli)["models"][FOLLOWER]["commit"] == new
    assert cache.read_ref(cli.cache, FOLLOWER_REPO, "main") == new
    assert cli.json("--verify", FOLLOWER)["problems"] == 0

    # a group name, a comma list: already newest; a commit the catalog pins is not moved
    proc = cli.run("--update", "align," + TINY, "--languages", "hi")
    assert f"already newest ({new[:12]})" in proc.stdout and "pinned by the catalog: nothing to move" in proc.stdout

    # and the team's lock takes the cache back to the commit it pins
    assert cli.json("--lock-file", str(team_lock))["failed"] == 0
    assert lock_of(cli)["models"][FOLLOWER]["commit"] == old
    assert cache.read_ref(cli.cache, FOLLOWER_REPO, "main") == old


def test_update_with_the_hub_unreachable_says_so_and_keeps_what_is_cached(cli, universe, team_lock):
    old = universe.commits[FOLLOWER_REPO]
    universe.hub.stop()
    proc = cli.run("--update", FOLLOWER, check_code=1)
    assert f"cannot reach {cli.endpoint} for {FOLLOWER_REPO}" in proc.stdout, proc.stdout
    assert lock_of(cli)["models"][FOLLOWER]["commit"] == old
    assert cli.json(FOLLOWER, netns=True)["results"][0]["message"] == "cached"


def test_a_commit_the_hub_no_longer_has_fails_that_key_only(cli, universe, team_lock):
    move_main(universe, FOLLOWER_REPO, keep_history=False)  # history rewritten: the locked commit is gone
    old = universe.commits[FOLLOWER_REPO]
    elsewhere = other_cache(cli, "elsewhere")
    proc = elsewhere.run("--lock-file", str(team_lock), check_code=1)
    assert f"{FOLLOWER_REPO} has no commit {old[:12]}" in proc.stdout
    assert f"--update {FOLLOWER}" in proc.stdout
    assert f"1 of 2 failed: {FOLLOWER}" in proc.stderr
    assert "Traceback" not in proc.stderr
    lock = lock_of(elsewhere)
    assert lock["models"][TINY]["commit"] == TINY_EN_COMMIT and FOLLOWER not in lock["models"]


def test_a_key_this_catalog_does_not_know_is_one_line_and_the_rest_go_on(cli, universe, team_lock):
    data = json.loads(team_lock.read_text())
    data["models"]["whisper-from-the-future"] = dict(data["models"][TINY], repo="org/future")
    data["models"]["mlx-whisper-large-v3"] = dict(data["models"][TINY], repo="mlx-community/whisper-large-v3-mlx")
    team_lock.write_text(json.dumps(data))
    elsewhere = other_cache(cli, "elsewhere")
    proc = elsewhere.run("--lock-file", str(team_lock), "--json", check_code=1)
    assert f"note: mlx-whisper-large-v3: in {team_lock}, but it runs only on darwin-arm64: left out" in proc.stderr
    result = json.loads(proc.stdout)
    rows = {r["key"]: r for r in result["results"]}
    assert "mlx-whisper-large-v3" not in rows
    # --dry-run says the same before anything is fetched
    planned = other_cache(cli, "planned").json("--lock-file", str(team_lock), "--dry-run", check_code=1)
    errors = {r["key"]: r["error"] for r in planned["plan"] if r["error"]}
    assert list(errors) == ["whisper-from-the-future"] and "not in this catalog" in errors["whisper-from-the-future"]
    assert not rows["whisper-from-the-future"]["ok"]
    assert "not in this catalog" in rows["whisper-from-the-future"]["message"]
    assert rows[TINY]["ok"] and rows[FOLLOWER]["ok"] and result["failed"] == 1


def test_same_commit_other_bytes_is_caught(cli, universe, team_lock):
    """A mirror serving other files under the locked commit: the lock's hashes disagree, that key fails."""
    old = universe.commits[FOLLOWER_REPO]
    files = dict(universe.files[FOLLOWER_REPO], **{"config.json": b'{"not": "the locked bytes"}'})
    universe.hub.add_repo(HubRepo(FOLLOWER_REPO, files, commit=old))
    elsewhere = other_cache(cli, "elsewhere")
    result = elsewhere.json("--lock-file", str(team_lock), check_code=1)
    row = next(r for r in result["results"] if r["key"] == FOLLOWER)
    assert not row["ok"] and "config.json differ from the lock's" in row["message"], row


@pytest.mark.parametrize(
    "content, says",
    [
        (None, "no such file"),
        ("{not json", "not a readable lock file"),
        ('["a list"]', "not an offline-speech lock file"),
        ('{"models": {"x": 3}}', "not an offline-speech lock file"),
    ],
)
def test_a_broken_lock_file_is_one_line_naming_it(cli, tmp_path, content, says):
    path = tmp_path / "team.lock"
    if content is not None:
        path.write_text(content)
    proc = cli.run("--lock-file", str(path), check_code=2)
    assert proc.stderr.strip() == f"error: --lock-file {path}: {says}" or (
        proc.stderr.startswith(f"error: --lock-file {path}: {says}") and len(proc.stderr.strip().splitlines()) == 1
    ), proc.stderr


@pytest.mark.parametrize(
    "args, says",
    [
        (["--lock-file", "x.lock", "--verify"], "--lock-file goes with provisioning"),
        (["--update", FOLLOWER, "--info"], "--update goes with provisioning"),
        (["--update", FOLLOWER, "--lock-file", "x.lock"], "--update and --lock-file pull opposite ways"),
        (["--update", "no-such-group"], "unknown model key 'no-such-group'"),
    ],
)
def test_lock_file_and_update_usage_errors(cli, args, says):
    proc = cli.run(*args, check_code=2)
    assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_what_the_lock_cannot_give_here_is_refused_before_any_request(cli, universe, team_lock):
    data = json.loads(team_lock.read_text())
    data["models"][TINY]["commit"] = "1" * 40  # another version of the catalog pinned another commit
    data["models"][FOLLOWER]["repo"] = "someone/else"
    team_lock.write_text(json.dumps(data))
    elsewhere = other_cache(cli, "elsewhere")
    result = elsewhere.json("--lock-file", str(team_lock), check_code=1, netns=True)  # no network at all
    rows = {r["key"]: r["message"] for r in result["results"]}
    assert f"this catalog pins {TINY_EN_COMMIT[:12]}" in rows[TINY]
    assert f"from someone/else, this catalog from {FOLLOWER_REPO}" in rows[FOLLOWER]
    assert result["failed"] == 2 and not (elsewhere.cache / cache.LOCK_NAME).exists()
