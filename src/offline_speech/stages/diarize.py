"""diarize: who spoke when (pyannote `speaker-diarization-community-1`), a speaker on every segment and word, and
names for the voices that match enrolled samples. Runs in venv/whisperx.

Request (stage protocol of `base.py`):

    "models": {"diarization": {"key": CATALOG_KEY, "commit": SHA, "path": SNAPSHOT_DIR,
                               "files": [{"path": "config.yaml", "size": N, "git-sha1": HEX},
                                         {"path": "embedding/pytorch_model.bin", "size": N, "sha256": HEX}, ...],
                               "cache": CACHE_ROOT (where the verified index is; optional)}}
    job: "inputs":  {"audio": 16 kHz mono wav of the clip, "transcript": aligned.json}
         "outputs": {"transcript": diarized.json, "speakers": speakers.json}
         "diarize": {"min_speakers": int|null, "max_speakers": int|null, "speakers_dir": DIR|null,
                     "speaker_threshold": float (default 0.5),
                     "enrolment_cache": JSON_FILE|null (one per speakers folder)}

Only a verified snapshot is loaded: pyannote unpickles its checkpoints (`weights_only=False`), so before the
pipeline is built every file of the lock's list must be a regular file under the snapshot with the recorded size
and hash (sha256 for LFS files, git blob sha1 for the others), checked through the cache's verified index
(`verified.py`, the request's "cache"): a file whose stat is unchanged since it was hashed and found right is
trusted, any other is hashed again, so a same-size rewrite (which changes the ctime) is caught.

The pipeline is built once per process; its own embedding model (community-1's `embedding` subfolder) also embeds
the enrolled samples, so enrolment and diarization share one space and one load. A speaker is assigned to each
segment and word by the largest time overlap with the diarization's turns, as whisperX's `assign_word_speakers`
does (the nearest turn where nothing overlaps, so every segment and word gets one). Enrolled samples in
`speakers_dir` (`anna_1.wav`, `anna_2.m4a`, `ravi.wav`: the name is the file stem up to an optional `_N`) are
embedded whole, averaged per person and matched to the diarized speakers' centroids by cosine with an optimal
one-to-one assignment; a pair below the threshold is not named, and unnamed speakers keep `SPEAKER_NN`. Sample
embeddings are cached in JSON (never pickle) keyed by each file's sha256 and the model commit. How each enrolled
person fared (named whom at what score, or the best score and why not) is one line in the job's `notes`, which
run-pipeline prints at the end, so that a user can tune the threshold.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..schema import read_transcript
from ..speakers import DEFAULT_THRESHOLD, MIN_SAMPLE_SECONDS, enrolled_samples
from ..util import sha256_file, write_json
from ..verified import VerifiedIndex
from .audio_decode import SAMPLE_RATE, decode_audio
from .base import Events, StageFailure, for_each_job, main

NAME = "diarize"
VENV = "whisperx"
VERSION = 1
ENROLMENT_KIND = "offline-speech/enrolment"


# ---- the snapshot --------------------------------------------------------------------------------------------
def verify_snapshot(snapshot: Path, files: list[dict], index: VerifiedIndex | None = None) -> float:
    """Raise StageFailure unless every listed file matches its size and hash; returns the seconds it took.
    Hashes go through `index` (the cache's verified index): a file unchanged since it was verified is not hashed
    again, any other is; without an index every file is hashed."""
    t0 = time.monotonic()
    if not files:
        raise StageFailure(
            f"{snapshot}: the request lists no files to verify; refusing to unpickle an unverified snapshot"
        )
    index = index or VerifiedIndex(None)
    for entry in files:
        rel = entry["path"]
        path = snapshot / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts or not path.is_file():
            raise StageFailure(
                f"diarization model file {rel} is missing from {snapshot}: ./cache-models.sh --diarization --repair"
            )
        size = path.stat().st_size
        if size != entry["size"]:
            raise StageFailure(
                f"diarization model file {rel} has {size} bytes, the lock says {entry['size']}: "
                "./cache-models.sh --diarization --repair"
            )
        kind = "sha256" if "sha256" in entry else "git-sha1"
        if not index.check(path, entry[kind], size):
            raise StageFailure(
                f"diarization model file {rel} does not match its {kind} in the lock (modified?): "
                "./cache-models.sh --diarization --repair"
            )
    return time.monotonic() - t0


def load_pipeline(spec: dict, events: Events):
    """Verify, then build the pyannote pipeline from the snapshot folder (offline: the runner's environment)."""
    snapshot = Path(spec["path"])
    index = VerifiedIndex(Path(spec["cache"])) if spec.get("cache") else None
    verified = verify_snapshot(snapshot, spec.get("files") or [], index)
    if index is not None:
        index.save()  # not on a read-only cache: there the next run hashes again
    import torch
    from pyannote.audio import Pipeline

    t0 = time.monotonic() - verified  # the load's seconds include the verification, not the imports
    try:
        pipeline = Pipeline.from_pretrained(snapshot)
    except Exception as exc:
        raise StageFailure(
            f"could not load diarization model {spec['key']} from {snapshot}: {exc}".splitlines()[0]
        ) from exc
    if pipeline is None:
        raise StageFailure(f"could not load diarization model {spec['key']} from {snapshot}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pipeline.to(torch.device(device))
    events.model_loaded(spec["key"], spec.get("commit"), t0, device=device, verify_seconds=round(verified, 3))
    return pipeline


def embedding_inference(pipeline, snapshot: Path):
    """Whole-window inference with the pipeline's own embedding model (already loaded: no second load)."""
    from pyannote.audio import Inference, Model

    model = getattr(getattr(pipeline, "_embedding", None), "model_", None)
    if model is None:  # another pyannote release: load the same verified subfolder
        model = Model.from_pretrained(snapshot / "embedding" / "pytorch_model.bin")
    return Inference(model, window="whole", device=next(model.parameters()).device)


# ---- turns and transcript ------------------------------------------------------------------------------------
def dominant_speaker(turns: list[tuple[float, float, str]], start: float, end: float) -> str | None:
    """The speaker with the largest total overlap with [start, end]; the nearest turn when none overlaps."""
    if not turns:
        return None
    overlap: dict[str, float] = {}
    for a, b, speaker in turns:
        if a < end and b > start:
            overlap[speaker] = overlap.get(speaker, 0.0) + min(b, end) - max(a, start)
    if overlap:
        return max(overlap.items(), key=lambda item: item[1])[0]
    middle = (start + end) / 2
    return min(turns, key=lambda t: abs((t[0] + t[1]) / 2 - middle))[2]


def label_transcript(doc: dict, turns: list[tuple[float, float, str]], names: dict[str, str]) -> None:
    """Set `speaker` on every segment and word (media times) from the turns, renamed by `names`."""
    for seg in doc["segments"]:
        speaker = dominant_speaker(turns, seg["start"], seg["end"])
        if speaker is not None:
            seg["speaker"] = names.get(speaker, speaker)
        for word in seg.get("words", []):
            speaker = dominant_speaker(turns, word["start"], word["end"])
            if speaker is not None:
                word["speaker"] = names.get(speaker, speaker)


# ---- enrolment and naming ------------------------------------------------------------------------------------
class Enrolment:
    """Sample embeddings by file sha256, for one model commit; persisted as JSON in the request's cache file."""

    def __init__(self, inference, commit: str | None) -> None:
        self.inference, self.commit = inference, commit
        self.embeddings: dict[str, list[float]] = {}
        self.embedded = 0  # samples embedded in this process (the rest came from a cache)

    def load(self, path: Path | None) -> bool:
        """Take the cache file's embeddings when it was written for this model commit."""
        if path is None or not path.is_file():
            return False
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if doc.get("kind") != ENROLMENT_KIND or doc.get("model_commit") != self.commit:
            return False
        for sha, vector in doc.get("embeddings", {}).items():
            self.embeddings.setdefault(sha, vector)
        return True

    def save(self, path: Path, shas: set[str]) -> None:
        kept = {sha: self.embeddings[sha] for sha in sorted(shas)}
        write_json(
            path, {"kind": ENROLMENT_KIND, "schema": 1, "model_commit": self.commit, "embeddings": kept}, indent=None
        )

    def embed(self, path: Path, sha: str) -> list[float]:
        import numpy as np
        import torch

        if sha not in self.embeddings:
            audio = decode_audio(path)
            if len(audio) < MIN_SAMPLE_SECONDS * SAMPLE_RATE:
                raise StageFailure(
                    f"{path}: {len(audio) / SAMPLE_RATE:.2f} s of audio; a sample needs at least "
                    f"{MIN_SAMPLE_SECONDS:.0f} s of the person speaking"
                )
            vector = self.inference({"waveform": torch.from_numpy(audio)[None], "sample_rate": SAMPLE_RATE})
            self.embeddings[sha] = [float(x) for x in np.asarray(vector).reshape(-1)]
            self.embedded += 1
        return self.embeddings[sha]

    def people(self, folder: Path, cache_file: Path | None) -> tuple[dict[str, list[float]], dict]:
        """person -> mean embedding of their samples; info on what was embedded and cached."""
        import numpy as np

        t0, before = time.monotonic(), self.embedded
        reused = self.load(cache_file)
        samples = enrolled_samples(folder)
        shas = {path: sha256_file(path) for paths in samples.values() for path in paths}
        means = {
            name: np.mean([self.embed(p, shas[p]) for p in paths], axis=0).tolist() for name, paths in samples.items()
        }
        if cache_file is not None:
            self.save(cache_file, set(shas.values()))
        info = {
            "samples": len(shas),
            "embedded": self.embedded - before,
            "cache_reused": reused,
            "seconds": round(time.monotonic() - t0, 3),
            "files": {n: [p.name for p in ps] for n, ps in samples.items()},
        }
        return means, info


def cosine(a, b) -> float | None:
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return None if not np.isfinite(norm) or norm == 0 else float(a @ b / norm)


def name_speakers(
    people: dict[str, list[float]], speakers: dict[str, list[float] | None], threshold: float
) -> tuple[dict[str, str], list[dict]]:
    """Optimal one-to-one assignment of people to diarized speakers by cosine (scipy's Hungarian method),
    keeping only pairs at or above `threshold`. Returns (speaker -> name, one report entry per person)."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    names, labels = list(people), list(speakers)
    scores = np.full((len(names), len(labels)), np.nan)
    for i, n in enumerate(names):
        for j, s in enumerate(labels):
            value = cosine(people[n], speakers[s]) if speakers[s] is not None else None
            scores[i, j] = np.nan if value is None else value
    gain = np.where(np.nan_to_num(scores, nan=-1.0) >= threshold, np.nan_to_num(scores, nan=0.0), 0.0)
    rows, cols = linear_sum_assignment(-gain) if gain.size else ([], [])
    chosen = {names[r]: labels[c] for r, c in zip(rows, cols) if gain[r, c] > 0}
    report = []
    for i, name in enumerate(names):
        row = scores[i] if labels else np.array([])
        finite = [(float(v), labels[j]) for j, v in enumerate(row) if np.isfinite(v)]
        best_score, best_speaker = max(finite) if finite else (None, None)
        entry = {
            "name": name,
            "best_score": None if best_score is None else round(best_score, 4),
            "best_speaker": best_speaker,
            "speaker": chosen.get(name),
            "scores": {label: round(score, 4) for score, label in finite},
        }
        if name in chosen:
            entry["score"] = round(float(scores[i, labels.index(chosen[name])]), 4)
        elif best_score is None:
            entry["reason"] = "no diarized speaker to compare with"
        elif best_score < threshold:
            entry["reason"] = f"best score {best_score:.3f} ({best_speaker}) is below the threshold {threshold:g}"
        else:
            entry["reason"] = f"best score {best_score:.3f} ({best_speaker}) went to a better-matching person"
        report.append(entry)
    return {speaker: name for name, speaker in chosen.items()}, report


def naming_note(entry: dict, threshold: float) -> str:
    """One line on how an enrolled person fared, for the end of the run (what --speaker-threshold is tuned by)."""
    if entry.get("speaker"):
        return f"{entry['name']} = {entry['speaker']} (score {entry['score']:.3f}, threshold {threshold:g})"
    return f"{entry['name']} not named: {entry['reason']}"


# ---- the stage -----------------------------------------------------------------------------------------------
def speaker_hints(options: dict) -> dict[str, int]:
    """The pipeline's min_speakers/max_speakers keywords from the job's options (absent ones left out)."""
    hints = {k: int(options[k]) for k in ("min_speakers", "max_speakers") if options.get(k) is not None}
    if hints.get("min_speakers", 1) < 1 or hints.get("min_speakers", 0) > hints.get("max_speakers", 1 << 30):
        raise StageFailure(
            f"speaker hints min {hints.get('min_speakers')} / max {hints.get('max_speakers')}: "
            "need 1 <= min_speakers <= max_speakers"
        )
    return hints


def diarize(pipeline, audio, hints: dict[str, int]):
    """(turns in clip seconds, speaker -> centroid embedding or None) for one clip."""
    import numpy as np
    import torch

    output = pipeline({"waveform": torch.from_numpy(audio)[None], "sample_rate": SAMPLE_RATE}, **hints)
    annotation = output.speaker_diarization
    turns = [
        (float(seg.start), float(seg.end), str(label)) for seg, _, label in annotation.itertracks(yield_label=True)
    ]
    vectors = getattr(output, "speaker_embeddings", None)
    centroids = {}
    for i, label in enumerate(annotation.labels()):
        vector = None if vectors is None or i >= len(vectors) else np.asarray(vectors[i], dtype=float)
        centroids[str(label)] = vector.tolist() if vector is not None and np.all(np.isfinite(vector)) else None
    return turns, centroids


class Diarizer:
    """The loaded pipeline and the enrolment embeddings, serving one job at a time (what the stage runs per job;
    scripts/bench_speakers.py times it against bare whisperX in one process)."""

    def __init__(self, spec: dict, events: Events) -> None:
        self.spec, self.events = spec, events
        self.pipeline = load_pipeline(spec, events)
        self.enrolment = Enrolment(embedding_inference(self.pipeline, Path(spec["path"])), spec.get("commit"))

    def __call__(self, job: dict) -> dict:
        spec, options = self.spec, job.get("diarize") or {}
        threshold = float(options.get("speaker_threshold", DEFAULT_THRESHOLD))
        hints = speaker_hints(options)
        doc = read_transcript(Path(job["inputs"]["transcript"]))
        people, enrolment_info = {}, None
        if options.get("speakers_dir"):  # first: a bad sample fails the job before minutes of diarization
            cache_file = Path(options["enrolment_cache"]) if options.get("enrolment_cache") else None
            people, enrolment_info = self.enrolment.people(Path(options["speakers_dir"]), cache_file)
        audio = decode_audio(Path(job["inputs"]["audio"]))
        t0 = time.monotonic()
        turns, centroids = diarize(self.pipeline, audio, hints)
        seconds = time.monotonic() - t0
        self.events.progress(job["id"], len(audio) / SAMPLE_RATE)
        names, people_report = name_speakers(people, centroids, threshold) if people else ({}, [])
        offset = doc["clip"]["start"]
        media_turns = [(round(a + offset, 3), round(b + offset, 3), s) for a, b, s in turns]
        label_transcript(doc, media_turns, names)
        model = {"key": spec["key"], "commit": spec.get("commit")}
        doc.update(stage=NAME, diarization={**model, "speakers": [names.get(s, s) for s in centroids]})
        write_json(Path(job["outputs"]["transcript"]), doc)
        talk = {s: 0.0 for s in centroids}
        for a, b, s in turns:
            talk[s] += b - a
        report = {
            "kind": "offline-speech/speakers",
            "schema": 1,
            "job": job["id"],
            "threshold": threshold,
            "model": model,
            "speakers": [
                {"label": s, "name": names.get(s, s), "seconds": round(talk[s], 3), "embedding": centroids[s]}
                for s in centroids
            ],
            "turns": [{"start": a, "end": b, "speaker": names.get(s, s)} for a, b, s in media_turns],
            "enrolled": people_report,
            "enrolment": enrolment_info,
        }
        write_json(Path(job["outputs"]["speakers"]), report)
        named = ", ".join(f"{s}={n}" for s, n in names.items()) or "none named"
        self.events.log(
            job["id"],
            f"{len(centroids)} speakers ({named}) in {len(turns)} turns; diarized "
            f"{len(audio) / SAMPLE_RATE:.1f} s of audio in {seconds:.2f} s",
        )
        notes = [naming_note(entry, threshold) for entry in people_report]
        for note in notes:
            self.events.log(job["id"], note)
        return {
            "speakers": len(centroids),
            "named": len(names),
            "diarize_seconds": round(seconds, 3),
            "enrolment_seconds": None if enrolment_info is None else enrolment_info["seconds"],
            "notes": notes,
        }


def run(request: dict, events: Events) -> None:
    for_each_job(request, events, Diarizer(request["models"]["diarization"], events))


if __name__ == "__main__":
    main(run)
