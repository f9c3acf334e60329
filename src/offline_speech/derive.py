"""Derived artifacts: NLLB converted to CTranslate2 int8, made from the cached snapshot, verified like a download.

The conversion needs torch and transformers, so it runs as `python -m offline_speech.derive SRC DEST` in the
translation venv with the offline environment (it reads only the snapshot). The result goes to a temporary folder
beside its destination and is renamed into place once complete; the lock records, under "derived", the source
commit and every file with its size and sha256, so `--verify` checks it and `--repair` converts again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from . import cache
from .cache import RemoteFile
from .catalog import Model
from .settings import offline_env


def wants_ct2(model: Model) -> bool:
    """Whether cache-models.sh makes a CTranslate2 conversion of this entry (NLLB: CTranslate2 converts
    NLLB/M2M100, not IndicTrans2's remote code)."""
    return model.group == "nllb"


def convert(root: Path, model: Model, venv_root: Path, announce: Callable[[str], None] | None = None) -> tuple[bool, str]:
    """Convert the cached `model` to CTranslate2 int8 unless a complete conversion of its commit exists (`announce`
    hears when a conversion starts). Returns (ok, message); a missing translation venv is not a failure (the stage
    falls back to transformers)."""
    key = cache.derived_key(model)
    with cache.cache_lock(root, f"entry-{key}"):
        lock = cache.read_lock(root)
        state = cache.model_state(root, model, lock)
        if state.status != "complete" or not state.commit:
            return False, f"{model.key} is {state.status}: nothing to convert"
        if cache.derived_state(root, model, lock).status == "complete":
            return True, "CTranslate2 int8: cached"
        python = venv_root / "translation" / "bin" / "python"
        if not python.exists():
            return True, "not converted to CTranslate2 (venv/translation is missing: ./venv-setup translation, then run again)"
        dest = cache.derived_dir(root, model, state.commit)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        env = offline_env(root)
        if announce:
            announce(f"converting {model.key} to CTranslate2 {cache.CT2_QUANTIZATION} (venv/translation) ...")
        started = time.monotonic()
        try:
            source = cache.snapshot_dir(root, model.repo, state.commit)
            proc = subprocess.run([str(python), "-m", "offline_speech.derive", str(source), str(tmp)],
                                  env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
                return False, f"CTranslate2 conversion failed: {last}"
            files = {p.name: {"size": p.stat().st_size, "sha256": cache.sha256_file(p)} for p in sorted(tmp.iterdir()) if p.is_file()}
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        entry = {"source": model.key, "repo": model.repo, "source_commit": state.commit, "quantization": cache.CT2_QUANTIZATION,
                 "dest": os.path.relpath(dest, root), "files": files}
        cache.update_lock(root, "derived", key, entry)
        size = sum(f["size"] for f in files.values())
        return True, f"CTranslate2 {cache.CT2_QUANTIZATION}: converted in {time.monotonic() - started:.1f} s ({size} bytes)"


def expected_files(root: Path, model: Model, lock: dict) -> tuple[Path, list[RemoteFile]] | None:
    """(folder, files with size and sha256) of the model's recorded conversion, None when there is none."""
    entry = lock.get("derived", {}).get(cache.derived_key(model))
    if not entry:
        return None
    return root / entry["dest"], [RemoteFile(name, info["size"], "", info["sha256"]) for name, info in entry["files"].items()]


def remove(root: Path, model: Model) -> int:
    """Delete every conversion of the model and its lock entry; bytes freed."""
    folder = cache.derived_root(root, model)
    freed = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0
    shutil.rmtree(folder, ignore_errors=True)
    cache.update_lock(root, "derived", cache.derived_key(model), None)
    return freed


def convert_here(source: str, dest: str) -> None:
    """Translation venv side: the conversion itself. ctranslate2 4.8's converter hands `dtype=` to
    from_pretrained, a name transformers 4.53 does not know (it reaches the model's __init__ and fails): it goes
    as `torch_dtype`, the name 4.53 reads."""
    import ctranslate2

    class Converter(ctranslate2.converters.TransformersConverter):
        def load_model(self, model_class, model_name_or_path, **kwargs):
            if "dtype" in kwargs:
                kwargs["torch_dtype"] = kwargs.pop("dtype")
            return super().load_model(model_class, model_name_or_path, **kwargs)

    Converter(source, low_cpu_mem_usage=True).convert(dest, quantization=cache.CT2_QUANTIZATION, force=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m offline_speech.derive SNAPSHOT_DIR OUTPUT_DIR")
    convert_here(sys.argv[1], sys.argv[2])
