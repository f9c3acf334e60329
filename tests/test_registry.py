"""The stage registry, the job schema (2, still reading 1), job resolution, manifests and the shared sentence ends:
pure functions on real files, no models (the stages themselves run in test_pipeline.py and friends)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path

import pytest

from offline_speech.catalog import DEFAULT_NLLB_MODEL, load_catalog
from offline_speech.pipeline import PreflightError, job_needs, load_job, stages_for
from offline_speech.pipeline.manifest import read_manifest
from offline_speech.pipeline.registry import REGISTRY, stages_of
from offline_speech.pipeline.runner import Batch
from offline_speech.requirements import nllb_name
from offline_speech.schema import JOB_SCHEMA, WORKFLOWS, Clip, Job, Media, SchemaError, read_job
from offline_speech.stages.base import REQUEST_SCHEMA, JobEntry, StageRequest
from offline_speech.stages.outputs import cues

JOB_ID = "20261130-043000.000-talk-1a2b"


def make_job(**changes) -> Job:
    job = Job(
        id=JOB_ID,
        media=Media("/media/talk.opus", "0" * 64, 100, 10.0, 1),
        workflow="transcribe",
        source_language="en",
        target_languages=(),
        clip=Clip(0.0, 10.0),
        backend="whisperx",
        backend_reason="requested",
        asr_model="tiny.en",
        models={},
        created="2026-11-30T04:30:00Z",
        nllb_model="distilled-600M",
    )
    return dataclasses.replace(job, **changes)


def write_job(folder: Path, raw: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps(raw))
    return folder


def test_every_workflow_runs_its_stages_in_order():
    names = {w: [s.name for s in stages_for(w)] for w in WORKFLOWS}  # every stage a job of the workflow may run
    assert names == {
        "transcribe": ["demux", "asr", "align", "diarize", "outputs"],
        "translate": ["demux", "asr", "align", "diarize", "translate", "outputs"],
        "subtitle": ["demux", "asr", "align", "diarize", "translate", "outputs", "mux"],
    }
    assert len({s.name for s in REGISTRY}) == len(REGISTRY)
    assert all(set(s.workflows) <= set(WORKFLOWS) for s in REGISTRY)
    assert [s.name for s in REGISTRY if s.final] == ["diarize", "outputs", "mux"]


def test_a_job_runs_the_optional_stages_it_asks_for():
    job = make_job()
    assert [s.name for s in stages_of(job)] == ["demux", "asr", "align", "outputs"]
    assert [s.name for s in stages_of(replace(job, diarize=True))] == ["demux", "asr", "align", "diarize", "outputs"]
    subtitle = replace(job, workflow="subtitle", target_languages=())
    assert [s.name for s in stages_of(subtitle)] == ["demux", "asr", "align", "outputs", "mux"]  # no -t: no translate


def test_module_and_venv_follow_the_job():
    asr = next(s for s in REGISTRY if s.name == "asr")
    assert (asr.module_for(make_job()), asr.venv_for(make_job())) == ("offline_speech.stages.asr_whisperx", "whisperx")
    mlx = make_job(backend="mlx")
    assert (asr.module_for(mlx), asr.venv_for(mlx)) == ("offline_speech.stages.asr_mlx", "mlx")
    align = next(s for s in REGISTRY if s.name == "align")
    assert align.venv_for(make_job()) == "whisperx" and align.venv_for(make_job(align=False)) == "core"
    entry = JobEntry(
        JOB_ID, "/out", {}, fields={"aligner": None, "no_aligner_reason": "no word aligner exists for 'ta'"}
    )
    assert align.venv_for(make_job(), entry) == "core"  # nothing to align: no torch needed


def test_job_schema_2_records_the_nllb_model_and_schema_1_still_reads(tmp_path):
    job = make_job(workflow="translate", source_language="en", target_languages=("fr",))
    raw = json.loads(job.to_json())
    assert raw["schema"] == JOB_SCHEMA == 4 and raw["nllb_model"] == "distilled-600M"
    assert read_job(write_job(tmp_path / "v2", raw) / "job.json") == job

    old = {k: v for k, v in raw.items() if k != "nllb_model"} | {
        "schema": 1,
        "models": {"nllb-200-distilled-1.3B": None},
    }
    v1 = read_job(write_job(tmp_path / "v1", old) / "job.json")
    assert v1.schema == 1 and v1.nllb_model is None
    catalog = load_catalog()
    assert nllb_name(catalog, v1) == "nllb-200-distilled-1.3B"  # what it was prepared with, from its models
    assert nllb_name(catalog, dataclasses.replace(v1, models={})) == DEFAULT_NLLB_MODEL
    assert [n.item.key for n in job_needs(catalog, v1)[0]][-1] == "nllb-200-distilled-1.3B"

    with pytest.raises(SchemaError, match="needs nllb_model"):
        read_job(write_job(tmp_path / "v2-incomplete", old | {"schema": 2}) / "job.json")
    with pytest.raises(SchemaError, match="schema 1 or 2 or 3 or 4"):
        read_job(write_job(tmp_path / "v5", raw | {"schema": 5}) / "job.json")


def test_job_needs_name_the_command_that_fetches_each():
    catalog = load_catalog()
    needs, notes = job_needs(
        catalog,
        make_job(source_language="hi", asr_model="large-v3", workflow="subtitle", target_languages=("en", "fr")),
    )
    fetch = {n.item.key: n.fetch for n in needs}
    assert fetch["faster-whisper-large-v3"] == "./cache-models.sh --whisperx --asr-model large-v3"
    assert fetch["align-hi"] == fetch["nltk-punkt_tab"] == "./cache-models.sh --align --languages hi"
    assert fetch["indictrans2-indic-en-1B"] == "./cache-models.sh --indictrans2"
    assert fetch["nllb-200-distilled-600M"] == "./cache-models.sh --nllb --nllb-model distilled-600M"
    assert notes == []
    _, notes = job_needs(catalog, make_job(source_language="ta", asr_model="large-v3"))
    assert notes == ["no word aligner exists for 'ta': the job keeps segment timestamps"]


def test_one_resolver_for_job_ids_and_job_folders(tmp_path):
    out = tmp_path / "out"
    folder = write_job(out / JOB_ID, json.loads(make_job().to_json()))
    assert load_job(out, JOB_ID).job.id == JOB_ID
    assert load_job(tmp_path, str(folder), flag="--job", folders=True).dir == folder
    assert load_job(out, str(folder)).dir == folder  # -j takes job folders too, as --job does
    with pytest.raises(PreflightError, match="not a job id"):
        load_job(out, str(folder), folders=False)
    with pytest.raises(PreflightError, match="no prepared job there"):
        load_job(out, str(tmp_path / "nowhere"), flag="--job", folders=True)
    with pytest.raises(PreflightError, match="unknown job id"):
        load_job(out, "20260101-000000.000-none-0000")


@pytest.mark.parametrize(
    "text",
    [
        '{"kind": "offline-speech/manifest", "schema": 1, "stages": []}',
        '{"kind": "offline-speech/manifest", "schema": 1, "stages": {"asr": {"outputs": {"t": 3}}}}',
        "[1, 2]",
        '{"kind": ',
        "",
    ],
)
def test_a_broken_manifest_means_every_stage_runs_again(tmp_path, text):
    path = tmp_path / "manifest.json"
    path.write_text(text)
    assert read_manifest(path, JOB_ID) == {
        "kind": "offline-speech/manifest",
        "schema": 1,
        "job": JOB_ID,
        "status": "new",
        "stages": {},
    }


def test_a_devanagari_danda_ends_a_cue_as_a_full_stop_does():
    words = "आज मौसम बहुत अच्छा है। हम कल बाज़ार जाएंगे".split()
    segment = {
        "start": 0.0,
        "end": 4.0,
        "text": " ".join(words),
        "words": [{"word": w, "start": i * 0.5, "end": i * 0.5 + 0.4} for i, w in enumerate(words)],
    }
    assert [c[2] for c in cues([segment])] == ["आज मौसम बहुत अच्छा है।", "हम कल बाज़ार जाएंगे"]
    latin = [dict(w, word=w["word"].replace("।", ".")) for w in segment["words"]]
    assert len(cues([dict(segment, words=latin)])) == 2


def test_the_request_is_the_protocol_schema_and_carries_no_options():
    entry = JobEntry(JOB_ID, "/out/x", {"id": JOB_ID}, {"audio": "a.wav"}, {"transcript": "t.json"}, {"aligner": None})
    request = StageRequest("align", (entry,), {}).to_dict()
    assert request == {
        "schema": REQUEST_SCHEMA,
        "stage": "align",
        "models": {},
        "jobs": [
            {
                "id": JOB_ID,
                "dir": "/out/x",
                "job": {"id": JOB_ID},
                "inputs": {"audio": "a.wav"},
                "outputs": {"transcript": "t.json"},
                "aligner": None,
            }
        ],
    }


def test_jobs_share_a_process_unless_a_shared_model_differs():
    tiny, large = {"key": "faster-whisper-tiny.en"}, {"key": "faster-whisper-large-v3"}
    batch = Batch("offline_speech.stages.asr_whisperx", "whisperx", {"asr": tiny})
    assert batch.accepts("offline_speech.stages.asr_whisperx", "whisperx", {"asr": tiny})
    assert not batch.accepts("offline_speech.stages.asr_whisperx", "whisperx", {"asr": large})
    assert not batch.accepts("offline_speech.stages.asr_mlx", "mlx", {"asr": tiny})
    translate = Batch("offline_speech.stages.translate", "translation", {"nllb-200-distilled-600M": {"key": "n"}})
    assert translate.accepts(
        "offline_speech.stages.translate", "translation", {"indictrans2-en-indic-1B": {"key": "i"}}
    )
