"""asr on the MLX backend (Apple Silicon; also runs on a Linux CPU through mlx[cpu], slowly).

The model is loaded once with mlx_whisper.load_models.load_model from its snapshot in the project cache (never
the package's default repo, never a download), and every job of the request is transcribed with it. fp16 where
the hardware runs it (Metal), float32 on CPU; one process never mixes the two (mlx-whisper caches one model per
process whatever the dtype). The output is the same transcript document as the whisperx backend's, so align and
every later stage run unchanged. Runs in venv/mlx.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..decoding import ignored_by
from ..util import write_json
from .audio import read_wav, seconds
from .base import Events, StageFailure, for_each_job, main
from .words import sentences, transcript

NAME = "asr"


def use_fp16(mx) -> bool:
    """Half precision only on a Metal GPU; MLX's CPU path runs float32."""
    try:
        return bool(mx.metal.is_available())
    except AttributeError:
        return False


def run(request: dict, events: Events) -> None:
    import mlx.core as mx
    import mlx_whisper
    from mlx_whisper.load_models import load_model
    from mlx_whisper.transcribe import ModelHolder

    spec = request["models"]["asr"]
    fp16 = use_fp16(mx)
    dtype = mx.float16 if fp16 else mx.float32
    started = time.monotonic()
    try:
        model = load_model(spec["path"], dtype=dtype)
    except Exception as exc:
        raise StageFailure(f"could not load {spec['key']} from {spec['path']}: {exc}") from exc
    # mlx_whisper.transcribe() takes its model from this holder: hand it the one loaded above.
    ModelHolder.model, ModelHolder.model_path = model, spec["path"]
    device = "gpu" if fp16 else "cpu"
    events.model_loaded(spec["key"], spec["commit"], started, device=device, fp16=fp16)

    def work(job: dict) -> dict:
        clip = job["job"]["clip"]
        audio = read_wav(Path(job["inputs"]["audio"]))
        requested = job["job"]["source_language"]
        if not model.is_multilingual and requested not in ("auto", "en"):
            raise StageFailure(f"{spec['key']} is English-only and the job's language is {requested}")
        language = "en" if not model.is_multilingual else (None if requested == "auto" else requested)
        events.log(
            job["id"],
            f"transcribing {seconds(len(audio)):.3f} s with MLX on {device} "
            f"({'fp16' if fp16 else 'fp32'}), language {language or 'auto-detect'}",
        )
        decoding = job["job"].get("decoding") or {}
        if ignored := ignored_by("mlx", decoding):
            events.log(job["id"], f"the mlx backend ignores {', '.join(ignored)}")
        extra = {"temperature": tuple(decoding["temperature"])} if "temperature" in decoding else {}
        t0 = time.monotonic()
        result = mlx_whisper.transcribe(
            audio,
            path_or_hf_repo=spec["path"],
            fp16=fp16,
            language=language,
            word_timestamps=True,
            condition_on_previous_text=decoding.get("condition_on_previous_text", False),
            initial_prompt=decoding.get("initial_prompt"),
            verbose=None,
            **extra,
        )
        words = [
            (w["word"], w["start"], w["end"], w.get("probability", 0.0))
            for seg in result["segments"]
            for w in seg.get("words", [])
        ]
        segments = sentences(words, clip["start"], clip["end"])
        if segments:
            events.progress(job["id"], segments[-1]["end"] - clip["start"])
        warnings = [] if segments else ["no speech found in the clip"]
        elapsed = time.monotonic() - t0
        events.log(
            job["id"],
            f"{len(segments)} segments in {elapsed:.2f} s "
            f"(real-time factor {elapsed / max(seconds(len(audio)), 1e-9):.3f})",
        )
        doc = transcript(job, result["language"], None, spec, segments, warnings, "mlx")
        write_json(Path(job["outputs"]["transcript"]), doc)
        return {
            "language": result["language"],
            "segments": len(segments),
            "seconds": round(elapsed, 3),
            "warnings": warnings,
        }

    for_each_job(request, events, work)


if __name__ == "__main__":
    main(run)
