"""The one language table for translation, and the routing rule (standard library only: every venv imports it).

Routing per (source, target), fixed at prepare time:

    Indic   -> English  IndicTrans2 indic-en
    English -> Indic    IndicTrans2 en-indic
    Indic   -> Indic    IndicTrans2 indic-indic
    anything else       NLLB-200, when both sides have a FLORES-200 code
    otherwise           refused (LanguageError)

"Indic" means one of the 22 scheduled languages of India that IndicTrans2 translates (some in two scripts).
A source of "auto" cannot be routed before Whisper has detected the language: `translation_models` then returns
every model any source could need for the targets, and the translate stage calls `route(detected, target)`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from offline_speech.schema import WHISPER_LANGUAGES
from .errors import BadInput

if TYPE_CHECKING:
    from offline_speech.catalog import Catalog, Model

AUTO = "auto"
ENGLISH = "en"
DIRECTIONS = ("indic-en", "en-indic", "indic-indic")
DEFAULT_INDICTRANS2_VARIANT = "1B"

# code      the code users type with -s/-t: Whisper's code where Whisper has the language (jw, no, yue ...), else
#           ISO 639-1, else ISO 639-3; a BCP 47 script subtag names a second script (ks-Deva, zh-Hant)
# flores    NLLB-200's language code (FLORES-200), "-" where NLLB lacks the language
# it2       IndicTrans2's language code, "-" where IndicTrans2 lacks it
# iso639_2  the ISO 639-2/B code for subtitle track tags; where ISO 639-2 has no code of its own, its
#           macrolanguage (ara, per, may, kur ...) or its collective code (sit, inc, roa, nic ...)
# Whether Whisper transcribes a language is schema.WHISPER_LANGUAGES (the `whisper` field).
_TABLE = """
# code     flores     it2        iso639_2  name
# -- English and the 22 scheduled languages of India (IndicTrans2) --
en         eng_Latn   eng_Latn   eng   English
as         asm_Beng   asm_Beng   asm   Assamese
bn         ben_Beng   ben_Beng   ben   Bengali
brx        -          brx_Deva   sit   Bodo
doi        -          doi_Deva   doi   Dogri
gom        -          gom_Deva   kok   Konkani
gu         guj_Gujr   guj_Gujr   guj   Gujarati
hi         hin_Deva   hin_Deva   hin   Hindi
kn         kan_Knda   kan_Knda   kan   Kannada
ks         kas_Arab   kas_Arab   kas   Kashmiri
ks-Deva    kas_Deva   kas_Deva   kas   Kashmiri (Devanagari)
mai        mai_Deva   mai_Deva   mai   Maithili
ml         mal_Mlym   mal_Mlym   mal   Malayalam
mni        mni_Beng   mni_Beng   mni   Manipuri
mni-Mtei   -          mni_Mtei   mni   Manipuri (Meitei Mayek)
mr         mar_Deva   mar_Deva   mar   Marathi
ne         npi_Deva   npi_Deva   nep   Nepali
or         ory_Orya   ory_Orya   ori   Odia
pa         pan_Guru   pan_Guru   pan   Punjabi
sa         san_Deva   san_Deva   san   Sanskrit
sat        sat_Beng   sat_Olck   sat   Santali
sd         snd_Arab   snd_Arab   snd   Sindhi
sd-Deva    -          snd_Deva   snd   Sindhi (Devanagari)
ta         tam_Taml   tam_Taml   tam   Tamil
te         tel_Telu   tel_Telu   tel   Telugu
ur         urd_Arab   urd_Arab   urd   Urdu
# -- the rest of NLLB-200, in FLORES-200 order --
ace-Arab   ace_Arab   -          ace   Acehnese (Arabic script)
ace        ace_Latn   -          ace   Acehnese
acm        acm_Arab   -          ara   Mesopotamian Arabic
acq        acq_Arab   -          ara   Ta'izzi-Adeni Arabic
aeb        aeb_Arab   -          ara   Tunisian Arabic
af         afr_Latn   -          afr   Afrikaans
ajp        ajp_Arab   -          ara   South Levantine Arabic
ak         aka_Latn   -          aka   Akan
sq         als_Latn   -          alb   Albanian
am         amh_Ethi   -          amh   Amharic
apc        apc_Arab   -          ara   North Levantine Arabic
ar         arb_Arab   -          ara   Arabic
ars        ars_Arab   -          ara   Najdi Arabic
ary        ary_Arab   -          ara   Moroccan Arabic
arz        arz_Arab   -          ara   Egyptian Arabic
ast        ast_Latn   -          ast   Asturian
awa        awa_Deva   -          awa   Awadhi
ay         ayr_Latn   -          aym   Aymara
azb        azb_Arab   -          aze   South Azerbaijani
az         azj_Latn   -          aze   Azerbaijani
ba         bak_Cyrl   -          bak   Bashkir
bm         bam_Latn   -          bam   Bambara
ban        ban_Latn   -          ban   Balinese
be         bel_Cyrl   -          bel   Belarusian
bem        bem_Latn   -          bem   Bemba
bho        bho_Deva   -          bho   Bhojpuri
bjn-Arab   bjn_Arab   -          may   Banjar (Arabic script)
bjn        bjn_Latn   -          may   Banjar
bo         bod_Tibt   -          tib   Tibetan
bs         bos_Latn   -          bos   Bosnian
bug        bug_Latn   -          bug   Buginese
bg         bul_Cyrl   -          bul   Bulgarian
ca         cat_Latn   -          cat   Catalan
ceb        ceb_Latn   -          ceb   Cebuano
cs         ces_Latn   -          cze   Czech
cjk        cjk_Latn   -          bnt   Chokwe
ckb        ckb_Arab   -          kur   Central Kurdish
crh        crh_Latn   -          crh   Crimean Tatar
cy         cym_Latn   -          wel   Welsh
da         dan_Latn   -          dan   Danish
de         deu_Latn   -          ger   German
dik        dik_Latn   -          din   Southwestern Dinka
dyu        dyu_Latn   -          dyu   Dyula
dz         dzo_Tibt   -          dzo   Dzongkha
el         ell_Grek   -          gre   Greek
eo         epo_Latn   -          epo   Esperanto
et         est_Latn   -          est   Estonian
eu         eus_Latn   -          baq   Basque
ee         ewe_Latn   -          ewe   Ewe
fo         fao_Latn   -          fao   Faroese
fa         pes_Arab   -          per   Persian
fj         fij_Latn   -          fij   Fijian
fi         fin_Latn   -          fin   Finnish
fon        fon_Latn   -          fon   Fon
fr         fra_Latn   -          fre   French
fur        fur_Latn   -          fur   Friulian
fuv        fuv_Latn   -          ful   Nigerian Fulfulde
gd         gla_Latn   -          gla   Scottish Gaelic
ga         gle_Latn   -          gle   Irish
gl         glg_Latn   -          glg   Galician
gn         grn_Latn   -          grn   Guarani
ht         hat_Latn   -          hat   Haitian Creole
ha         hau_Latn   -          hau   Hausa
he         heb_Hebr   -          heb   Hebrew
hne        hne_Deva   -          inc   Chhattisgarhi
hr         hrv_Latn   -          hrv   Croatian
hu         hun_Latn   -          hun   Hungarian
hy         hye_Armn   -          arm   Armenian
ig         ibo_Latn   -          ibo   Igbo
ilo        ilo_Latn   -          ilo   Ilocano
id         ind_Latn   -          ind   Indonesian
is         isl_Latn   -          ice   Icelandic
it         ita_Latn   -          ita   Italian
jw         jav_Latn   -          jav   Javanese
ja         jpn_Jpan   -          jpn   Japanese
kab        kab_Latn   -          kab   Kabyle
kac        kac_Latn   -          kac   Jingpho
kam        kam_Latn   -          kam   Kamba
ka         kat_Geor   -          geo   Georgian
knc-Arab   knc_Arab   -          kau   Central Kanuri (Arabic script)
knc        knc_Latn   -          kau   Central Kanuri
kk         kaz_Cyrl   -          kaz   Kazakh
kbp        kbp_Latn   -          nic   Kabiye
kea        kea_Latn   -          cpp   Kabuverdianu
km         khm_Khmr   -          khm   Khmer
ki         kik_Latn   -          kik   Kikuyu
rw         kin_Latn   -          kin   Kinyarwanda
ky         kir_Cyrl   -          kir   Kyrgyz
kmb        kmb_Latn   -          kmb   Kimbundu
kg         kon_Latn   -          kon   Kongo
ko         kor_Hang   -          kor   Korean
kmr        kmr_Latn   -          kur   Northern Kurdish
lo         lao_Laoo   -          lao   Lao
lv         lvs_Latn   -          lav   Latvian
lij        lij_Latn   -          roa   Ligurian
li         lim_Latn   -          lim   Limburgish
ln         lin_Latn   -          lin   Lingala
lt         lit_Latn   -          lit   Lithuanian
lmo        lmo_Latn   -          roa   Lombard
ltg        ltg_Latn   -          lav   Latgalian
lb         ltz_Latn   -          ltz   Luxembourgish
lua        lua_Latn   -          lua   Luba-Kasai
lg         lug_Latn   -          lug   Ganda
luo        luo_Latn   -          luo   Luo
lus        lus_Latn   -          lus   Mizo
mag        mag_Deva   -          mag   Magahi
min        min_Latn   -          min   Minangkabau
mk         mkd_Cyrl   -          mac   Macedonian
mg         plt_Latn   -          mlg   Malagasy
mt         mlt_Latn   -          mlt   Maltese
mn         khk_Cyrl   -          mon   Mongolian
mos        mos_Latn   -          mos   Mossi
mi         mri_Latn   -          mao   Maori
ms         zsm_Latn   -          may   Malay
my         mya_Mymr   -          bur   Burmese
nl         nld_Latn   -          dut   Dutch
nn         nno_Latn   -          nno   Norwegian Nynorsk
no         nob_Latn   -          nob   Norwegian
nso        nso_Latn   -          nso   Northern Sotho
nus        nus_Latn   -          ssa   Nuer
ny         nya_Latn   -          nya   Chichewa
oc         oci_Latn   -          oci   Occitan
om         gaz_Latn   -          orm   Oromo
pag        pag_Latn   -          pag   Pangasinan
pap        pap_Latn   -          pap   Papiamento
pl         pol_Latn   -          pol   Polish
pt         por_Latn   -          por   Portuguese
prs        prs_Arab   -          per   Dari
ps         pbt_Arab   -          pus   Pashto
quy        quy_Latn   -          que   Ayacucho Quechua
ro         ron_Latn   -          rum   Romanian
rn         run_Latn   -          run   Kirundi
ru         rus_Cyrl   -          rus   Russian
sg         sag_Latn   -          sag   Sango
scn        scn_Latn   -          scn   Sicilian
shn        shn_Mymr   -          shn   Shan
si         sin_Sinh   -          sin   Sinhala
sk         slk_Latn   -          slo   Slovak
sl         slv_Latn   -          slv   Slovenian
sm         smo_Latn   -          smo   Samoan
sn         sna_Latn   -          sna   Shona
so         som_Latn   -          som   Somali
st         sot_Latn   -          sot   Southern Sotho
es         spa_Latn   -          spa   Spanish
sc         srd_Latn   -          srd   Sardinian
sr         srp_Cyrl   -          srp   Serbian
ss         ssw_Latn   -          ssw   Swati
su         sun_Latn   -          sun   Sundanese
sv         swe_Latn   -          swe   Swedish
sw         swh_Latn   -          swa   Swahili
szl        szl_Latn   -          sla   Silesian
taq        taq_Latn   -          tmh   Tamasheq
taq-Tfng   taq_Tfng   -          tmh   Tamasheq (Tifinagh)
tt         tat_Cyrl   -          tat   Tatar
tg         tgk_Cyrl   -          tgk   Tajik
tl         tgl_Latn   -          tgl   Tagalog
th         tha_Thai   -          tha   Thai
ti         tir_Ethi   -          tir   Tigrinya
tpi        tpi_Latn   -          tpi   Tok Pisin
tn         tsn_Latn   -          tsn   Tswana
ts         tso_Latn   -          tso   Tsonga
tk         tuk_Latn   -          tuk   Turkmen
tum        tum_Latn   -          tum   Tumbuka
tr         tur_Latn   -          tur   Turkish
tw         twi_Latn   -          twi   Twi
tzm        tzm_Tfng   -          ber   Central Atlas Tamazight
ug         uig_Arab   -          uig   Uyghur
uk         ukr_Cyrl   -          ukr   Ukrainian
umb        umb_Latn   -          umb   Umbundu
uz         uzn_Latn   -          uzb   Uzbek
vec        vec_Latn   -          roa   Venetian
vi         vie_Latn   -          vie   Vietnamese
war        war_Latn   -          war   Waray
wo         wol_Latn   -          wol   Wolof
xh         xho_Latn   -          xho   Xhosa
yi         ydd_Hebr   -          yid   Yiddish
yo         yor_Latn   -          yor   Yoruba
yue        yue_Hant   -          chi   Cantonese
zh         zho_Hans   -          chi   Chinese
zh-Hant    zho_Hant   -          chi   Chinese (Traditional)
zu         zul_Latn   -          zul   Zulu
# -- languages only Whisper knows (transcribed, never translated) --
br         -          -          bre   Breton
haw        -          -          haw   Hawaiian
la         -          -          lat   Latin
"""

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
        code, flores, it2, iso, name = line.split(None, 4)
        rows.append(Language(code, name.strip(), None if flores == "-" else flores, None if it2 == "-" else it2,
                             iso, code in WHISPER_LANGUAGES))
    return tuple(rows)


LANGUAGES: tuple[Language, ...] = _parse(_TABLE)
# The 22 languages of the Eighth Schedule of the Indian Constitution, by their table codes.
SCHEDULED = ("as", "bn", "brx", "doi", "gom", "gu", "hi", "kn", "ks", "mai", "ml", "mni", "mr", "ne", "or", "pa",
             "sa", "sat", "sd", "ta", "te", "ur")


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
    raise LanguageError(f"unknown language '{code}': {hint}codes are Whisper's (hi, ta, en, zh ...), "
                        f"else ISO 639-1/639-3 (or, mai, brx, doi, gom, sat), or FLORES-200 (hin_Deva)")


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
    raise LanguageError(f"no model translates {src} -> {tgt}: NLLB-200 lacks {lacking}, and IndicTrans2 "
                        f"translates only between English and the scheduled Indian languages")


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


def indictrans2_model(catalog: Catalog, direction: str, variant: str = DEFAULT_INDICTRANS2_VARIANT) -> Model:
    """The catalog's IndicTrans2 entry for `direction` (key indictrans2-<direction>-<variant>)."""
    if direction not in DIRECTIONS:
        raise LanguageError(f"unknown IndicTrans2 direction '{direction}'; known: {', '.join(DIRECTIONS)}")
    key = f"indictrans2-{direction}-{variant}"
    for m in catalog.models:
        if m.group == "indictrans2" and m.key == key:
            return m
    raise LanguageError(f"the catalog has no IndicTrans2 model {key}")


def translation_models(
    catalog: Catalog,
    source: str,
    targets: list[str] | tuple[str, ...],
    nllb_variant: str,
    indictrans2_variant: str = DEFAULT_INDICTRANS2_VARIANT,
) -> list[Model]:
    """The catalog entries a job translating `source` into `targets` loads, in catalog order, each once.

    Every pair is routed (LanguageError for the first one refused). With source "auto" the route is decided after
    language detection, so this returns every model a route into the targets could use."""
    wanted: set[tuple[str, str | None]] = set()
    for target in targets:
        if source.strip().lower() == AUTO:
            wanted.update(possible_routes(target))
        else:
            r = route(source, target)
            wanted.add((r.model_group, r.direction))
    models = [indictrans2_model(catalog, d, indictrans2_variant) for g, d in wanted if g == "indictrans2" and d]
    if ("nllb", None) in wanted:
        models.append(catalog.nllb_model(nllb_variant))
    order = {m.key: i for i, m in enumerate(catalog.models)}
    return sorted(models, key=lambda m: order[m.key])
