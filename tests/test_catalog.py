"""The catalog against the libraries it serves: whisperx's own aligner table, every ASR name on both backends,
languages as users type them."""

from __future__ import annotations

import json
import subprocess

import pytest

from offline_speech.catalog import CatalogError, Model, load_catalog
from offline_speech.languages import LanguageError
from support import ROOT
from support.shell import scrubbed_env, venv_python

WHISPERX_TABLES = """
import json
from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH
print(json.dumps({"hf": DEFAULT_ALIGN_MODELS_HF, "torch": DEFAULT_ALIGN_MODELS_TORCH}))
"""


@pytest.fixture(scope="module")
def whisperx_aligners() -> dict[str, dict[str, str]]:
    """whisperx's default aligner per language, read in its own venv (the import takes a few seconds)."""
    proc = subprocess.run(
        [str(venv_python("whisperx")), "-c", WHISPERX_TABLES], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_whisperx_default_aligner_is_in_the_catalog(whisperx_aligners):
    catalog = load_catalog()
    for lang, repo in whisperx_aligners["hf"].items():
        found = catalog.aligners(lang)
        assert [i.repo for i in found if isinstance(i, Model)] == [repo], (lang, repo, found)
    for lang in whisperx_aligners["torch"]:
        found = catalog.aligners(lang)
        assert len(found) == 1 and not isinstance(found[0], Model), (lang, found)
    served = {i.language for i in catalog.items if i.group == "align" and i.language != "*"}
    assert served == set(whisperx_aligners["hf"]) | set(whisperx_aligners["torch"])


def test_aligner_selection_takes_languages_as_users_type_them():
    catalog = load_catalog()
    selection = catalog.select(["align"], languages=("vi", "pl", "ko", "en-US", "pt-BR"), platform_id="linux-x86_64")
    assert not selection.warnings
    assert {i.language for i in selection.items} == {"vi", "pl", "ko", "en", "pt", "*"}
    with pytest.raises(LanguageError, match="unknown language 'xx'"):
        catalog.select(["align"], languages=("xx",), platform_id="linux-x86_64")
    selection = catalog.select(["align"], languages=("ta",), platform_id="linux-x86_64")
    assert selection.warnings == ("no default word aligner exists for 'ta': jobs in it keep segment timestamps",)


def test_unknown_language_for_aligners_is_one_line_exit_2(tmp_path):
    proc = subprocess.run(
        [str(ROOT / "cache-models.sh"), "--align", "--languages", "en,xx", "--dry-run", "--cache-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=scrubbed_env(),
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown language 'xx'") and len(proc.stderr.strip().splitlines()) == 1


def test_every_asr_name_has_an_mlx_twin_or_a_one_line_answer():
    catalog = load_catalog()
    for name in catalog.asr_names():
        try:
            model = catalog.asr_model(name, "mlx")
        except CatalogError as exc:
            message = str(exc)
            assert "\n" not in message and "--backend whisperx" in message, name
            assert message.startswith(f"'{name}' has no MLX Whisper conversion"), message
        else:
            assert model.repo.startswith("mlx-community/"), (name, model.repo)
    for name in ("tiny.en", "base.en", "small.en", "medium.en", "large-v3", "large-v3-turbo"):
        assert catalog.asr_model(name, "mlx").group == "mlx"
