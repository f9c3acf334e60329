"""Translation benchmark: prints figures measured in one run, with the translate stage's own engines.

    venv/core/bin/python scripts/bench_translate.py [--segments 240] [--reps 3]
    venv/core/bin/python scripts/bench_translate.py --nllb DIR [--ct2 DIR]     # a real NLLB snapshot instead

1. CTranslate2 int8 NLLB ÷ transformers NLLB: segments per second of each on the same segments, same beam size
   and batch size as the stage, and the speed ratio (target >= 3x); whether both give identical output.
2. Segments per second of each route the stage takes: NLLB on CTranslate2, NLLB on transformers, and IndicTrans2
   (en-indic, indic-en, indic-indic) through IndicProcessor.
By default the models are the tiny ones the tests train (tests/tiny_translators.py: a tiny NLLB with its own
sentencepiece tokenizer, a tiny IndicTrans2-shaped model with its own remote code), so identical output must hold
exactly; the NLLB is converted with the same code as `cache-models.sh --nllb` (offline_speech.derive). With --nllb
a real snapshot (e.g. facebook/nllb-200-distilled-600M from the project cache) is timed instead (converted to a
temporary folder unless --ct2 names a conversion). Needs venv/translation (./venv-setup translation). Each engine is
warmed up once, then timed over --reps passes; the median pass counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRANSLATION_PY = ROOT / "venv" / "translation" / "bin" / "python"

ENGLISH = ["Good morning everyone.", "The meeting starts at ten.", "Please close the door.", "We will eat rice today.",
           "The river is very wide.", "My brother reads a book.", "It is raining in the city.", "Thank you for coming."]
FRENCH = ["Bonjour à tous.", "La réunion commence à dix heures.", "Fermez la porte, s'il vous plaît.",
          "Nous mangerons du riz aujourd'hui.", "La rivière est très large.", "Mon frère lit un livre.",
          "Il pleut en ville.", "Merci d'être venus."]
HINDI = ["सुप्रभात सभी को।", "बैठक दस बजे शुरू होती है।", "कृपया दरवाज़ा बंद करें।", "हम आज चावल खाएंगे।",
         "नदी बहुत चौड़ी है।", "मेरा भाई किताब पढ़ता है।", "शहर में बारिश हो रही है।", "आने के लिए धन्यवाद।"]
TAMIL = ["அனைவருக்கும் காலை வணக்கம்.", "கூட்டம் பத்து மணிக்கு தொடங்குகிறது.", "தயவுசெய்து கதவை மூடுங்கள்.",
         "நாங்கள் இன்று சோறு சாப்பிடுவோம்.", "ஆறு மிகவும் அகலமானது.", "என் சகோதரர் ஒரு புத்தகம் படிக்கிறார்.",
         "நகரத்தில் மழை பெய்கிறது.", "வந்ததற்கு நன்றி."]

# Runs in venv/translation: time each engine the translate stage uses.
TIMER = r'''
import json, statistics, sys, time
sys.path.insert(0, sys.argv[2])
from offline_speech.stages import translate as stage
jobs = json.loads(open(sys.argv[1], encoding="utf-8").read())
report = []
for job in jobs:
    t0 = time.monotonic()
    engine = stage.load(job["spec"])
    load = time.monotonic() - t0
    size = getattr(engine, "batch", None) or stage.batch_size(getattr(engine, "device", "cpu"))
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
'''


def build(kind: str, dest: Path, pairs: list[dict]) -> None:
    spec = dest.with_suffix(".pairs.json")
    spec.write_text(json.dumps(pairs, ensure_ascii=False), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {"HF_HOME": str(dest.parent / "hf-home")}
    subprocess.run([str(TRANSLATION_PY), str(ROOT / "tests" / "tiny_translators.py"), kind, str(dest), str(spec)],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def convert(source: Path, dest: Path) -> None:
    env = os.environ | {"PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    subprocess.run([str(TRANSLATION_PY), "-m", "offline_speech.derive", str(source), str(dest)], check=True, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=240, help="segments per timed pass (default 240)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--nllb", type=Path, help="a real NLLB snapshot folder to time instead of the tiny model")
    parser.add_argument("--ct2", type=Path, help="its CTranslate2 conversion (default: converted now to a temp dir)")
    args = parser.parse_args()
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
            build("nllb", nllb, [{"src_lang": "eng_Latn", "tgt_lang": "fra_Latn", "src": e, "tgt": f} for e, f in zip(ENGLISH, FRENCH)])
            pairs = [{"src_lang": "eng_Latn", "tgt_lang": "hin_Deva", "src": e, "tgt": h} for e, h in zip(ENGLISH, HINDI)]
            pairs += [{"src_lang": "hin_Deva", "tgt_lang": "eng_Latn", "src": h, "tgt": e} for h, e in zip(HINDI, ENGLISH)]
            pairs += [{"src_lang": "hin_Deva", "tgt_lang": "tam_Taml", "src": h, "tgt": t} for h, t in zip(HINDI, TAMIL)]
            build("indictrans2", work / "it2", pairs)
            it2 = {"kind": "indictrans2", "path": str(work / "it2"), "trust_remote_code": True}
            hindi = [HINDI[i % len(HINDI)] for i in range(n)]
            jobs += [
                {"name": "indictrans2 en-indic (en->hi)", "spec": it2, "texts": english, "src": "eng_Latn", "tgt": "hin_Deva"},
                {"name": "indictrans2 indic-en (hi->en)", "spec": it2, "texts": hindi, "src": "hin_Deva", "tgt": "eng_Latn"},
                {"name": "indictrans2 indic-indic (hi->ta)", "spec": it2, "texts": hindi, "src": "hin_Deva", "tgt": "tam_Taml"},
            ]
        ct2 = args.ct2 or work / "nllb-ct2"
        if not args.ct2:
            convert(nllb, ct2)
        jobs = [
            {"name": "nllb ctranslate2", "spec": {"kind": "nllb", "path": str(nllb), "ct2": str(ct2)}, "texts": english,
             "src": "eng_Latn", "tgt": "fra_Latn"},
            {"name": "nllb transformers", "spec": {"kind": "nllb", "path": str(nllb), "ct2": None}, "texts": english,
             "src": "eng_Latn", "tgt": "fra_Latn"},
        ] + jobs
        for job in jobs:
            job["reps"] = args.reps
        (work / "jobs.json").write_text(json.dumps(jobs, ensure_ascii=False), encoding="utf-8")
        env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(work / "hf-home"), "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run([str(TRANSLATION_PY), "-c", TIMER, str(work / "jobs.json"), str(ROOT / "src")],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        report = {r["name"]: r for r in json.loads(proc.stdout.strip().splitlines()[-1])}
    fast, slow = report["nllb ctranslate2"], report["nllb transformers"]
    print(f"model: {'tiny NLLB trained by tests/tiny_translators.py' if exact else nllb}; {n} segments per pass, "
          f"median of {args.reps} passes, {os.cpu_count()} CPUs")
    for r in report.values():
        print(f"  {r['name']:<34} {r['engine']:<28} {r['per_second']:8.1f} segments/s  ({r['wall']:.2f} s; load {r['load']:.2f} s)")
    ratio = fast["per_second"] / slow["per_second"]
    print(f"ctranslate2 int8 / transformers NLLB speed: {ratio:.2f}x (target >= 3x) {'OK' if ratio >= 3 else 'BELOW TARGET'}")
    same = fast["output"] == slow["output"]
    print(f"identical output: {'yes' if same else 'NO'}" + (f"; equal to the trained sentences: {fast['output'] == expected}" if exact else ""))
    if exact:
        for name in report:
            if name.startswith("indictrans2"):
                print(f"  {name}: reproduces the trained sentences: {_check(report[name]['output'], name)}")
    return 0


def _check(output: list[str], name: str) -> bool:
    target = {"en->hi": HINDI, "hi->en": ENGLISH, "hi->ta": TAMIL}[name.split("(")[1].rstrip(")")]
    return all(o == target[i % len(target)] for i, o in enumerate(output))


if __name__ == "__main__":
    sys.exit(main())
