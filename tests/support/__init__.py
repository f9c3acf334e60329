"""What the tests and the benchmarks share: a local HF-compatible hub and what it serves, tiny model builders, WER,
and the helpers that run the project's commands as a user runs them.

    shell.py             the scrubbed environment, the shims and cache-models as subprocesses, provisioned caches
    sample.py            the committed speech clip, its sentences, and the checks made on its subtitles
    hub.py               TestHub, an HF-compatible server on 127.0.0.1 (by hand: python tests/support/hub.py --help);
                         hub_repo.py what a repo serves, hub_http.py the HTTP handler, hub_faults.py injected faults
    universe.py          what the test hub serves: every catalog repo (the real tiny.en, stand-ins) and the assets
    interrupt.py         a slow download to Ctrl-C or kill -9: cache-models in its own process group, its partial file
    builders.py          runs the three builders below in their venvs
    tiny_aligner.py      (venv/whisperx) a tiny random-weight wav2vec2 CTC aligner laid out like a hub repo
    tiny_translators.py  (venv/translation) tiny NLLB and IndicTrans2 models that reproduce given sentence pairs;
                         tiny_translators_{train,check,nllb,indictrans2}.py its training, checks and two builders
    tiny_indictrans2/    the tiny IndicTrans2's own model code (trust_remote_code), copied into each build
    ct2_to_mlx.py        (venv/mlx) a faster-whisper (CTranslate2) model converted to the MLX Whisper layout
    wer.py               word error rate

It is imported as `support`: pytest puts tests/ on sys.path (the folder of conftest.py). A script elsewhere (the
benchmarks in scripts/) does the same in these lines, before its imports, and imports nothing else from tests/:

    ROOT = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]  # the package and tests/support (see its __init__)

The three builders and hub.py also run as scripts, by path, in other venvs: they import only the standard library
and their own siblings (hub.py and tiny_translators.py, run by path, put tests/ on sys.path and set __package__ to
`support`, so their relative imports work as they do under pytest; this file imports nothing but pathlib).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout these tests belong to
