"""The align stage with a real (tiny, random-weight) wav2vec2 CTC aligner built here, served by the test hub as the
catalog's Hindi aligner repo, provisioned with cache-models.sh together with punkt_tab, then run as the runner
runs it (its own venv, the offline environment) inside a network namespace on real Hindi speech."""

from __future__ import annotations

import json
import subprocess
import wave
from pathlib import Path

import pytest

from offline_speech import cache
from offline_speech.catalog import load_catalog
from offline_speech.requirements import resolve_aligner
from offline_speech.schema import TRANSCRIPT_KIND, TRANSCRIPT_SCHEMA, read_transcript
from offline_speech.settings import offline_env
from offline_speech.util import write_json
from support import ROOT
from support.builders import tiny_aligner
from support.shell import provision, venv_python

HINDI = ["मैं आज सुबह बाज़ार गया था", "वहाँ बहुत सारे लोग फल खरीद रहे थे"]
GAP = 0.5


def speak(text: str, dest: Path) -> None:
    raw = dest.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "hi", "-w", str(raw), text], check=True)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(raw), "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", str(dest)],
        check=True,
    )


def concat_with_gaps(parts: list[Path], dest: Path) -> list[tuple[float, float]]:
    """One 16 kHz mono wav: GAP s of silence, part, GAP s, part, ...; returns each part's span in seconds."""
    silence = b"\0\0" * int(GAP * 16000)
    frames, spans, t = [silence], [], GAP
    for part in parts:
        with wave.open(str(part)) as w:
            data = w.readframes(w.getnframes())
        spans.append((t, t + len(data) / 32000))
        t += len(data) / 32000 + GAP
        frames += [data, silence]
    with wave.open(str(dest), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"".join(frames))
    return spans


@pytest.fixture(scope="module")
def aligner_cache(tmp_path_factory) -> Path:
    """cache-models.sh --align --languages hi against a hub serving the tiny aligner as the Hindi aligner repo."""
    work = tmp_path_factory.mktemp("align")
    files = tiny_aligner(work / "tiny-aligner", "hi")
    repo = load_catalog().aligners("hi")[0].repo
    assert "model.safetensors" in files and not any(n.endswith(".bin") for n in files)
    cache_dir = work / "cache"
    provision(cache_dir, "--align", "--languages", "hi", overrides={repo: files})
    return cache_dir


def test_align_stage_gives_every_word_times_inside_its_segment(aligner_cache, tmp_path):
    catalog = load_catalog()
    spec, reason = resolve_aligner(catalog, aligner_cache, cache.read_lock(aligner_cache), "hi")
    assert spec is not None, reason
    assert spec["kind"] == "hub" and Path(spec["path"], "model.safetensors").is_file()

    offset = 100.0  # the clip starts 100 s into the media: word times must come back as media positions
    parts = [tmp_path / f"s{i}.wav" for i in range(len(HINDI))]
    for text, part in zip(HINDI, parts):
        speak(text, part)
    audio = tmp_path / "audio.wav"
    spans = concat_with_gaps(parts, audio)
    end = spans[-1][1] + GAP
    segments = [
        {"start": round(a + offset, 3), "end": round(b + offset, 3), "text": t} for (a, b), t in zip(spans, HINDI)
    ]
    asr = tmp_path / "asr.json"
    write_json(
        asr,
        {
            "kind": TRANSCRIPT_KIND,
            "schema": TRANSCRIPT_SCHEMA,
            "job": "j1",
            "stage": "asr",
            "backend": "whisperx",
            "language": "hi",
            "language_probability": None,
            "model": {"key": "k", "repo": "r", "commit": None},
            "clip": {"start": offset, "end": offset + end},
            "segments": segments,
            "warnings": [],
        },
    )
    aligned = tmp_path / "aligned.json"
    job = {
        "id": "j1",
        "dir": str(tmp_path),
        "job": {"clip": {"start": offset, "end": offset + end}},
        "inputs": {"audio": str(audio), "transcript": str(asr)},
        "outputs": {"transcript": str(aligned)},
        "aligner": spec,
        "no_aligner_reason": "",
    }
    request = tmp_path / "request.json"
    write_json(request, {"schema": 1, "stage": "align", "options": {}, "jobs": [job]})
    env = offline_env(aligner_cache) | {"PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        ["unshare", "-n", str(venv_python("whisperx")), "-m", "offline_speech.stages.align", str(request)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0, proc.stderr
    kinds = [e["event"] for e in events]
    assert "job_done" in kinds and "job_failed" not in kinds, proc.stderr + proc.stdout
    loaded = [e for e in events if e["event"] == "model_loaded"]
    assert len(loaded) == 1 and loaded[0]["key"] == spec["key"] and loaded[0]["commit"] == spec["commit"]

    doc = read_transcript(aligned)  # schema check: words ordered and inside their segments
    assert doc["aligner"] == {"key": spec["key"], "commit": spec["commit"]}
    words = [w for s in doc["segments"] for w in s["words"]]
    assert [w["word"] for w in words] == " ".join(HINDI).split()
    for seg in doc["segments"]:
        assert seg["words"], seg
        for w in seg["words"]:
            assert seg["start"] <= w["start"] <= w["end"] <= seg["end"]
            assert offset <= w["start"] <= offset + end
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)


def test_without_punkt_the_stage_says_what_to_cache_instead_of_going_online(aligner_cache, tmp_path):
    spec, _ = resolve_aligner(load_catalog(), aligner_cache, cache.read_lock(aligner_cache), "hi")
    empty = tmp_path / "nltk"
    empty.mkdir()
    asr = tmp_path / "asr.json"
    write_json(
        asr,
        {
            "kind": TRANSCRIPT_KIND,
            "schema": TRANSCRIPT_SCHEMA,
            "job": "j1",
            "stage": "asr",
            "backend": "whisperx",
            "language": "hi",
            "language_probability": None,
            "model": {"key": "k", "repo": "r", "commit": None},
            "clip": {"start": 0, "end": 1},
            "segments": [{"start": 0, "end": 1, "text": "नमस्ते"}],
            "warnings": [],
        },
    )
    job = {
        "id": "j1",
        "dir": str(tmp_path),
        "job": {"clip": {"start": 0, "end": 1}},
        "inputs": {"audio": str(tmp_path / "none.wav"), "transcript": str(asr)},
        "outputs": {"transcript": str(tmp_path / "aligned.json")},
        "aligner": spec,
        "no_aligner_reason": "",
    }
    request = tmp_path / "request.json"
    write_json(request, {"schema": 1, "stage": "align", "options": {}, "jobs": [job]})
    env = offline_env(aligner_cache) | {"PYTHONPATH": str(ROOT / "src"), "NLTK_DATA": str(empty)}
    proc = subprocess.run(
        [
            "strace",
            "-f",
            "-e",
            "trace=connect",
            "-o",
            str(tmp_path / "trace"),
            str(venv_python("whisperx")),
            "-m",
            "offline_speech.stages.align",
            str(request),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    failed = [json.loads(line) for line in proc.stdout.splitlines() if '"job_failed"' in line]
    assert (
        failed
        and "punkt_tab is not in the cache" in failed[0]["error"]
        and "./cache-models.sh --align" in failed[0]["error"]
    )
    assert "AF_INET" not in (tmp_path / "trace").read_text()  # it did not try the network
