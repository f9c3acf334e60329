"""Conversions made here from a cached model: NLLB to CTranslate2 int8, verified like a download.

The conversion needs torch and transformers, so it runs as `python -m offline_speech.provisioning.convert SRC
DEST` in the translation venv with the offline environment (it reads only the snapshot); this module and what it
imports are standard library only, so it loads there. The result goes to a temporary folder beside its
destination and is renamed into place once complete; the lock records, under "derived", the source commit and
every file with its size and sha256, so `--verify` checks it and `--repair` converts again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import cache
from ..cache import LocalState, RemoteFile
from ..catalog import Model
from ..settings import VENV_ROOT, backend_python, offline_env
from ..util import last_line, sha256_file

CONVERTER_VENV = "translation"


@dataclass(frozen=True)
class Ct2Conversion:
    """The CTranslate2 int8 conversion of one model, kept beside the cache and recorded in the lock."""

    model: Model

    @property
    def key(self) -> str:
        """Its lock key (and row key in tables)."""
        return cache.derived_key(self.model)

    @property
    def source(self) -> str:
        return f"{self.model.repo} (CTranslate2 {cache.CT2_QUANTIZATION}, made here)"

    def state(self, root: Path, lock: dict) -> LocalState:
        return cache.derived_state(root, self.model, lock)

    def make(
        self, root: Path, announce: Callable[[str], None] | None = None, venv_root: Path = VENV_ROOT
    ) -> tuple[bool, str]:
        """Convert the cached model unless a complete conversion of its commit exists (`announce` hears when a
        conversion starts). Returns (ok, message); a missing translation venv is not a failure (the stage falls
        back to transformers)."""
        model = self.model
        with cache.cache_lock(root, f"entry-{self.key}"):
            lock = cache.read_lock(root)
            state = cache.model_state(root, model, lock)
            if state.status != "complete" or not state.commit:
                return False, f"{model.key} is {state.status}: nothing to convert"
            if self.state(root, lock).status == "complete":
                return True, "CTranslate2 int8: cached"
            python = backend_python(CONVERTER_VENV, venv_root)
            if not python.exists():
                return (
                    True,
                    (
                        "not converted to CTranslate2 "
                        "(venv/translation is missing: ./venv-setup translation, then run again)"
                    ),
                )
            if announce:
                announce(f"converting {model.key} to CTranslate2 {cache.CT2_QUANTIZATION} (venv/translation) ...")
            started = time.monotonic()
            dest = cache.derived_dir(root, model, state.commit)
            source = cache.snapshot_dir(root, model.repo, state.commit)
            files, problem = _convert_into(python, source, dest, offline_env(root))
            if problem:
                return False, f"CTranslate2 conversion failed: {problem}"
            entry = {
                "source": model.key,
                "repo": model.repo,
                "source_commit": state.commit,
                "quantization": cache.CT2_QUANTIZATION,
                "dest": os.path.relpath(dest, root),
                "files": files,
            }
            cache.update_lock(root, "derived", self.key, entry)
            size = sum(f["size"] for f in files.values())
            return (
                True,
                f"CTranslate2 {cache.CT2_QUANTIZATION}: converted in {time.monotonic() - started:.1f} s ({size} bytes)",
            )

    def expected_files(self, root: Path, lock: dict) -> tuple[Path, list[RemoteFile]] | None:
        """(folder, files with size and sha256) of the recorded conversion, None when there is none."""
        entry = lock.get("derived", {}).get(self.key)
        if not entry:
            return None
        files = [RemoteFile(name, info["size"], "", info["sha256"]) for name, info in entry["files"].items()]
        return root / entry["dest"], files

    def remove(self, root: Path) -> int:
        """Delete every conversion of the model and its lock entry; bytes freed."""
        folder = cache.derived_root(root, self.model)
        freed = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0
        shutil.rmtree(folder, ignore_errors=True)
        cache.update_lock(root, "derived", self.key, None)
        return freed


def conversion_for(model: Model) -> Ct2Conversion | None:
    """What cache-models.sh makes from this entry: NLLB gets a CTranslate2 conversion (CTranslate2 converts
    NLLB/M2M100, not IndicTrans2's remote code); nothing else does."""
    return Ct2Conversion(model) if model.group == "nllb" else None


def _convert_into(python: Path, source: Path, dest: Path, env: dict[str, str]) -> tuple[dict[str, dict], str]:
    """Run the conversion in the translation venv into a temporary folder, then rename it to `dest`.
    Returns (files with size and sha256, "") or ({}, the converter's last line of stderr)."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(
            [str(python), "-m", __name__, str(source), str(tmp)], env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            return {}, last_line(proc.stderr, f"exit code {proc.returncode}")
        files = {
            p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(tmp.iterdir()) if p.is_file()
        }
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
        return files, ""
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
        raise SystemExit("usage: python -m offline_speech.provisioning.convert SNAPSHOT_DIR OUTPUT_DIR")
    convert_here(sys.argv[1], sys.argv[2])
