"""The model catalog: every model a stage loads, read from catalog.toml (the single source of truth)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import BadInput
from .languages import AUTO, DIRECTIONS, LanguageError, lookup, possible_routes, route
from .settings import APPLE_SILICON, host_platform

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CATALOG_PATH = Path(__file__).with_name("catalog.toml")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

# Order matters: it is the order of the flags in --help and of the rows in plans and tables.
GROUPS = ("whisperx", "mlx", "indictrans2", "nllb", "align", "diarization")
DEFAULT_ASR_MODEL = "large-v3"
DEFAULT_NLLB_MODEL = "3.3B"
DEFAULT_LANGUAGES = ("en", "hi")
DEFAULT_INDICTRANS2_VARIANT = "1B"


class CatalogError(BadInput, ValueError):
    """The catalog file, or a selection from it, is not valid."""


@dataclass(frozen=True)
class Model:
    """A hub repo (or the part of it a loader requests) that a stage loads."""

    key: str
    group: str
    repo: str
    revision: str
    files: tuple[str, ...]
    venv: str
    size: int
    prefer: tuple[tuple[str, ...], ...] = ()
    exclude: tuple[str, ...] = ()  # never fetched, though `files` or `prefer` match (hub ignore_patterns semantics)
    platforms: tuple[str, ...] = ("any",)
    gated: bool = False
    trust_remote_code: bool = False
    asr: tuple[str, ...] = ()
    variant: tuple[str, ...] = ()
    language: str | None = None
    # per hub commit, the sha256 of files known (and, for .py files, reviewed) for it: ((commit, ((path, sha256),
    # ...)), ...). --from-dir checks files against them; trust_remote_code runs only .py files pinned here.
    pins: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    def pinned_files(self, commit: str | None) -> dict[str, str] | None:
        """path -> sha256 of the files the catalog pins for `commit`, None when it pins none for it."""
        for pinned, files in self.pins:
            if pinned == commit:
                return dict(files)
        return None

    @property
    def pinned(self) -> bool:
        """True when the revision is a commit, so nothing needs resolving online."""
        return bool(COMMIT_RE.match(self.revision))

    def runs_on(self, platform_id: str) -> bool:
        """True when the stage that loads this model runs on `platform_id`."""
        return "any" in self.platforms or platform_id in self.platforms


@dataclass(frozen=True)
class Asset:
    """A file that is not on the hub (torchaudio checkpoint, nltk data) fetched from a URL."""

    key: str
    group: str
    base_url: str
    path: str
    dest: str
    venv: str
    size: int
    language: str | None = None
    sha256: str = ""
    unpack: bool = False
    platforms: tuple[str, ...] = ("any",)

    def url(self, mirror: str | None = None) -> str:
        """The download URL, with the origin replaced by `mirror` when one is given."""
        base = mirror if mirror else self.base_url
        return base.rstrip("/") + "/" + self.path

    def runs_on(self, platform_id: str) -> bool:
        """True when the stage that uses this asset runs on `platform_id`."""
        return "any" in self.platforms or platform_id in self.platforms


Item = Model | Asset


@dataclass(frozen=True)
class Selection:
    """What a cache-models.sh invocation asked for, resolved against the catalog."""

    items: tuple[Item, ...]
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Catalog:
    """All catalog entries, in file order."""

    models: tuple[Model, ...]
    assets: tuple[Asset, ...]

    @property
    def items(self) -> tuple[Item, ...]:
        return self.models + self.assets

    def get(self, key: str) -> Item:
        """The entry named `key`, or CatalogError listing close names."""
        for item in self.items:
            if item.key == key:
                return item
        close = [i.key for i in self.items if key.lower() in i.key.lower()]
        hint = f" (did you mean: {', '.join(close[:5])}?)" if close else ""
        raise CatalogError(f"unknown model key '{key}'{hint}; see ./cache-models.sh --info --all")

    def asr_model(self, name: str, group: str = "whisperx") -> Model:
        """The `group` entry serving the --asr-model `name` (also accepts its key or repo id)."""
        for m in self.models:
            if m.group == group and (name in m.asr or name in (m.key, m.repo)):
                return m
        names = sorted({n for m in self.models if m.group == group for n in m.asr})
        if group == "mlx" and name in self.asr_names():
            raise CatalogError(
                f"'{name}' has no MLX Whisper conversion; use --backend whisperx for it, or an MLX "
                f"size: {', '.join(names)}"
            )
        raise CatalogError(f"no {group} model named '{name}'; known: {', '.join(names)}")

    def asr_names(self) -> list[str]:
        """Every --asr-model name faster-whisper knows, in catalog order."""
        return [n for m in self.models if m.group == "whisperx" for n in m.asr]

    def nllb_model(self, name: str) -> Model:
        """The NLLB entry for --nllb-model `name` (variant, key or repo id)."""
        for m in self.models:
            if m.group == "nllb" and (name in m.variant or name in (m.key, m.repo)):
                return m
        names = [v for m in self.models if m.group == "nllb" for v in m.variant]
        raise CatalogError(f"no NLLB model named '{name}'; known: {', '.join(names)}")

    def indictrans2_model(self, direction: str, variant: str = DEFAULT_INDICTRANS2_VARIANT) -> Model:
        """The IndicTrans2 entry for `direction` (key indictrans2-<direction>-<variant>)."""
        if direction not in DIRECTIONS:
            raise LanguageError(f"unknown IndicTrans2 direction '{direction}'; known: {', '.join(DIRECTIONS)}")
        key = f"indictrans2-{direction}-{variant}"
        for m in self.models:
            if m.group == "indictrans2" and m.key == key:
                return m
        raise LanguageError(f"the catalog has no IndicTrans2 model {key}")

    def translation_models(
        self,
        source: str,
        targets: list[str] | tuple[str, ...],
        nllb_variant: str,
        indictrans2_variant: str = DEFAULT_INDICTRANS2_VARIANT,
    ) -> list[Model]:
        """The entries a job translating `source` into `targets` loads, in catalog order, each once.

        Every pair is routed (LanguageError for the first one refused). With source "auto" the route is decided after
        language detection, so this returns every model a route into the targets could use."""
        wanted: set[tuple[str, str | None]] = set()
        for target in targets:
            if source.strip().lower() == AUTO:
                wanted.update(possible_routes(target))
            else:
                r = route(source, target)
                wanted.add((r.model_group, r.direction))
        models = [self.indictrans2_model(d, indictrans2_variant) for g, d in wanted if g == "indictrans2" and d]
        if ("nllb", None) in wanted:
            models.append(self.nllb_model(nllb_variant))
        order = {m.key: i for i, m in enumerate(self.models)}
        return sorted(models, key=lambda m: order[m.key])

    def aligners(self, language: str) -> list[Item]:
        """The aligner entries for one language (hub repo or torchaudio checkpoint), empty if none exists."""
        return [i for i in self.items if i.group == "align" and i.language == language]

    def select(
        self,
        groups: list[str],
        *,
        asr_model: str = DEFAULT_ASR_MODEL,
        nllb_model: str = DEFAULT_NLLB_MODEL,
        languages: tuple[str, ...] = DEFAULT_LANGUAGES,
        platform_id: str | None = None,
    ) -> Selection:
        """Resolve group flags into catalog entries; warn about what cannot run here or does not exist."""
        platform_id = platform_id or host_platform()
        chosen: list[Item] = []
        warnings: list[str] = []
        for group in GROUPS:
            if group not in groups:
                continue
            if group in ("whisperx", "mlx"):
                chosen.append(self.asr_model(asr_model, group))
            elif group == "nllb":
                chosen.append(self.nllb_model(nllb_model))
            elif group == "align":
                for typed in languages:
                    lang = lookup(typed).code  # LanguageError (exit 2) for a code nobody knows
                    found = self.aligners(lang)
                    if not found:
                        warnings.append(
                            f"no default word aligner exists for '{lang}': jobs in it keep segment timestamps"
                        )
                    chosen.extend(found)
                if languages:
                    chosen.extend(i for i in self.items if i.group == "align" and i.language == "*")
            else:
                chosen.extend(i for i in self.items if i.group == group)
        for item in chosen:
            if not item.runs_on(platform_id):
                warnings.append(
                    f"{item.key} runs only on {', '.join(item.platforms)}; caching it here for another machine"
                )
        return Selection(tuple(dict.fromkeys(chosen)), tuple(warnings))


def all_groups_for(platform_id: str) -> list[str]:
    """The groups --all means on `platform_id`: MLX only on Apple Silicon."""
    return [g for g in GROUPS if g != "mlx" or platform_id == APPLE_SILICON]


def _entry(cls: type, raw: dict, defaults: dict) -> Item:
    data = {**defaults, **raw}
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise CatalogError(f"catalog entry {raw.get('key', '?')}: unknown fields {sorted(unknown)}")
    for name in ("files", "exclude", "platforms", "asr", "variant"):
        if name in data:
            data[name] = tuple(data[name])
    if "prefer" in data:
        data["prefer"] = tuple(tuple(alt) for alt in data["prefer"])
    if "pins" in data:
        data["pins"] = _pins(raw.get("key", "?"), data["pins"])
    try:
        return cls(**data)
    except TypeError as exc:
        raise CatalogError(f"catalog entry {raw.get('key', '?')}: {exc}") from None


def _pins(key: str, raw: object) -> tuple:
    """`pins` as written ({commit: {path: sha256}}), checked and made hashable."""
    if not isinstance(raw, dict):
        raise CatalogError(f"catalog entry {key}: pins must be a table of commits")
    out = []
    for commit, files in raw.items():
        if not COMMIT_RE.match(commit) or not isinstance(files, dict) or not files:
            raise CatalogError(f"catalog entry {key}: pins.{commit} must be a 40-hex commit holding path = sha256")
        bad = [p for p, h in files.items() if not isinstance(h, str) or not SHA256_RE.match(h)]
        if bad:
            raise CatalogError(f"catalog entry {key}: pins.{commit}: {bad[0]} needs a sha256 (64 lowercase hex)")
        out.append((commit, tuple(sorted(files.items()))))
    return tuple(out)


def load_catalog(path: Path | None = None) -> Catalog:
    """Parse and validate catalog.toml (or `path`)."""
    path = path or CATALOG_PATH
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    if raw.get("schema") != 1:
        raise CatalogError(f"{path}: unsupported catalog schema {raw.get('schema')!r}")
    defaults = raw.get("defaults", {})
    models = tuple(_entry(Model, m, defaults.get(m.get("group", ""), {})) for m in raw.get("model", []))
    assets = tuple(_entry(Asset, a, {}) for a in raw.get("asset", []))
    catalog = Catalog(models, assets)
    seen: set[str] = set()
    for item in catalog.items:
        if item.key in seen:
            raise CatalogError(f"{path}: duplicate key {item.key}")
        seen.add(item.key)
        if item.group not in GROUPS:
            raise CatalogError(f"{path}: {item.key} has unknown group {item.group}")
        if isinstance(item, Model) and (item.repo.count("/") != 1 or not item.files):
            raise CatalogError(f"{path}: {item.key} needs a repo ORG/NAME and file patterns")
    return catalog
