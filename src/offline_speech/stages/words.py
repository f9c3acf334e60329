"""Whisper's words into sentence segments: shared by every ASR backend (standard library only)."""

from __future__ import annotations

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
        if w[0].strip().endswith(SENTENCE_END):
            flush()
    flush()
    return out
