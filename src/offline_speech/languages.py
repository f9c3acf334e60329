"""The one language table for translation, and the routing rule (standard library only: every venv imports it).

Routing per (source, target), fixed at prepare time:

    Indic   -> English  IndicTrans2 indic-en
    English -> Indic    IndicTrans2 en-indic
    Indic   -> Indic    IndicTrans2 indic-indic
    anything else       NLLB-200, when both sides have a FLORES-200 code
    otherwise           refused (LanguageError)

"Indic" means one of the 22 scheduled languages of India that IndicTrans2 translates (some in two scripts).
A source of "auto" cannot be routed before Whisper has detected the language: `possible_routes` then gives every
route any source could take into a target (`Catalog.translation_models` picks their models), and the translate stage
calls `route(detected, target)`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInput

AUTO = "auto"
ENGLISH = "en"
DIRECTIONS = ("indic-en", "en-indic", "indic-indic")

# The table itself is data: languages.txt beside this module (its header says what each column means).
_TABLE_FILE = Path(__file__).with_name("languages.txt")


# Other spellings lookup() accepts (besides FLORES-200 and IndicTrans2 codes and English names).
ALIASES = {
    "jv": "jw",  # ISO 639-1 Javanese; Whisper says jw
    "nb": "no",  # Norwegian Bokmål; Whisper says no
    "kok": "gom",  # Konkani (macrolanguage); IndicTrans2 translates Goan Konkani
    "zh-Hans": "zh",
    "ks-Arab": "ks",
    "sd-Arab": "sd",
    "mni-Beng": "mni",
    "sat-Olck": "sat",
}
# BCP 47 region subtags that imply a script where the table keeps the script apart (zh-TW is Traditional Chinese).
_REGION_SCRIPT = {("zh", "tw"): "zh-Hant", ("zh", "hk"): "zh-Hant", ("zh", "mo"): "zh-Hant"}
# The BCP 47 tag (Matroska's LanguageBCP47) where it is not the code itself.
_BCP47 = {"jw": "jv"}


class LanguageError(BadInput, ValueError):
    """A language code nobody knows, or a (source, target) pair no model translates."""


@dataclass(frozen=True)
class Language:
    code: str  # what -s/-t take and job.json stores
    name: str
    flores: str | None  # NLLB-200 (FLORES-200) code
    indictrans2: str | None  # IndicTrans2 code
    iso639_2: str  # ISO 639-2/B, for subtitle track tags
    whisper: bool  # Whisper transcribes it: allowed as a source

    @property
    def is_indic(self) -> bool:
        """One of the scheduled languages of India that IndicTrans2 translates."""
        return self.indictrans2 is not None and self.code != ENGLISH

    @property
    def bcp47(self) -> str:
        return _BCP47.get(self.code, self.code)

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


@dataclass(frozen=True)
class Route:
    """Which model translates source -> target, and the codes that model takes."""

    model_group: str  # "indictrans2" | "nllb" (catalog group)
    direction: str | None  # "indic-en" | "en-indic" | "indic-indic" for IndicTrans2, None for NLLB
    src_code: str  # the model's code for the source (IndicTrans2 or FLORES-200)
    tgt_code: str
    source: str  # the table codes
    target: str


def _parse(table: str) -> tuple[Language, ...]:
    rows = []
    for line in table.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        code, whisper, flores, it2, iso, name = line.split(None, 5)
        optional = {"-": None}
        rows.append(
            Language(code, name.strip(), optional.get(flores, flores), optional.get(it2, it2), iso, whisper == "yes")
        )
    return tuple(rows)


LANGUAGES: tuple[Language, ...] = _parse(_TABLE_FILE.read_text(encoding="utf-8"))
# Whisper's language codes (whisper.tokenizer.LANGUAGES): the codes -s accepts.
WHISPER_LANGUAGES = frozenset(lang.code for lang in LANGUAGES if lang.whisper)


def _index(languages: tuple[Language, ...]) -> dict[str, Language]:
    """Every accepted spelling (case-insensitive) -> its language; two languages claiming one key is a bug."""
    by_code = {lang.code: lang for lang in languages}
    index: dict[str, Language] = {}

    def add(key: str, lang: Language) -> None:
        key = key.lower()
        if index.setdefault(key, lang) is not lang:
            raise AssertionError(f"language table: '{key}' names both {index[key].code} and {lang.code}")

    for lang in languages:
        add(lang.code, lang)
    for lang in languages:
        for key in (lang.flores, lang.indictrans2):
            if key:
                add(key, lang)
    for alias, code in ALIASES.items():
        add(alias, by_code[code])
    names: dict[str, Language] = {}
    for lang in languages:
        names.setdefault(lang.name.lower(), lang)
    for name, lang in names.items():
        index.setdefault(name, lang)  # a code wins over a name
    iso = [lang.iso639_2 for lang in languages]
    for lang in languages:  # ISO 639-2 codes (eng, hin, fre) of ISO 639-1 languages, where one language owns it
        # (a language with no 639-1 code is tagged with its macrolanguage or collective code: sit is not Bodo)
        if iso.count(lang.iso639_2) == 1 and len(lang.code.split("-")[0]) == 2:
            index.setdefault(lang.iso639_2, lang)
    return index


_INDEX = _index(LANGUAGES)


def _bcp47_candidates(key: str) -> list[str]:
    """Shorter forms of a BCP 47 tag as users type them (en-US, pt_BR, zh-Hant-TW, zh-CN): language+script, then
    a region that implies a script, then the language alone."""
    parts = key.replace("_", "-").split("-")
    if len(parts) < 2 or not parts[0].isalpha():
        return []
    lang, rest = parts[0], parts[1:]
    script = next((p for p in rest if len(p) == 4 and p.isalpha()), None)
    region = next((p for p in rest if len(p) in (2, 3) and p != script), None)
    found = [f"{lang}-{script}"] if script else []
    if (lang, region) in _REGION_SCRIPT and not script:
        found.append(_REGION_SCRIPT[(lang, region)].lower())
    return found + [lang]


def lookup(code: str) -> Language:
    """The language `code` names: a table code, alias, FLORES-200, IndicTrans2 or ISO 639-2 code, an English
    name, or a BCP 47 tag with region or script (en-US, pt-BR, zh-CN, zh-TW)."""
    key = code.strip().lower()
    for candidate in (key, key.replace("_", "-"), *_bcp47_candidates(key)):
        found = _INDEX.get(candidate)
        if found:
            return found
    if key == AUTO:
        raise LanguageError("'auto' is not a language: only -s takes it (Whisper detects the language)")
    close = difflib.get_close_matches(key, list(_INDEX), n=4, cutoff=0.75)
    hint = f"did you mean {', '.join(dict.fromkeys(_INDEX[c].code for c in close))}? " if close else ""
    raise LanguageError(
        f"unknown language '{code}': {hint}codes are Whisper's (hi, ta, en, zh ...), "
        f"else ISO 639-1/639-3 (or, mai, brx, doi, gom, sat), or FLORES-200 (hin_Deva)"
    )


def is_indic(code: str) -> bool:
    """True for the scheduled languages of India that IndicTrans2 translates (English is not Indic)."""
    return lookup(code).is_indic


def source_language(code: str) -> Language:
    """The language of a -s code, which Whisper must be able to transcribe (LanguageError otherwise)."""
    lang = lookup(code)
    if not lang.whisper:
        raise LanguageError(f"Whisper cannot transcribe {lang}: -s takes one of Whisper's languages, or auto")
    return lang


def route(source: str, target: str) -> Route:
    """The model translating `source` -> `target`, or LanguageError for a pair no model supports."""
    if source.strip().lower() == AUTO:
        raise LanguageError("the route from 'auto' is decided after Whisper detects the language")
    src, tgt = lookup(source), lookup(target)
    if src is tgt:
        raise LanguageError(f"target {tgt} is the source language: nothing to translate")
    direction = None
    if src.is_indic and tgt.code == ENGLISH:
        direction = "indic-en"
    elif src.code == ENGLISH and tgt.is_indic:
        direction = "en-indic"
    elif src.is_indic and tgt.is_indic:
        direction = "indic-indic"
    if direction and src.indictrans2 and tgt.indictrans2:
        return Route("indictrans2", direction, src.indictrans2, tgt.indictrans2, src.code, tgt.code)
    if src.flores and tgt.flores:
        return Route("nllb", None, src.flores, tgt.flores, src.code, tgt.code)
    lacking = " and ".join(str(lang) for lang in (src, tgt) if not lang.flores)
    raise LanguageError(
        f"no model translates {src} -> {tgt}: NLLB-200 lacks {lacking}, and IndicTrans2 "
        f"translates only between English and the scheduled Indian languages"
    )


def possible_routes(target: str) -> list[tuple[str, str | None]]:
    """(model_group, direction) for every route into `target` some source could take: for a source of "auto"."""
    tgt = lookup(target)
    found: list[tuple[str, str | None]] = []
    if tgt.code == ENGLISH:
        found.append(("indictrans2", "indic-en"))
    if tgt.is_indic:
        found += [("indictrans2", "en-indic"), ("indictrans2", "indic-indic")]
    if tgt.flores:
        found.append(("nllb", None))
    if not found:
        raise LanguageError(f"no model translates into {tgt}")
    return found
