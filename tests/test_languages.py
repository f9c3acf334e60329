"""The language table against the authoritative code lists, and the translation routing rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from offline_speech.catalog import load_catalog
from offline_speech.languages import (
    ALIASES,
    LANGUAGES,
    WHISPER_LANGUAGES,
    LanguageError,
    Route,
    is_indic,
    lookup,
    possible_routes,
    route,
    source_language,
)

DATA = Path(__file__).with_name("data")


def codes(name: str) -> list[str]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


NLLB_CODES = codes("nllb_codes.txt")  # transformers' FAIRSEQ_LANGUAGE_CODES
ISO639_2 = set(codes("iso639_2_codes.txt"))
WHISPER_CODES = set(codes("whisper_codes.txt"))  # faster-whisper's tokenizer: the languages Whisper transcribes
# The 22 languages of the Eighth Schedule of the Indian Constitution, by their table codes.
SCHEDULED = "as bn brx doi gom gu hi kn ks mai ml mni mr ne or pa sa sat sd ta te ur".split()

# IndicTrans2's languages (its model cards / IndicTransToolkit): English and the 22 scheduled languages,
# Kashmiri, Manipuri and Sindhi in two scripts each.
INDICTRANS2_CODES = {
    "eng_Latn",
    "asm_Beng",
    "ben_Beng",
    "brx_Deva",
    "doi_Deva",
    "gom_Deva",
    "guj_Gujr",
    "hin_Deva",
    "kan_Knda",
    "kas_Arab",
    "kas_Deva",
    "mai_Deva",
    "mal_Mlym",
    "mar_Deva",
    "mni_Beng",
    "mni_Mtei",
    "npi_Deva",
    "ory_Orya",
    "pan_Guru",
    "san_Deva",
    "sat_Olck",
    "snd_Arab",
    "snd_Deva",
    "tam_Taml",
    "tel_Telu",
    "urd_Arab",
}


def test_the_reference_lists_are_whole():
    assert len(NLLB_CODES) == len(set(NLLB_CODES)) == 202
    assert {"hin_Deva", "eng_Latn", "zho_Hant", "sat_Beng"} <= set(NLLB_CODES)
    assert {"hin", "eng", "chi", "fre", "ger", "kok", "sit"} <= ISO639_2 and "zho" not in ISO639_2


def test_every_nllb_code_is_in_the_table_exactly_once():
    flores = [lang.flores for lang in LANGUAGES if lang.flores]
    assert sorted(flores) == sorted(NLLB_CODES)


def test_every_whisper_language_is_in_the_table():
    table = {lang.code for lang in LANGUAGES}
    assert WHISPER_LANGUAGES <= table
    assert {lang.code for lang in LANGUAGES if lang.whisper} == WHISPER_LANGUAGES == WHISPER_CODES
    assert {lang.code for lang in LANGUAGES if lang.whisper and not lang.flores} == {"haw", "la", "br"}


def test_codes_are_unique_and_every_spelling_names_one_language():
    assert len({lang.code for lang in LANGUAGES}) == len(LANGUAGES)
    for lang in LANGUAGES:
        assert lookup(lang.code) is lang
        assert lookup(lang.code.upper()) is lang
        for key in (lang.flores, lang.indictrans2):
            if key:
                assert lookup(key) is lang, key
    for alias, code in ALIASES.items():
        assert lookup(alias).code == code


@pytest.mark.parametrize(
    "spelling, code",
    [
        ("hi", "hi"),
        ("HI", "hi"),
        (" ta ", "ta"),
        ("hin_Deva", "hi"),
        ("Hindi", "hi"),
        ("tamil", "ta"),
        ("jv", "jw"),
        ("jav_Latn", "jw"),
        ("nb", "no"),
        ("nob_Latn", "no"),
        ("kok", "gom"),
        ("gom_Deva", "gom"),
        ("zh_Hant", "zh-Hant"),
        ("zho_Hans", "zh"),
        ("sat_Olck", "sat"),
        ("sat_Beng", "sat"),
        ("mni_Mtei", "mni-Mtei"),
        ("snd_Deva", "sd-Deva"),
        ("ks-deva", "ks-Deva"),
        ("Kashmiri", "ks"),
        ("odia", "or"),
        ("ory_Orya", "or"),
    ],
)
def test_lookup_accepts_codes_aliases_and_names(spelling, code):
    assert lookup(spelling).code == code


@pytest.mark.parametrize(
    "bad, message",
    [
        ("xx", "unknown language 'xx'"),
        ("hnd", "did you mean hi\\? codes"),
        ("auto", "only -s takes it"),
        ("", "unknown language ''"),
    ],
)
def test_unknown_codes_are_refused_in_one_helpful_line(bad, message):
    with pytest.raises(LanguageError, match=message) as err:
        lookup(bad)
    assert "\n" not in str(err.value)


def test_all_flores_and_indictrans2_codes_are_real():
    assert {lang.flores for lang in LANGUAGES if lang.flores} <= set(NLLB_CODES)
    assert {lang.indictrans2 for lang in LANGUAGES if lang.indictrans2} == INDICTRANS2_CODES


def test_the_22_scheduled_languages_all_have_indictrans2_codes():
    assert len(SCHEDULED) == len(set(SCHEDULED)) == 22
    for code in SCHEDULED:
        lang = lookup(code)
        assert lang.indictrans2 and lang.is_indic and is_indic(code), code
    indic = {lang.code for lang in LANGUAGES if lang.is_indic}
    assert indic == set(SCHEDULED) | {"ks-Deva", "mni-Mtei", "sd-Deva"}
    assert not is_indic("en") and not is_indic("fr") and not is_indic("bho")  # Bhojpuri is not scheduled


def test_every_language_has_an_iso639_2_tag():
    for lang in LANGUAGES:
        assert lang.iso639_2 in ISO639_2, (lang.code, lang.iso639_2)
    tags = {c: lookup(c).iso639_2 for c in ("hi", "ta", "en", "zh", "fr", "de", "or", "gom", "brx", "jw", "fa")}
    assert tags == {
        "hi": "hin",
        "ta": "tam",
        "en": "eng",
        "zh": "chi",
        "fr": "fre",
        "de": "ger",
        "or": "ori",
        "gom": "kok",
        "brx": "sit",
        "jw": "jav",
        "fa": "per",
    }
    assert lookup("jw").bcp47 == "jv" and lookup("zh-Hant").bcp47 == "zh-Hant"


def test_every_table_code_is_a_language_tag():
    for lang in LANGUAGES:
        base, _, script = lang.bcp47.partition("-")
        assert base.islower() and 2 <= len(base) <= 3, lang.code
        assert not script or (len(script) == 4 and script.istitle()), lang.code
        assert lang.name and lang.name[0].isupper(), lang.code


@pytest.mark.parametrize(
    "source, target, expected",
    [
        ("hi", "en", Route("indictrans2", "indic-en", "hin_Deva", "eng_Latn", "hi", "en")),
        ("en", "ta", Route("indictrans2", "en-indic", "eng_Latn", "tam_Taml", "en", "ta")),
        ("hi", "ta", Route("indictrans2", "indic-indic", "hin_Deva", "tam_Taml", "hi", "ta")),
        ("fr", "de", Route("nllb", None, "fra_Latn", "deu_Latn", "fr", "de")),
        ("hi", "fr", Route("nllb", None, "hin_Deva", "fra_Latn", "hi", "fr")),
        ("en", "fr", Route("nllb", None, "eng_Latn", "fra_Latn", "en", "fr")),
        ("fr", "hi", Route("nllb", None, "fra_Latn", "hin_Deva", "fr", "hi")),
        ("ur", "en", Route("indictrans2", "indic-en", "urd_Arab", "eng_Latn", "ur", "en")),
        ("ne", "mai", Route("indictrans2", "indic-indic", "npi_Deva", "mai_Deva", "ne", "mai")),
        ("en", "sat", Route("indictrans2", "en-indic", "eng_Latn", "sat_Olck", "en", "sat")),
        ("sat", "fr", Route("nllb", None, "sat_Beng", "fra_Latn", "sat", "fr")),
        ("en", "brx", Route("indictrans2", "en-indic", "eng_Latn", "brx_Deva", "en", "brx")),
        ("ks", "ks-Deva", Route("indictrans2", "indic-indic", "kas_Arab", "kas_Deva", "ks", "ks-Deva")),
        ("bho", "en", Route("nllb", None, "bho_Deva", "eng_Latn", "bho", "en")),
        ("jw", "zh-Hant", Route("nllb", None, "jav_Latn", "zho_Hant", "jw", "zh-Hant")),
        ("yue", "no", Route("nllb", None, "yue_Hant", "nob_Latn", "yue", "no")),
        ("Hindi", "eng_Latn", Route("indictrans2", "indic-en", "hin_Deva", "eng_Latn", "hi", "en")),
    ],
)
def test_routing(source, target, expected):
    assert route(source, target) == expected


@pytest.mark.parametrize(
    "source, target, message",
    [
        ("haw", "en", "NLLB-200 lacks Hawaiian"),
        ("en", "la", "NLLB-200 lacks Latin"),
        ("brx", "fr", "NLLB-200 lacks Bodo"),
        ("fr", "mni-Mtei", "NLLB-200 lacks Manipuri \\(Meitei Mayek\\)"),
        ("haw", "br", "lacks Hawaiian \\(haw\\) and Breton"),
        ("hi", "hi", "is the source language"),
        ("jv", "jw", "is the source language"),
        ("en", "xx", "unknown language 'xx'"),
        ("auto", "en", "decided after Whisper detects"),
    ],
)
def test_unsupported_pairs_are_refused(source, target, message):
    with pytest.raises(LanguageError, match=message):
        route(source, target)


def test_a_source_must_be_one_whisper_transcribes():
    assert source_language("hi").code == "hi" and source_language("jv").code == "jw"
    for code in ("mai", "or", "brx", "gom", "sat", "ks", "mni"):
        with pytest.raises(LanguageError, match="Whisper cannot transcribe"):
            source_language(code)


def test_possible_routes_for_an_auto_source():
    assert possible_routes("en") == [("indictrans2", "indic-en"), ("nllb", None)]
    assert possible_routes("ta") == [("indictrans2", "en-indic"), ("indictrans2", "indic-indic"), ("nllb", None)]
    assert possible_routes("doi") == [("indictrans2", "en-indic"), ("indictrans2", "indic-indic")]
    assert possible_routes("fr") == [("nllb", None)]
    with pytest.raises(LanguageError, match="no model translates into Hawaiian"):
        possible_routes("haw")


def keys(models):
    return [m.key for m in models]


def test_translation_models_come_from_the_catalog():
    catalog = load_catalog()
    assert keys(catalog.translation_models("hi", ["en"], "3.3B")) == ["indictrans2-indic-en-1B"]
    assert keys(catalog.translation_models("en", ["ta", "bn", "fr"], "600M")) == [
        "indictrans2-en-indic-1B",
        "nllb-200-distilled-600M",
    ]
    assert keys(catalog.translation_models("hi", ["en", "ta", "de"], "distilled-1.3B")) == [
        "indictrans2-indic-en-1B",
        "indictrans2-indic-indic-1B",
        "nllb-200-distilled-1.3B",
    ]
    assert keys(catalog.translation_models("fr", ["de", "es"], "3.3B")) == ["nllb-200-3.3B"]
    assert catalog.translation_models("hi", [], "3.3B") == []
    assert keys(catalog.translation_models("auto", ["en"], "1.3B")) == ["indictrans2-indic-en-1B", "nllb-200-1.3B"]
    assert keys(catalog.translation_models("auto", ["brx"], "1.3B")) == [
        "indictrans2-en-indic-1B",
        "indictrans2-indic-indic-1B",
    ]
    with pytest.raises(LanguageError, match="NLLB-200 lacks Hawaiian"):
        catalog.translation_models("haw", ["en"], "3.3B")
    with pytest.raises(LanguageError, match="is the source language"):
        catalog.translation_models("en", ["fr", "en"], "3.3B")
    with pytest.raises(LanguageError, match="no IndicTrans2 model indictrans2-indic-en-200M"):
        catalog.translation_models("hi", ["en"], "3.3B", indictrans2_variant="200M")
    with pytest.raises(ValueError, match="no NLLB model named 'huge'"):
        catalog.translation_models("fr", ["de"], "huge")


@pytest.mark.parametrize(
    "typed, code",
    [
        ("en-US", "en"),
        ("en_GB", "en"),
        ("pt-BR", "pt"),
        ("zh-CN", "zh"),
        ("zh-TW", "zh-Hant"),
        ("zh-Hant-TW", "zh-Hant"),
        ("English", "en"),
        ("hindi", "hi"),
        ("hin", "hi"),
        ("fre", "fr"),
        ("ger", "de"),
        ("nb-NO", "no"),
        ("sr-Latn-RS", "sr"),
        ("ks-Deva", "ks-Deva"),
        ("hin_Deva", "hi"),
    ],
)
def test_codes_are_normalised_as_users_type_them(typed, code):
    assert lookup(typed).code == code


def test_an_iso639_2_code_shared_by_several_languages_names_none_of_them():
    with pytest.raises(LanguageError):
        lookup("sit")  # a collective code (Sino-Tibetan): Bodo's tag, but not Bodo
