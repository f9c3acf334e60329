"""Mirrors and gated repos: HF_ENDPOINT and --asset-mirror carry every group (nothing else is contacted), and a
gated repo is asked about, so the answer is the hub's: a mirror serving it without a token just works, 401/403
say how to get access, a network that is down says so."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from offline_speech import cache
from support.hub import HubRepo

DIARIZATION = "pyannote-speaker-diarization-community-1"
DIARIZATION_REPO = "pyannote/speaker-diarization-community-1"


def test_every_group_goes_to_the_endpoint_given_and_nowhere_else(cli, universe, tmp_path):
    trace = tmp_path / "trace"
    port = universe.hub.url.rsplit(":", 1)[1]
    # --asset-mirror wins over the variable, which here names a port nothing listens on
    args = [
        "strace",
        "-f",
        "-e",
        "trace=connect,sendto,sendmsg",
        "-o",
        str(trace),
        *cli.args("--all", "--mlx", "--no-convert", "--json", "--asset-mirror", universe.hub.url + "/assets"),
    ]
    env = cli.env(HF_TOKEN=universe.token, OFFLINE_SPEECH_ASSET_MIRROR="http://127.0.0.1:9/nothing")
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads(proc.stdout)["failed"] == 0

    lock = json.loads((cli.cache / cache.LOCK_NAME).read_text())
    groups = {m["venv"] for m in lock["models"].values()}
    assert {"whisperx", "mlx", "translation"} <= groups
    asked = {r.path for r in universe.hub.requests}
    for key, entry in lock["models"].items():
        assert any(p.startswith(f"/{entry['repo']}/resolve/{entry['commit']}/") for p in asked), key
    for key, entry in lock["assets"].items():
        assert entry["url"].startswith(universe.hub.url + "/assets/"), key
    traced = trace.read_text().splitlines()
    inet = [line for line in traced if "AF_INET" in line or "sin_addr" in line or "sin6_addr" in line]
    assert inet, "strace saw no connection at all"
    strays = [line for line in inet if f"htons({port})" not in line or '"127.0.0.1"' not in line]
    assert strays == [], strays  # no DNS lookup, no huggingface.co, no download.pytorch.org, no GitHub


def test_a_mirror_serving_a_gated_repo_without_a_token_just_works(cli, universe):
    universe.hub.add_repo(HubRepo(DIARIZATION_REPO, universe.files[DIARIZATION_REPO]))  # the mirror gates nothing
    result = cli.json("--diarization")
    assert result["failed"] == 0, result
    asked = [r for r in universe.hub.requests if r.path.startswith(f"/{DIARIZATION_REPO}/")]
    assert asked and not any(r.authorization for r in asked)
    assert cli.json("--verify", DIARIZATION)["problems"] == 0


@pytest.mark.parametrize("token, status", [(None, 401), ("hf_not_the_right_one_0000000000", 403)])
def test_a_gated_refusal_is_the_hubs_answer_with_the_fix(cli, universe, token, status):
    extra = {"HF_TOKEN": token} if token else {}
    proc = cli.run("--diarization", check_code=1, **extra)
    text = proc.stdout + proc.stderr
    assert any(r.status == status and r.path.startswith(f"/{DIARIZATION_REPO}/resolve/") for r in universe.hub.requests)
    assert f"{DIARIZATION_REPO} is gated" in text
    assert f"{universe.hub.url}/{DIARIZATION_REPO}" in text
    assert "loading it offline later needs no token" in text
    if token is None:
        assert "hf auth login" in text and "HF_TOKEN" in text
    else:
        assert "this token has no access" in text
    assert not [r for r in universe.hub.requests if r.method == "GET" and "/resolve/" in r.path]


def test_a_network_that_is_down_is_not_called_gated(cli, universe):
    universe.hub.stop()
    proc = cli.run("--diarization", check_code=1)
    text = proc.stdout + proc.stderr
    assert re.search(rf"cannot reach {re.escape(cli.endpoint)} for {DIARIZATION_REPO}", text), text
    assert "gated" not in text and "Traceback" not in text
