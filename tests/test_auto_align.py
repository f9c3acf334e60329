"""A default job (-s auto) keeps its word alignment: prepare-job records the aligners of the languages it may be
(--align-languages, default en,hi), cache-models.sh --job fetches them, and run-pipeline aligns with the aligner of
the language Whisper detected, offline. English is torchaudio's checkpoint, served here as a few-kilobyte stand-in
of the real architecture (tests/support/tiny_torchaudio_aligner.py)."""

from __future__ import annotations

import json

from offline_speech.catalog import load_catalog
from offline_speech.schema import read_transcript
from support.builders import tiny_torchaudio_aligner
from support.shell import prepare, provision, run_pipeline


def test_an_auto_job_is_provisioned_with_its_aligners_and_aligns_with_the_detected_language(tmp_path):
    english = next(a for a in load_catalog().assets if a.key == "torchaudio-align-en")
    checkpoint = tiny_torchaudio_aligner(tmp_path / "stand-in" / "aligner.pth")
    cache, out = tmp_path / "cache", tmp_path / "out"

    job_id = prepare(out, cache)  # the card's command: no -s, no --align-languages
    job = json.loads((out / job_id / "job.json").read_text())
    assert job["source_language"] == "auto" and job["align_languages"] == ["en", "hi"]
    assert {"torchaudio-align-en", "align-hi"} <= set(job["models"])

    provision(cache, "--job", str(out / job_id), assets={english.path: checkpoint})
    assert (cache / english.dest).read_bytes() == checkpoint

    proc = run_pipeline(out, cache, job_id, netns=True)
    folder = out / job_id
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["stages"]["align"]["status"] == "done"
    assert not any("align" in w and "skipped" in w for w in manifest["warnings"]), manifest["warnings"]
    doc = read_transcript(folder / "speech-en.en.json")
    assert doc["language"] == "en"
    assert doc["aligner"]["key"] == "torchaudio-align-en", doc.get("aligner")
    words = [w for s in doc["segments"] for w in s["words"]]
    assert len(words) > 50 and all("start" in w and "end" in w for w in words), proc.stdout
