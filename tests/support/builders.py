"""The tiny model builders (tiny_aligner.py, tiny_translators.py, ct2_to_mlx.py) run as scripts in their venvs, by
path, as the tests and the benchmarks use them; each returns the files it wrote, as a test hub repo serves them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .shell import scrubbed_env, venv_python

HERE = Path(__file__).resolve().parent


def folder_files(folder: Path) -> dict[str, bytes]:
    """The files directly inside a folder, by name."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def run_builder(venv: str, script: str, *args: object, env: dict[str, str] | None = None, timeout: float = 900) -> None:
    """python tests/support/SCRIPT ARGS in venv/VENV; it must succeed."""
    proc = subprocess.run(
        [str(venv_python(venv)), str(HERE / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def tiny_translator(kind: str, dest: Path, pairs: list[dict]) -> dict[str, bytes]:
    """A tiny `kind` model (nllb, indictrans2) in `dest` that translates each pair's src to exactly its tgt."""
    spec = dest.with_suffix(".pairs.json")
    spec.write_text(json.dumps(pairs, ensure_ascii=False), encoding="utf-8")
    env = scrubbed_env(HF_HOME=str(dest.parent / "hf-home"))
    run_builder("translation", "tiny_translators.py", kind, dest, spec, env=env)
    return folder_files(dest)


def tiny_aligner(dest: Path, alphabet: str = "hi") -> dict[str, bytes]:
    """A tiny random-weight wav2vec2 CTC aligner for `alphabet` in `dest`."""
    run_builder("whisperx", "tiny_aligner.py", dest, "--alphabet", alphabet, timeout=300)
    return folder_files(dest)


def ct2_to_mlx(source: Path, dest: Path, dtype: str = "float32") -> dict[str, bytes]:
    """The faster-whisper model in `source` converted to the MLX Whisper layout in `dest`."""
    run_builder("mlx", "ct2_to_mlx.py", source, dest, "--dtype", dtype, timeout=600)
    return folder_files(dest)


def tiny_torchaudio_aligner(dest: Path) -> bytes:
    """A stand-in for torchaudio's English aligner checkpoint, in the real architecture, of a few kilobytes."""
    run_builder("whisperx", "tiny_torchaudio_aligner.py", dest, timeout=300)
    return dest.read_bytes()
