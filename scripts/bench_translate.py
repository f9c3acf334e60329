"""Translation benchmark: prints figures measured in one run, with the translate stage's own engines.

    venv/core/bin/python scripts/bench_translate.py [--segments 240] [--reps 3] [--quick]
    venv/core/bin/python scripts/bench_translate.py --nllb DIR [--ct2 DIR]     # a real NLLB snapshot instead

1. CTranslate2 int8 NLLB ÷ transformers NLLB: segments per second of each on the same segments, same beam size
   and batch size as the stage, and the speed ratio; whether both give identical output (the tiny model's ratio
   measures per-call overhead; the >= 3x target is judged at real size, 3.).
2. Segments per second of each route the stage takes: NLLB on CTranslate2, NLLB on transformers, and IndicTrans2
   (en-indic, indic-en, indic-indic) through IndicProcessor.
3. The same speed ratio at real size: a model shaped exactly like facebook/nllb-200-distilled-600M
   (615 M parameters, 256k vocabulary; random weights, since the hub is not reachable here) converted with
   offline_speech.provisioning.convert, both engines decoding a fixed number of tokens per segment (--tokens,
   forced with min = max length) at beam 4, batch 16, on every core. The tiny model's figures measure per-call
   overhead; this one measures the arithmetic that dominates a real run.
By default the models are the tiny ones the tests train (tests/support/tiny_translators.py: a tiny NLLB with its own
sentencepiece tokenizer, a tiny IndicTrans2-shaped model with its own remote code), so identical output must hold
exactly; the NLLB is converted with the same code as `cache-models.sh --nllb` (offline_speech.provisioning.convert).
With --nllb a real snapshot (e.g. facebook/nllb-200-distilled-600M from the project cache) is timed instead
(converted to a temporary folder unless --ct2 names a conversion). Needs venv/translation (./venv-setup
translation). Each engine is warmed up once, then timed over --reps passes; the median pass counts.
--quick (what tests/test_benchmarks.py runs): every figure with 16 segments, one pass, and 3. on a small shape
(QUICK_SHAPE) instead of the 600M one; it proves the benchmark runs, not the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]  # the package and tests/support (see its __init__)

from offline_speech.settings import backend_python  # noqa: E402 - after the sys.path setup
from support.builders import tiny_translator  # noqa: E402 - after the sys.path setup
from support.shell import scrubbed_env  # noqa: E402 - after the sys.path setup

TRANSLATION_PY = backend_python("translation")
# facebook/nllb-200-distilled-600M's shape (615 M parameters), and the small one --quick times instead
REAL_SHAPE = dict(
    vocab_size=256206,
    d_model=1024,
    encoder_layers=12,
    decoder_layers=12,
    encoder_attention_heads=16,
    decoder_attention_heads=16,
    encoder_ffn_dim=4096,
    decoder_ffn_dim=4096,
)
QUICK_SHAPE = dict(
    vocab_size=8192,
    d_model=256,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=1024,
    decoder_ffn_dim=1024,
)

ENGLISH = [
    "Good morning everyone.",
    "The meeting starts at ten.",
    "Please close the door.",
    "We will eat rice today.",
    "The river is very wide.",
    "My brother reads a book.",
    "It is raining in the city.",
    "Thank you for coming.",
]
FRENCH = [
    "Bonjour à tous.",
    "La réunion commence à dix heures.",
    "Fermez la porte, s'il vous plaît.",
    "Nous mangerons du riz aujourd'hui.",
    "La rivière est très large.",
    "Mon frère lit un livre.",
    "Il pleut en ville.",
    "Merci d'être venus.",
]
HINDI = [
    "सुप्रभात सभी को।",
    "बैठक दस बजे शुरू होती है।",
    "कृपया दरवाज़ा बंद करें।",
    "हम आज चावल खाएंगे।",
    "नदी बहुत चौड़ी है।",
    "मेरा भाई किताब पढ़ता है।",
    "शहर में बारिश हो रही है।",
    "आने के लिए धन्यवाद।",
]
TAMIL = [
    "அனைவருக்கும் காலை வணக்கம்.",
    "கூட்டம் பத்து மணிக்கு தொடங்குகிறது.",
    "தயவுசெய்து கதவை மூடுங்கள்.",
    "நாங்கள் இன்று சோறு சாப்பிடுவோம்.",
    "ஆறு மிகவும் அகலமானது.",
    "என் சகோதரர் ஒரு புத்தகம் படிக்கிறார்.",
    "நகரத்தில் மழை பெய்கிறது.",
    "வந்ததற்கு நன்றி.",
]

# Runs in venv/translation: time each engine the translate stage uses.
TIMER = r"""
import json, statistics, sys, time
sys.path.insert(0, sys.argv[2])
from offline_speech.stages import translate as stage
jobs = json.loads(open(sys.argv[1], encoding="utf-8").read())
report = []
for job in jobs:
    t0 = time.monotonic()
    engine = stage.load(job["spec"])
    load = time.monotonic() - t0
    size = engine.batch
    texts = job["texts"]
    def one_pass():
        out = []
        for i in range(0, len(texts), size):   # every segment translated, no deduplication: a speed figure
            out += engine.translate(texts[i:i + size], job["src"], job["tgt"])
        return out
    output = one_pass()   # warm-up
    walls = []
    for _ in range(job["reps"]):
        t0 = time.monotonic()
        output = one_pass()
        walls.append(time.monotonic() - t0)
    engine.close()
    wall = statistics.median(walls)
    report.append({"name": job["name"], "engine": engine.engine, "segments": len(texts), "wall": wall,
                   "per_second": len(texts) / wall, "load": load, "output": output})
print(json.dumps(report, ensure_ascii=False))
"""


def convert(source: Path, dest: Path) -> None:
    env = scrubbed_env(PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1")
    subprocess.run(
        [str(TRANSLATION_PY), "-m", "offline_speech.provisioning.convert", str(source), str(dest)], check=True, env=env
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, help="segments per timed pass (default 240)")
    parser.add_argument("--reps", type=int, help="timed passes (default 3)")
    parser.add_argument("--nllb", type=Path, help="a real NLLB snapshot folder to time instead of the tiny model")
    parser.add_argument("--ct2", type=Path, help="its CTranslate2 conversion (default: converted now to a temp dir)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 16 segments, one pass, and the real-size "
        "comparison on a small shape (8 segments x 8 tokens) instead of the 600M one",
    )
    parser.add_argument("--real-segments", type=int, help="segments timed at real size (default 32)")
    parser.add_argument("--tokens", type=int, help="tokens decoded per segment at real size (default 20)")
    args = parser.parse_args()
    quick = {"segments": 16, "reps": 1, "real_segments": 8, "tokens": 8}
    full = {"segments": 240, "reps": 3, "real_segments": 32, "tokens": 20}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    shape = QUICK_SHAPE if args.quick else REAL_SHAPE
    if not TRANSLATION_PY.exists():
        print("venv/translation is missing: ./venv-setup translation", file=sys.stderr)
        return 2
    n = args.segments
    with tempfile.TemporaryDirectory(prefix="bench-translate-") as tmp:
        work = Path(tmp)
        english = [ENGLISH[i % len(ENGLISH)] for i in range(n)]
        expected = [FRENCH[i % len(FRENCH)] for i in range(n)]
        jobs = []
        if args.nllb:
            nllb, exact = args.nllb, False
        else:
            nllb, exact = work / "nllb", True
            nllb_pairs = [
                {"src_lang": "eng_Latn", "tgt_lang": "fra_Latn", "src": e, "tgt": f} for e, f in zip(ENGLISH, FRENCH)
            ]
            pairs = [
                {"src_lang": "eng_Latn", "tgt_lang": "hin_Deva", "src": e, "tgt": h} for e, h in zip(ENGLISH, HINDI)
            ]
            pairs += [
                {"src_lang": "hin_Deva", "tgt_lang": "eng_Latn", "src": h, "tgt": e} for h, e in zip(HINDI, ENGLISH)
            ]
            pairs += [
                {"src_lang": "hin_Deva", "tgt_lang": "tam_Taml", "src": h, "tgt": t} for h, t in zip(HINDI, TAMIL)
            ]
            with ThreadPoolExecutor(2) as pool:  # each build trains on one thread: build both at once
                builds = [
                    pool.submit(tiny_translator, "nllb", nllb, nllb_pairs),
                    pool.submit(tiny_translator, "indictrans2", work / "it2", pairs),
                ]
                for build in builds:
                    build.result()
            it2 = {
                "kind": "indictrans2",
                "path": str(work / "it2"),
                "trust_remote_code": True,
                "remote_code_allowed": True,
            }  # the tiny model's code is tests/support's own: allowed for this run
            hindi = [HINDI[i % len(HINDI)] for i in range(n)]
            jobs += [
                {
                    "name": "indictrans2 en-indic (en->hi)",
                    "spec": it2,
                    "texts": english,
                    "src": "eng_Latn",
                    "tgt": "hin_Deva",
                },
                {
                    "name": "indictrans2 indic-en (hi->en)",
                    "spec": it2,
                    "texts": hindi,
                    "src": "hin_Deva",
                    "tgt": "eng_Latn",
                },
                {
                    "name": "indictrans2 indic-indic (hi->ta)",
                    "spec": it2,
                    "texts": hindi,
                    "src": "hin_Deva",
                    "tgt": "tam_Taml",
                },
            ]
        ct2 = args.ct2 or work / "nllb-ct2"
        if not args.ct2:
            convert(nllb, ct2)
        jobs = [
            {
                "name": "nllb ctranslate2",
                "spec": {"kind": "nllb", "path": str(nllb), "ct2": str(ct2)},
                "texts": english,
                "src": "eng_Latn",
                "tgt": "fra_Latn",
            },
            {
                "name": "nllb transformers",
                "spec": {"kind": "nllb", "path": str(nllb), "ct2": None},
                "texts": english,
                "src": "eng_Latn",
                "tgt": "fra_Latn",
            },
        ] + jobs
        for job in jobs:
            job["reps"] = args.reps
        (work / "jobs.json").write_text(json.dumps(jobs, ensure_ascii=False), encoding="utf-8")
        env = scrubbed_env(HF_HUB_OFFLINE="1", HF_HOME=str(work / "hf-home"), TOKENIZERS_PARALLELISM="false")
        proc = subprocess.run(
            [str(TRANSLATION_PY), "-c", TIMER, str(work / "jobs.json"), str(ROOT / "src")],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        report = {r["name"]: r for r in json.loads(proc.stdout.strip().splitlines()[-1])}
        real = None if args.nllb else real_size(work, nllb, shape, args.real_segments, args.tokens)
    fast, slow = report["nllb ctranslate2"], report["nllb transformers"]
    print(
        f"model: {'tiny NLLB trained by tests/support/tiny_translators.py' if exact else nllb}; {n} segments per pass, "
        f"median of {args.reps} passes, {os.cpu_count()} CPUs"
    )
    for r in report.values():
        print(
            f"  {r['name']:<34} {r['engine']:<28} {r['per_second']:8.1f} segments/s  "
            f"({r['wall']:.2f} s; load {r['load']:.2f} s)"
        )
    ratio = fast["per_second"] / slow["per_second"]
    if exact:
        print(
            f"ctranslate2 int8 / transformers NLLB speed on the tiny model: {ratio:.2f}x (per-call overhead dominates "
            f"at this size; the >= 3x target is judged at real size below)"
        )
    else:
        print(
            f"ctranslate2 int8 / transformers NLLB speed: {ratio:.2f}x (target >= 3x) "
            f"{'OK' if ratio >= 3 else 'BELOW TARGET'}"
        )
    same = fast["output"] == slow["output"]
    print(
        f"identical output: {'yes' if same else 'NO'}"
        + (f"; equal to the trained sentences: {fast['output'] == expected}" if exact else "")
    )
    if exact:
        for name in report:
            if name.startswith("indictrans2"):
                print(f"  {name}: reproduces the trained sentences: {_check(report[name]['output'], name)}")
    if real:
        size = (
            "real size (nllb-200-distilled-600M shape"
            if shape is REAL_SHAPE
            else "--quick: a small shape (not real size"
        )
        print(
            f"{size}, {real['params'] / 1e6:.0f} M parameters, random weights; "
            f"{real['segments']} segments x {real['tokens']} tokens, beam 4, batch 16):"
        )
        print(
            f"  ctranslate2 int8 {real['ct2']:.2f} segments/s, transformers float32 {real['torch']:.2f} segments/s: "
            f"{real['ct2'] / real['torch']:.2f}x (target >= 3x) "
            f"{'OK' if real['ct2'] >= 3 * real['torch'] else 'BELOW TARGET'}; "
            f"weights {real['bytes_fp32'] / 1e9:.2f} GB -> {real['bytes_ct2'] / 1e9:.2f} GB, "
            f"converted in {real['convert']:.1f} s"
        )
    return 0


# Runs in venv/translation: a model of the given shape (NLLB-600M's or --quick's) with random weights and the tiny
# model's tokenizer.
REAL_BUILD = r"""
import json, shutil, sys, torch
from transformers import M2M100Config, M2M100ForConditionalGeneration
torch.manual_seed(0)
config = M2M100Config(**json.loads(sys.argv[3]), max_position_embeddings=1024,
                      scale_embedding=True, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
                      activation_function="relu", tie_word_embeddings=True)
model = M2M100ForConditionalGeneration(config)
model.save_pretrained(sys.argv[2], safe_serialization=True)
for name in ("sentencepiece.bpe.model", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"):
    shutil.copy(f"{sys.argv[1]}/{name}", sys.argv[2])
print(sum(p.numel() for p in model.parameters()))
"""

# Runs in venv/translation: both engines decode exactly `tokens` tokens per segment (min = max length).
REAL_TIME = r"""
import json, os, sys, time, torch, ctranslate2
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
path, ct2_dir, n, tokens, texts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
cpus = len(os.sched_getaffinity(0))
texts = [texts[i % len(texts)] for i in range(n)]
tok = AutoTokenizer.from_pretrained(path, src_lang="eng_Latn")
pieces = [tok.convert_ids_to_tokens(tok.encode(t)) for t in texts]
def timed(run):
    run(0)   # warm-up batch
    t0 = time.monotonic()
    for i in range(0, n, 16):
        run(i)
    return n / (time.monotonic() - t0)
translator = ctranslate2.Translator(ct2_dir, device="cpu", compute_type="int8", intra_threads=cpus)
ct2 = timed(lambda i: translator.translate_batch(pieces[i:i + 16], target_prefix=[["fra_Latn"]] * len(pieces[i:i + 16]),
                                               beam_size=4, min_decoding_length=tokens, max_decoding_length=tokens))
del translator
torch.set_num_threads(cpus)
model = AutoModelForSeq2SeqLM.from_pretrained(path).eval()
bos = tok.convert_tokens_to_ids("fra_Latn")
def generate(i):
    with torch.inference_mode():
        model.generate(**tok(texts[i:i + 16], return_tensors="pt", padding=True), forced_bos_token_id=bos, num_beams=4,
                       min_new_tokens=tokens, max_new_tokens=tokens)
print(json.dumps({"ct2": ct2, "torch": timed(generate)}))
"""


def real_size(work: Path, tiny_nllb: Path, shape: dict, segments: int, tokens: int) -> dict:
    """Speeds of both NLLB engines on a model of `shape` (REAL_SHAPE: see the module docstring)."""
    big, big_ct2 = work / "nllb-600M-shape", work / "nllb-600M-shape-ct2"
    env = scrubbed_env(HF_HUB_OFFLINE="1", HF_HOME=str(work / "hf-home"))
    built = subprocess.run(
        [str(TRANSLATION_PY), "-c", REAL_BUILD, str(tiny_nllb), str(big), json.dumps(shape)],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    started = time.monotonic()
    convert(big, big_ct2)
    seconds = time.monotonic() - started
    timed = subprocess.run(
        [str(TRANSLATION_PY), "-c", REAL_TIME, str(big), str(big_ct2), str(segments), str(tokens), json.dumps(ENGLISH)],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    size = lambda d: sum(p.stat().st_size for p in d.iterdir() if p.is_file())  # noqa: E731 - a local one-line helper
    return {
        **json.loads(timed.stdout.strip().splitlines()[-1]),
        "params": int(built.stdout.split()[-1]),
        "segments": segments,
        "tokens": tokens,
        "convert": seconds,
        "bytes_fp32": size(big),
        "bytes_ct2": size(big_ct2),
    }


def _check(output: list[str], name: str) -> bool:
    target = {"en->hi": HINDI, "hi->en": ENGLISH, "hi->ta": TAMIL}[name.split("(")[1].rstrip(")")]
    return all(o == target[i % len(target)] for i, o in enumerate(output))


if __name__ == "__main__":
    sys.exit(main())
