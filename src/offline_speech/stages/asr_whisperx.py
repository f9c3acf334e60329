"""asr on the whisperx backend: CTranslate2 Whisper (faster-whisper) with VAD and batched decoding.

This is whisperx's transcription design (VAD cuts the audio into chunks of at most 30 s, the chunks are decoded
in batches without conditioning on previous text) through faster-whisper's BatchedInferencePipeline, whose
Silero VAD ships inside the wheel as ONNX. It needs neither torch nor pyannote, so the stage starts in about
half a second instead of the seven that importing whisperx.asr costs; word timestamps come from the align
stage (whisperx.alignment). Runs in venv/whisperx. The model is loaded once for every job of the request.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..util import usable_cpus, write_json
from .audio import read_wav, seconds
from .base import Events, StageFailure, for_each_job, main
from .words import sentences, transcript

NAME = "asr"
BEAM_SIZE = 5
BATCH_SIZE = {"cuda": 16, "cpu": 8}  # 30 s windows decoded at once


def choose_device(ctranslate2) -> tuple[str, str]:
    """(device, compute_type): CUDA with float16 when a GPU is visible, else CPU with int8."""
    if ctranslate2.get_cuda_device_count() > 0:
        supported = ctranslate2.get_supported_compute_types("cuda")
        return "cuda", "float16" if "float16" in supported else "float32"
    supported = ctranslate2.get_supported_compute_types("cpu")
    return "cpu", "int8" if "int8" in supported else "float32"


MAX_WORKERS = 8  # jobs decoded at once: each holds its own activations (a batch of 30 s windows)


def parallelism(device: str, jobs: int, cores: int) -> tuple[int, int]:
    """(jobs decoded at once, threads each). One job uses every core. Several jobs on a CPU decode side by side
    in CTranslate2 workers that share the loaded weights (no extra memory for the model): beam search leaves
    cores idle between matrix products, so more workers than cores still pays, and one worker per job avoids a
    last job decoding alone on one thread. Measured on 2 cores, five 75 s transcriptions with tiny.en:
    1 worker x 2 threads 15.4 s, 2 x 1 10.9 s, 4 x 1 11.5 s, 5 x 1 9.8 s."""
    if device != "cpu" or jobs <= 1:
        return 1, cores
    workers = min(jobs, MAX_WORKERS)
    return workers, max(1, cores // workers)


def run(request: dict, events: Events) -> None:
    import ctranslate2
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    spec = request["models"]["asr"]
    device, compute_type = choose_device(ctranslate2)
    workers, threads = parallelism(device, len(request["jobs"]), usable_cpus())
    started = time.monotonic()
    try:
        model = WhisperModel(
            spec["path"],
            device=device,
            compute_type=compute_type,
            cpu_threads=threads,
            num_workers=workers,
            local_files_only=True,
        )
    except Exception as exc:  # one line for every job, the traceback in the logs
        raise StageFailure(f"could not load {spec['key']} from {spec['path']}: {exc}") from exc
    events.model_loaded(
        spec["key"], spec["commit"], started, device=device, compute_type=compute_type, threads=threads, workers=workers
    )
    multilingual = model.model.is_multilingual
    batch_size = BATCH_SIZE.get(device, BATCH_SIZE["cpu"])

    def work(job: dict) -> dict:
        offset = job["job"]["clip"]["start"]
        audio = read_wav(Path(job["inputs"]["audio"]))
        requested = job["job"]["source_language"]
        warnings: list[str] = []
        if not multilingual:
            if requested not in ("auto", "en"):
                raise StageFailure(f"{spec['key']} is English-only and the job's language is {requested}")
            language = "en"
        else:
            language = None if requested == "auto" else requested
        events.log(
            job["id"],
            f"transcribing {seconds(len(audio)):.3f} s on {device}/{compute_type}, batch {batch_size}, "
            f"language {language or 'auto-detect'}",
        )
        t0, began = time.monotonic(), time.time()
        pipeline = BatchedInferencePipeline(model)  # per job: it keeps word-timing state while decoding
        segments_iter, info = pipeline.transcribe(
            audio,
            language=language,
            batch_size=batch_size,
            beam_size=BEAM_SIZE,
            vad_filter=True,
            without_timestamps=True,
            word_timestamps=True,
            condition_on_previous_text=False,
        )
        segments = []
        for chunk in segments_iter:
            words = [(w.word, w.start, w.end, w.probability) for w in chunk.words or []]
            segments.extend(sentences(words, offset, job["job"]["clip"]["end"]))
            events.progress(job["id"], chunk.end)
        if not segments:
            warnings.append("no speech found in the clip")
        detected = info.language
        probability = round(float(info.language_probability), 4) if language is None else None
        if language is None:
            events.log(job["id"], f"detected language {detected} (p={probability})")
        elapsed = time.monotonic() - t0
        events.log(
            job["id"],
            (
                f"{len(segments)} segments in {elapsed:.2f} s "
                f"(real-time factor {elapsed / max(seconds(len(audio)), 1e-9):.3f})"
            ),
        )
        write_json(
            Path(job["outputs"]["transcript"]),
            transcript(job, detected, probability, spec, segments, warnings, "whisperx"),
        )
        return {
            "language": detected,
            "segments": len(segments),
            "seconds": round(elapsed, 3),
            "transcribed": [round(began, 3), round(time.time(), 3)],  # wall clock: jobs transcribe side by side
            "warnings": warnings,
        }

    for_each_job(request, events, work, workers=workers)


if __name__ == "__main__":
    main(run)
