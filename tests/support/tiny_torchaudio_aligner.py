"""Build a stand-in for torchaudio's English aligner checkpoint, in a few kilobytes (run in venv/whisperx).

    venv/whisperx/bin/python tests/support/tiny_torchaudio_aligner.py OUT_FILE [--seed N]

whisperx aligns English with torchaudio's WAV2VEC2_ASR_BASE_960H, whose checkpoint (377 MB, not reachable here) is a
state dict that `bundle.get_model()` loads into the full base architecture: its shapes cannot shrink. Every tensor
here is a strided view of a small random storage (element [i, j, ...] = storage[i + j + ...]), which torch.save
writes as that storage alone, so the file is tiny, loads with weights_only=True, and gives a model of the real
architecture whose rows all differ. Its weights are not trained, so the timings whisperx.align() gets from it are
structurally valid (every word timed, in order, inside its segment) but not meaningful. Layer norm weights are near
1 and biases near 0, so activations stay finite.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torchaudio


def strided_random(shape: torch.Size, generator: torch.Generator, scale: float, centre: float) -> torch.Tensor:
    """A tensor of `shape` whose storage holds only sum(d - 1) + 1 random values."""
    length = sum(d - 1 for d in shape) + 1
    storage = torch.randn(length, generator=generator) * scale + centre
    return storage.as_strided(tuple(shape), (1,) * len(shape))


def build(dest: Path, seed: int) -> None:
    bundle = torchaudio.pipelines.WAV2VEC2_ASR_BASE_960H
    model = torchaudio.models.wav2vec2_model(**bundle._params)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in model.state_dict().items():
        shape = list(tensor.shape)
        if name.startswith("aux."):  # fairseq's output layer has rows the bundle drops on load (_remove_aux_axis)
            shape[0] += len(bundle._remove_aux_axis)
        norm = "norm" in name and name.endswith("weight")
        state[name] = strided_random(
            torch.Size(shape), generator, 0.02 if norm or tensor.dim() == 1 else 0.05, 1.0 if norm else 0.0
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, dest)
    # it must load the way whisperx's bundle loads it: weights only, the extra rows dropped
    loaded = torch.load(dest, weights_only=True)
    torchaudio.pipelines._wav2vec2.utils._remove_aux_axes(loaded, bundle._remove_aux_axis)
    model.load_state_dict(loaded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.dest, args.seed)


if __name__ == "__main__":
    main()
