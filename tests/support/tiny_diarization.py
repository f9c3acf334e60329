"""Diarization test material: community-1-shaped repos, a hub-layout cache to put them in, an espeak-ng
conversation of a male and a female voice with its reference turns, and a diarization error rate.

A repo holds the five files of `pyannote/speaker-diarization-community-1` (`config.yaml`,
`segmentation/pytorch_model.bin`, `embedding/pytorch_model.bin`, `plda/xvec_transform.npz`, `plda/plda.npz`) and
loads through the real `pyannote.audio.Pipeline.from_pretrained`. The builders run in venv/whisperx, by path:

    venv/whisperx/bin/python tests/support/tiny_diarization.py DEST                    # random weights, ~29 MB
    venv/whisperx/bin/python tests/support/tiny_diarization.py DEST --real RESEMBLYZER_PT

Random: a powerset PyanNet segmentation, a WeSpeaker ResNet34 embedding and a PLDA, all random: real plumbing,
meaningless speakers. Real: whisperx's wheel ships a trained pyannote segmentation model (`whisperx/assets/
pytorch_model.bin`, multi-label, 3 speakers, 5 s chunks) and PyPI `resemblyzer==0.1.4` ships a trained 256-d
speaker encoder (`resemblyzer/pretrained.pt`, Apache-2.0), read with `torch.load(weights_only=True)` without
importing the package (its imports need webrtcvad and librosa) and wrapped by resemblyzer_embedding.py, whose
class a process loading the repo imports from the project root (run_stage_process starts them as the runner does).
Everything else here is standard library, for the tests and benchmarks in the core venv.
"""

from __future__ import annotations

import array
import itertools
import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPO = "pyannote/speaker-diarization-community-1"
COMMIT = "c" * 40
RESEMBLYZER = "resemblyzer==0.1.4"
WEIGHTS_DIR = ROOT / ".cache" / "test-weights" / "resemblyzer-0.1.4"  # git-ignored; pip fills it once
RATE = 16000
GAP = 0.5
MALE, FEMALE = "en-us", "en-us+f3"  # two espeak male voices overlap, en-gb+f3 = en-gb+m3 here (FACTS §5)
CONVERSATION = [
    (MALE, "Good morning, thank you all for joining the budget meeting today."),
    (FEMALE, "Thanks. I reviewed the numbers for the third quarter last night."),
    (MALE, "Great, what did you find about the travel expenses?"),
    (FEMALE, "They went up by twelve percent, mostly because of the conference in Berlin."),
    (MALE, "That seems reasonable. Can we reduce it next quarter?"),
    (FEMALE, "Yes, I think we can move two of the trips to video calls."),
]
ENROL = {
    MALE: [
        "The quick brown fox jumps over the lazy dog near the river bank.",
        "Please remember to send the signed contract before Friday afternoon.",
    ],
    FEMALE: [
        "My favourite season is autumn because the leaves turn red and gold.",
        "We should book the train tickets early to get a cheaper fare.",
    ],
}
CONFIG = """\
version: 4.0.0
pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    clustering: {clustering}
    embedding: $model/embedding
    embedding_batch_size: 32
    embedding_exclude_overlap: true
    plda: $model/plda
    segmentation: $model/segmentation
    segmentation_batch_size: 32
params:
  clustering:
{clustering_params}
  segmentation:
    min_duration_off: 0.0
{segmentation_extra}"""


# ---- audio ---------------------------------------------------------------------------------------------------
def speak(voice: str, text: str) -> bytes:
    """16 kHz mono s16le samples of espeak-ng reading `text`."""
    raw = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True).stdout
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "-", "-ac", "1", "-ar", str(RATE), "-f", "s16le", "-"],
        input=raw,
        capture_output=True,
        check=True,
    ).stdout


def write_wav(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def speech_span(pcm: bytes) -> tuple[float, float]:
    """First and last sample above -40 dBFS, in seconds: espeak pads its clips with silence."""
    loud = [i for i, v in enumerate(array.array("h", pcm)) if abs(v) > 328]
    return loud[0] / RATE, (loud[-1] + 1) / RATE


def conversation(dest: Path, lines=CONVERSATION) -> list[tuple[float, float, str, str]]:
    """A wav of the lines with GAP s of silence around each; (start, end, voice, text) of the speech in each."""
    silence = b"\0\0" * int(GAP * RATE)
    chunks, spans, t = [silence], [], GAP
    for voice, text in lines:
        pcm = speak(voice, text)
        a, b = speech_span(pcm)
        spans.append((round(t + a, 3), round(t + b, 3), voice, text))
        t += len(pcm) / (2 * RATE) + GAP
        chunks += [pcm, silence]
    write_wav(dest, b"".join(chunks))
    return spans


def transcript(path: Path, spans, offset: float, end: float) -> None:
    """An aligned transcript of the spans (words spread evenly over each), in media times (`offset` = clip start)."""
    from offline_speech.schema import TRANSCRIPT_KIND, TRANSCRIPT_SCHEMA
    from offline_speech.util import write_json

    segments = []
    for a, b, _, text in spans:
        words = text.split()
        step = (b - a) / len(words)
        segments.append(
            {
                "start": round(a + offset, 3),
                "end": round(b + offset, 3),
                "text": text,
                "words": [
                    {"word": w, "start": round(a + offset + i * step, 3), "end": round(a + offset + (i + 1) * step, 3)}
                    for i, w in enumerate(words)
                ],
            }
        )
    write_json(
        path,
        {
            "kind": TRANSCRIPT_KIND,
            "schema": TRANSCRIPT_SCHEMA,
            "job": "j",
            "stage": "align",
            "backend": "whisperx",
            "language": "en",
            "language_probability": None,
            "model": {"key": "k", "repo": "r", "commit": None},
            "clip": {"start": offset, "end": offset + end},
            "segments": segments,
            "warnings": [],
        },
    )


def der(reference, hypothesis, step: float = 0.01) -> float:
    """Diarization error rate on 10 ms frames: (missed + false alarm + confusion) / reference speech, under the
    best one-to-one mapping of hypothesis labels to reference labels; no collar. Turns are (start, end, label)."""
    frames = int(max(b for _, b, _ in [*reference, *hypothesis]) / step) + 1

    def active(turns) -> dict[str, list[bool]]:
        out: dict[str, list[bool]] = {}
        for a, b, label in turns:
            on = out.setdefault(label, [False] * frames)
            for i in range(int(a / step), min(frames, int(b / step))):
                on[i] = True
        return out

    ref, hyp = active(reference), active(hypothesis)
    total = sum(map(sum, ref.values()))
    errors = [max(sum(r[i] for r in ref.values()), sum(h[i] for h in hyp.values())) for i in range(frames)]
    best = min(
        sum(errors) - sum(ref[r][i] and hyp[h][i] for r, h in zip(ref, mapping) if h is not None for i in range(frames))
        for mapping in itertools.permutations([*hyp, *[None] * len(ref)], len(ref))
    )
    return best / total


# ---- a hub-layout cache --------------------------------------------------------------------------------------
def place_in_cache(built: Path, cache: Path) -> dict:
    """Put a built repo into `cache` as huggingface_hub lays it out (blobs named by their hub id, snapshot links,
    refs/main); returns the diarize stage's model spec with the lock's file list."""
    from offline_speech.util import git_sha1_file, sha256_file

    repo_dir = cache / "huggingface" / "hub" / ("models--" + REPO.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / COMMIT
    files = []
    for path in sorted(p for p in built.rglob("*") if p.is_file()):
        rel = path.relative_to(built).as_posix()
        kind = "sha256" if path.suffix in (".bin", ".npz") else "git-sha1"  # LFS files vs small text files
        etag = sha256_file(path) if kind == "sha256" else git_sha1_file(path)
        blob = repo_dir / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
        files.append({"path": rel, "size": path.stat().st_size, kind: etag})
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    return {"key": "pyannote-speaker-diarization-community-1", "commit": COMMIT, "path": str(snapshot), "files": files}


def run_stage_process(argv: list[str], cache: Path, timeout: float = 3600) -> subprocess.CompletedProcess:
    """A whisperx-venv process as the runner starts a stage: the offline environment of settings.py, the project root
    as working directory (where the real repo's embedding class, tests.support.resemblyzer_embedding, is found)."""
    from offline_speech.settings import offline_env

    return subprocess.run(argv, capture_output=True, text=True, env=offline_env(cache), cwd=ROOT, timeout=timeout)


def resemblyzer_weights() -> Path:
    """resemblyzer's pretrained.pt from PyPI, installed once without its dependencies into a git-ignored folder."""
    from offline_speech.settings import backend_python

    pt = WEIGHTS_DIR / "resemblyzer" / "pretrained.pt"
    if not pt.is_file():
        proc = subprocess.run(
            [
                str(backend_python("whisperx")),
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-compile",
                "--target",
                str(WEIGHTS_DIR),
                RESEMBLYZER,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0 or not pt.is_file():
            raise RuntimeError(f"pip install {RESEMBLYZER} failed: {proc.stdout}{proc.stderr}")
    return pt


def build_repo(dest: Path, real: bool = False) -> Path:
    """Run this file's builder in venv/whisperx; returns `dest`."""
    from offline_speech.settings import backend_python

    extra = ["--real", str(resemblyzer_weights())] if real else []
    proc = subprocess.run(
        [str(backend_python("whisperx")), str(Path(__file__)), str(dest), *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building the diarization repo failed: {proc.stderr[-2000:]}")
    return dest


# ---- the builders (venv/whisperx) ----------------------------------------------------------------------------
def save_checkpoint(model, specifications, path: Path) -> None:
    """What a pyannote training run saves, minus optimizer state: enough for `Model.from_pretrained`."""
    import lightning
    import torch

    model.specifications = specifications
    model.build()
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)  # records the class by module name: pyannote imports it to load
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


def write_plda(dest: Path, seed: int, dim: int = 256, lda_dim: int = 128) -> None:
    """A random x-vector transform and PLDA of the shapes VBx reads (mean1, mean2, lda; mu, tr, psi)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    dest.mkdir(parents=True, exist_ok=True)
    lda = np.linalg.qr(rng.standard_normal((dim, dim)))[0][:, :lda_dim]
    mean1, mean2, mu = (rng.standard_normal(n) * 0.1 for n in (dim, lda_dim, lda_dim))
    tr, psi = np.linalg.qr(rng.standard_normal((lda_dim, lda_dim)))[0], np.sort(rng.uniform(0.1, 20.0, lda_dim))[::-1]
    np.savez(dest / "xvec_transform.npz", mean1=mean1, mean2=mean2, lda=lda)
    np.savez(dest / "plda.npz", mu=mu, tr=tr, psi=psi)


def build_random(dest: Path, seed: int = 0) -> None:
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(seed)
    save_checkpoint(
        PyanNet(sincnet={"stride": 10}),
        Specifications(
            problem=Problem.MONO_LABEL_CLASSIFICATION,
            resolution=Resolution.FRAME,
            duration=10.0,
            classes=["speaker#1", "speaker#2", "speaker#3"],
            powerset_max_classes=2,
            permutation_invariant=True,
        ),
        dest / "segmentation" / "pytorch_model.bin",
    )
    save_checkpoint(
        WeSpeakerResNet34(),
        Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=10.0),
        dest / "embedding" / "pytorch_model.bin",
    )
    write_plda(dest / "plda", seed)
    (dest / "config.yaml").write_text(
        CONFIG.format(
            clustering="VBxClustering",
            segmentation_extra="",
            clustering_params="    threshold: 0.6\n    Fa: 0.07\n    Fb: 0.8",
        )
    )


def build_real(dest: Path, resemblyzer_pt: Path, seed: int = 0) -> None:
    import torch
    import whisperx
    from pyannote.audio.core.task import Problem, Resolution, Specifications

    sys.path.insert(0, str(ROOT))  # recorded as tests.support.resemblyzer_embedding (see that module)
    from tests.support.resemblyzer_embedding import ResemblyzerEmbedding

    (dest / "segmentation").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(
        Path(whisperx.__file__).parent / "assets" / "pytorch_model.bin", dest / "segmentation" / "pytorch_model.bin"
    )
    model = ResemblyzerEmbedding()
    state = torch.load(resemblyzer_pt, map_location="cpu", weights_only=True)["model_state"]
    model.load_state_dict({k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))}, strict=False)
    save_checkpoint(
        model,
        Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0),
        dest / "embedding" / "pytorch_model.bin",
    )
    write_plda(dest / "plda", seed)
    # No trained PLDA exists for this encoder, and VBx with an untrained one merged both voices: this config clusters
    # with pyannote's agglomerative clustering (unit vectors, distance 0.7 = cosine 0.755; the same espeak voice
    # sits at >= 0.87, the male and the female voice at <= 0.67). The multi-label segmentation needs its threshold.
    (dest / "config.yaml").write_text(
        CONFIG.format(
            clustering="AgglomerativeClustering",
            segmentation_extra="    threshold: 0.5\n",
            clustering_params="    method: centroid\n    min_cluster_size: 3\n    threshold: 0.7",
        )
    )


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--real", type=Path, metavar="RESEMBLYZER_PT", help="resemblyzer's pretrained.pt")
    args = parser.parse_args()
    if args.real:
        build_real(args.dest, args.real)
    else:
        build_random(args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
