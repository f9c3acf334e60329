"""Word error rate helper for end-to-end transcription tests (stdlib only).

``normalize`` lowercases text, turns hyphens into spaces, drops punctuation
(apostrophes are kept only inside words, e.g. "don't") and splits on
whitespace. ``word_error_rate`` is the word-level Levenshtein distance
(substitutions + deletions + insertions) divided by the number of reference
words.
"""

from __future__ import annotations

import re

_HYPHENS = re.compile(r"[-\u2010\u2011\u2012\u2013\u2014\u2212]")
_APOSTROPHES = re.compile(r"[\u2018\u2019\u02bc`]")
_NON_WORD = re.compile(r"[^\w\s']")
_EDGE_APOSTROPHES = re.compile(r"(?<!\w)'+|'+(?!\w)")


def normalize(text: str) -> list[str]:
    """Return the lowercase words of *text* with punctuation removed."""
    text = _APOSTROPHES.sub("'", text.lower())
    text = _HYPHENS.sub(" ", text)
    text = _NON_WORD.sub(" ", text).replace("_", " ")
    text = _EDGE_APOSTROPHES.sub(" ", text)
    return text.split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate of *hypothesis* against *reference*.

    An empty reference gives 0.0 for an empty hypothesis and 1.0 otherwise.
    """
    ref = normalize(reference)
    hyp = normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)
