"""Decoding controls: what prepare-job takes to tune the ASR (prompt, hotwords, beam, temperature, VAD, batch,
device and compute type), checked once at prepare time and recorded in job.json as `decoding`: only the controls
the user set (an empty dict is today's defaults, so a job that sets nothing decodes, and is digested, as before).

Standard library only: the asr stages read the same names (asr_whisperx applies every one; asr_mlx those mlx-whisper
has and says which it ignores).
"""

from __future__ import annotations

from .errors import BadInput
from .util import entries_problem

COMPUTE_TYPES = (
    "default",
    "auto",
    "int8",
    "int8_float16",
    "int8_float32",
    "int8_bfloat16",
    "float16",
    "bfloat16",
    "float32",
)  # CTranslate2's
DEVICES = ("auto", "cpu", "cuda")
MAX_CHUNK_SECONDS = 30.0  # Whisper's window
# The controls mlx_whisper.transcribe has; the others (hotwords, beam search, VAD and chunking, batch size, device,
# compute type, numeral suppression) it has not: prepare-job notes which a job on that backend ignores.
MLX_CONTROLS = frozenset({"initial_prompt", "temperature", "condition_on_previous_text"})


def ignored_by(backend: str, decoding: dict) -> list[str]:
    """The flags of the controls set that `backend` does not apply."""
    if backend != "mlx":
        return []
    return [f"--{name.replace('_', '-')}" for name in sorted(set(decoding) - MLX_CONTROLS)]


class DecodingError(BadInput):
    """A decoding control with a value no backend can take."""


def parse_temperatures(text: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise DecodingError(f"--temperature {text!r}: numbers between 0 and 1, comma-separated (0,0.2,0.4)") from None
    if not values or not all(0 <= t <= 1 for t in values) or values != sorted(values):
        raise DecodingError(f"--temperature {text!r}: numbers between 0 and 1, rising, comma-separated (0,0.2,0.4)")
    return values


def decoding_controls(
    *,
    initial_prompt: str | None = None,
    hotwords: str | None = None,
    beam_size: int | None = None,
    temperature: str | None = None,
    vad_onset: float | None = None,
    vad_offset: float | None = None,
    chunk_size: float | None = None,
    batch_size: int | None = None,
    compute_type: str | None = None,
    device: str | None = None,
    suppress_numerals: bool = False,
    condition_on_previous_text: bool | None = None,
) -> dict:
    """The controls that were set, validated (DecodingError: one line naming the flag)."""
    found: dict = {}
    for flag, text in (("--initial-prompt", initial_prompt), ("--hotwords", hotwords)):
        if text is not None:
            if not text.strip():
                raise DecodingError(f"{flag} is empty")
            found[flag[2:].replace("-", "_")] = " ".join(text.split())
    if "hotwords" in found:
        found["hotwords"] = ", ".join(w.strip() for w in found["hotwords"].split(",") if w.strip())
    for flag, value, low, high in (("--beam-size", beam_size, 1, 64), ("--batch-size", batch_size, 1, 512)):
        if value is not None:
            if not low <= value <= high:
                raise DecodingError(f"{flag} {value}: between {low} and {high}")
            found[flag[2:].replace("-", "_")] = value
    if temperature is not None:
        found["temperature"] = parse_temperatures(temperature)
    for flag, value in (("--vad-onset", vad_onset), ("--vad-offset", vad_offset)):
        if value is not None:
            if not 0 < value < 1:
                raise DecodingError(f"{flag} {value}: a speech probability between 0 and 1")
            found[flag[2:].replace("-", "_")] = value
    if vad_onset is not None and vad_offset is not None and vad_offset > vad_onset:
        raise DecodingError(f"--vad-offset {vad_offset} is above --vad-onset {vad_onset}: speech ends below it starts")
    if chunk_size is not None:
        if not 1 <= chunk_size <= MAX_CHUNK_SECONDS:
            raise DecodingError(f"--chunk-size {chunk_size}: seconds between 1 and {MAX_CHUNK_SECONDS:g}")
        found["chunk_size"] = chunk_size
    if compute_type is not None:
        if compute_type not in COMPUTE_TYPES:
            raise DecodingError(f"--compute-type {compute_type}: choose {', '.join(COMPUTE_TYPES)}")
        if compute_type not in ("auto", "default"):
            found["compute_type"] = compute_type
    if device is not None:
        if device not in DEVICES:
            raise DecodingError(f"--device {device}: choose {', '.join(DEVICES)}")
        if device != "auto":
            found["device"] = device
    if suppress_numerals:
        found["suppress_numerals"] = True
    if condition_on_previous_text is not None:
        found["condition_on_previous_text"] = condition_on_previous_text
    return found


# The types job.json may hold under "decoding" (a hand edit is checked before a stage sees it).
TYPES: dict[str, tuple] = {
    "initial_prompt": (str,),
    "hotwords": (str,),
    "beam_size": (int,),
    "batch_size": (int,),
    "temperature": (list,),
    "vad_onset": (int, float),
    "vad_offset": (int, float),
    "chunk_size": (int, float),
    "compute_type": (str,),
    "device": (str,),
    "suppress_numerals": (bool,),
    "condition_on_previous_text": (bool,),
}


def problem(decoding: object) -> str | None:
    """Why a job.json's `decoding` cannot be used, or None."""
    if (wrong := entries_problem(decoding, TYPES, "decoding")) is not None:
        return wrong
    try:
        decoding_controls(
            **{k: v for k, v in decoding.items() if k not in ("temperature", "suppress_numerals")},
            temperature=",".join(map(str, decoding["temperature"])) if "temperature" in decoding else None,
            suppress_numerals=bool(decoding.get("suppress_numerals")),
        )
    except DecodingError as exc:
        return f"decoding: {exc}"
    return None
