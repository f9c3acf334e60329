"""asr on the whisperx backend: CTranslate2 Whisper (faster-whisper) with VAD and batched decoding.

This is whisperx's transcription design (VAD cuts the audio into chunks of at most 30 s, the chunks are decoded
in batches without conditioning on previous text) through faster-whisper's BatchedInferencePipeline, whose
Silero VAD ships inside the wheel as ONNX. It needs neither torch nor pyannote, so the stage starts in about
half a second instead of the seven that importing whisperx.asr costs; word timestamps come from the align
stage (whisperx.alignment). Runs in venv/whisperx. The model is loaded once for every job of the request.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path

from ..util import usable_cpus, write_json
from .audio import read_wav, seconds
from .base import Events, StageFailure, for_each_job, main
from .words import sentences, transcript

NAME = "asr"
BEAM_SIZE = 5
BATCH_SIZE = {"cuda": 16, "cpu": 8}  # 30 s windows decoded at once


def choose_device(ctranslate2, device: str | None = None, compute_type: str | None = None) -> tuple[str, str]:
    """(device, compute_type): the job's (--device, --compute-type) where it set them, else CUDA with float16 when a
    GPU is visible and CPU with int8 otherwise. StageFailure for CUDA asked on a machine without a GPU, or a compute
    type the device cannot run."""
    gpus = ctranslate2.get_cuda_device_count()
    if device == "cuda" and gpus == 0:
        raise StageFailure("--device cuda, and CTranslate2 sees no CUDA device here: prepare the job with --device cpu")
    device = device or ("cuda" if gpus > 0 else "cpu")
    supported = ctranslate2.get_supported_compute_types(device)
    if compute_type is not None:
        if compute_type not in supported:
            raise StageFailure(
                f"--compute-type {compute_type} does not run on {device} here: {', '.join(sorted(supported))}"
            )
        return device, compute_type
    if device == "cuda":
        return device, "float16" if "float16" in supported else "float32"
    return device, "int8" if "int8" in supported else "float32"


def decoding_options(decoding: dict, numerals: Callable[[], list[int]], batch_size: int) -> dict:
    """BatchedInferencePipeline.transcribe's options for a job: today's (beam 5, VAD, word timestamps, no
    conditioning on previous text) with the job's decoding controls over them."""
    vad = {}
    if "vad_onset" in decoding:
        vad["threshold"] = decoding["vad_onset"]
    if "vad_offset" in decoding:
        vad["neg_threshold"] = decoding["vad_offset"]
    if "chunk_size" in decoding:
        vad["max_speech_duration_s"] = decoding["chunk_size"]
    options = {
        "batch_size": decoding.get("batch_size", batch_size),
        "beam_size": decoding.get("beam_size", BEAM_SIZE),
        "vad_filter": True,
        "vad_parameters": vad or None,
        "without_timestamps": True,
        "word_timestamps": True,
        "condition_on_previous_text": decoding.get("condition_on_previous_text", False),
        "initial_prompt": decoding.get("initial_prompt"),
        "hotwords": decoding.get("hotwords"),
    }
    if "temperature" in decoding:
        options["temperature"] = decoding["temperature"]
    if decoding.get("suppress_numerals"):
        options["suppress_tokens"] = [-1, *numerals()]
    return options


def numeral_tokens(tokenizer) -> list[int]:
    """Every token that writes a digit or a currency/percent sign (whisperX's --suppress_numerals): numbers come out
    spelled, which aligners can time."""
    found = []
    for token_id in range(tokenizer.eot):
        text = tokenizer.decode([token_id]).strip()
        if any(c.isdigit() or c in "%$£€¥" for c in text):
            found.append(token_id)
    return found


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
    device, compute_type = choose_device(ctranslate2, spec.get("device"), spec.get("compute_type"))
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

    @functools.cache
    def numerals() -> list[int]:  # computed once per process, when a job asks for --suppress-numerals
        from faster_whisper.tokenizer import Tokenizer

        return numeral_tokens(Tokenizer(model.hf_tokenizer, multilingual))

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
        decoding = job["job"].get("decoding") or {}
        options = decoding_options(decoding, numerals, batch_size)
        if decoding:
            events.log(job["id"], f"decoding controls: {json.dumps(decoding, ensure_ascii=False)}")
        t0, began = time.monotonic(), time.time()
        pipeline = BatchedInferencePipeline(model)  # per job: it keeps word-timing state while decoding
        segments_iter, info = pipeline.transcribe(audio, language=language, **options)
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
