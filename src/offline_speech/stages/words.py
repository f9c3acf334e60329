"""Whisper's words into sentence segments and the transcript document: shared by every ASR backend and by the
outputs stage's cue breaks (standard library only)."""

from __future__ import annotations

from ..schema import TRANSCRIPT_KIND, TRANSCRIPT_SCHEMA

# Punctuation that ends a sentence, in the scripts Whisper writes (the Devanagari danda included).
SENTENCE_END = tuple(".?!。？！।")
PAUSE = 1.0  # seconds of silence between words that also ends a segment


def sentences(words: list[tuple[str, float, float, float]], offset: float, limit: float) -> list[dict]:
    """Split decoded words (word, start, end, probability; times relative to the clip) into sentence segments
    with media times: a segment ends after sentence punctuation or before a pause longer than PAUSE.

    Batched decoding without timestamp tokens never drops a chunk's last sentence (decoding with them does);
    Whisper's word timings (cross-attention alignment) place every sentence, in any language, and the align
    stage refines them where a wav2vec2 aligner exists.
    """
    out: list[dict] = []
    current: list[tuple[str, float, float, float]] = []

    def flush() -> None:
        text = "".join(w[0] for w in current).strip()
        if text:
            items, last = [], offset
            for word, start, end, probability in current:
                start = round(min(max(start + offset, last), limit), 3)
                end = round(min(max(end + offset, start), limit), 3)
                if word.strip():
                    items.append({"word": word.strip(), "start": start, "end": end, "score": round(probability, 3)})
                last = start
            if items:
                out.append({"start": items[0]["start"], "end": items[-1]["end"], "text": text, "words": items})
        current.clear()

    for w in words:
        if current and w[1] - current[-1][2] > PAUSE:
            flush()
        current.append(w)
        if ends_sentence(w[0]):
            flush()
    flush()
    return out


def ends_sentence(word: str) -> bool:
    """True when `word` ends with sentence punctuation."""
    return word.strip().endswith(SENTENCE_END)


def transcript(
    job: dict, language: str, probability: float | None, model: dict, segments: list, warnings: list, backend: str
) -> dict:
    """The asr stage's transcript document for one job (the same for every backend)."""
    clip = job["job"]["clip"]
    return {
        "kind": TRANSCRIPT_KIND,
        "schema": TRANSCRIPT_SCHEMA,
        "job": job["id"],
        "stage": "asr",
        "backend": backend,
        "language": language,
        "language_probability": probability,
        "model": {"key": model["key"], "repo": model["repo"], "commit": model["commit"]},
        "clip": {"start": clip["start"], "end": clip["end"]},
        "segments": segments,
        "warnings": warnings,
    }
