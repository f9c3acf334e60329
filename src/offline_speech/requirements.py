"""What a job needs, and the command that fetches each: the one place that knows it.

A job loads its ASR model (the catalog entry for its --asr-model in its backend's group), a word aligner for its
language with nltk punkt_tab beside it (unless --no-align), and the translation models its routes use (IndicTrans2
by direction, NLLB of its --nllb-model). Each stage's entry in pipeline/registry.py names its `*_needs` function
here; `registry.job_needs` gathers them for a job's stages: prepare-job records them (jobs.py), cache-models --job
fetches them. run-pipeline's preflight and stages resolve them against the cache (`resolve_*`), and every
"not cached" message names the cache-models.sh command from `fetch_command`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import cache
from .catalog import APPLE_SILICON, COMMIT_RE, DEFAULT_NLLB_MODEL, Catalog, Item, Model
from .languages import AUTO, LanguageError, lookup, route
from .schema import Job
from .settings import host_platform
from .stages.base import ModelSpec

CACHE_MODELS = "./cache-models.sh"


@dataclass(frozen=True)
class Need:
    """A catalog entry a job loads, and the command that fetches it."""

    item: Item
    fetch: str


def fetch_command(item: Item, name: str | None = None) -> str:
    """The cache-models.sh command that fetches `item`; `name` is the --asr-model name or the language it was
    chosen by (an aligner's, or punkt_tab's, which serves every language)."""
    if item.group in ("whisperx", "mlx"):
        flags = f"--{item.group} --asr-model {name or item.asr[0]}"
    elif item.group == "nllb":
        flags = f"--nllb --nllb-model {item.variant[0]}"
    elif item.group == "align":
        flags = f"--align --languages {name or item.language}"
    else:
        flags = f"--{item.group}"
    return f"{CACHE_MODELS} {flags}"


def fix_for(state: cache.LocalState, fetch: str) -> str:
    """The command that mends an entry: its fetch command, and --verify --repair when its files are damaged."""
    return f"{fetch} --verify --repair" if state.status == "corrupt" else fetch


def asr_entry(catalog: Catalog, job: Job) -> Model:
    """The job's ASR model in its backend's group (CatalogError for a name the catalog lacks)."""
    return catalog.asr_model(job.asr_model, "mlx" if job.backend == "mlx" else "whisperx")


def aligner_entries(catalog: Catalog, language: str) -> list[Item]:
    """The aligner for `language` and nltk punkt_tab (which whisperx's align() needs), or [] when none exists."""
    found = catalog.aligners(language)
    if not found:
        return []
    return [found[0], *(i for i in catalog.items if i.group == "align" and i.language == "*")]


def nllb_name(catalog: Catalog, job: Job) -> str:
    """The job's --nllb-model. Schema 1 jobs did not record it: the NLLB entry among their models, else the default."""
    if job.nllb_model:
        return job.nllb_model
    recorded = [i.key for i in catalog.models if i.group == "nllb" and i.key in job.models]
    return recorded[0] if recorded else DEFAULT_NLLB_MODEL


def asr_needs(catalog: Catalog, job: Job) -> tuple[list[Need], list[str]]:
    """The ASR model (CatalogError for a name the catalog lacks)."""
    asr = asr_entry(catalog, job)
    return [Need(asr, fetch_command(asr, job.asr_model))], []


def aligner_needs(catalog: Catalog, job: Job) -> tuple[list[Need], list[str]]:
    """The aligner and punkt_tab when the job aligns a known language; a note when none exists for it."""
    if not job.align:
        return [], []
    # an auto source is aligned with its detected language's aligner when cached: the job is provisioned with
    # those of the languages it names (--align-languages, default en,hi)
    languages = job.align_languages if job.source_language == AUTO else (job.source_language,)
    needs: list[Need] = []
    notes: list[str] = []
    for language in languages:
        found = aligner_entries(catalog, language)
        if not found:
            notes.append(
                f"no word aligner exists for '{language}': "
                f"{'jobs in it keep' if job.source_language == AUTO else 'the job keeps'} segment timestamps"
            )
        needs += [
            Need(item, fetch_command(item, language)) for item in found if item.key not in {n.item.key for n in needs}
        ]
    return needs, notes


def translator_needs(catalog: Catalog, job: Job) -> tuple[list[Need], list[str]]:
    """Every translation model the job's routes use (every route into the targets for an auto source).
    LanguageError for a pair no model translates."""
    models = catalog.translation_models(job.source_language, job.target_languages, nllb_name(catalog, job))
    return [Need(model, fetch_command(model)) for model in models], []


DIARIZATION_GROUP = "diarization"


def diarization_entry(catalog: Catalog) -> Model:
    """pyannote community-1: diarization, and (its embedding subfolder) the voices of enrolled speakers."""
    return next(i for i in catalog.items if i.group == DIARIZATION_GROUP)


def diarization_needs(catalog: Catalog, job: Job) -> tuple[list[Need], list[str]]:
    """The diarization model, for --diarize jobs."""
    if not job.diarize:
        return [], []
    item = diarization_entry(catalog)
    return [Need(item, fetch_command(item))], []


def resolve_diarization(catalog: Catalog, root: Path, lock: dict) -> tuple[ModelSpec | None, str]:
    """The diarization model spec with the lock's file list (the stage verifies the snapshot against it before
    pyannote unpickles anything), or None and the fix."""
    item = diarization_entry(catalog)
    state = cache.model_state(root, item, lock)
    entry = lock["models"].get(item.key)
    if state.status != "complete" or not entry or entry.get("commit") != state.commit:
        return None, (
            f"{item.key} is {state.status} in the cache {root}: {fix_for(state, fetch_command(item))} "
            f"(it is gated: accept its licence at https://huggingface.co/{item.repo} and set HF_TOKEN once; "
            f"loading it offline needs no token)"
        )
    return {
        "key": item.key,
        "commit": state.commit,
        "path": str(cache.snapshot_dir(root, item.repo, state.commit)),
        "files": entry["files"],
        "cache": str(root),
    }, ""


# ---- resolved against the cache (run-pipeline) ----------------------------------------------------------------


def resolve_asr(catalog: Catalog, root: Path, lock: dict, job: Job) -> tuple[ModelSpec | None, str]:
    """The ASR model spec, or None and the problem with its fix (not cached; mlx off Apple Silicon)."""
    model = asr_entry(catalog, job)
    state = cache.model_state(root, model, lock)
    if state.status != "complete":
        return (
            None,
            (
                f"model {model.key} is {state.status} in the cache {root}: "
                f"{fix_for(state, fetch_command(model, job.asr_model))}"
            ),
        )
    if job.backend == "mlx" and host_platform() != APPLE_SILICON:
        return None, (
            f"the mlx backend needs Apple Silicon and this machine is {host_platform()}: "
            "prepare the job with --backend whisperx"
        )
    spec: ModelSpec = {
        "key": model.key,
        "repo": model.repo,
        "commit": state.commit,
        "path": str(cache.snapshot_dir(root, model.repo, state.commit)),
    }
    # how the model is loaded is the job's choice: jobs that differ in it run in separate stage processes
    spec.update({k: job.decoding[k] for k in ("device", "compute_type") if k in job.decoding})
    return spec, ""


def resolve_aligner(catalog: Catalog, root: Path, lock: dict, language: str) -> tuple[ModelSpec | None, str]:
    """The aligner spec for a language, or None and why (no aligner exists / it or punkt_tab is not cached)."""
    items = aligner_entries(catalog, language)
    if not items:
        return None, f"no word aligner exists for '{language}'"
    item, punkt = items
    fetch = fetch_command(item, language)
    state = cache.item_state(root, item, lock)
    if state.status != "complete":
        return None, f"aligner {item.key} is {state.status} in the cache: {fix_for(state, fetch)}"
    punkt_state = cache.item_state(root, punkt, lock)
    if punkt_state.status != "complete":
        return (
            None,
            (
                f"{punkt.key} (sentence splitter for alignment) is {punkt_state.status} in the cache: "
                f"{fix_for(punkt_state, fetch)}"
            ),
        )
    if isinstance(item, Model):
        return {
            "key": item.key,
            "kind": "hub",
            "language": language,
            "commit": state.commit,
            "path": str(cache.snapshot_dir(root, item.repo, state.commit)),
            "fetch": fetch,
        }, ""
    return {
        "key": item.key,
        "kind": "torchaudio",
        "language": language,
        "commit": state.commit,
        "path": str(root / item.dest),
        "fetch": fetch,
    }, ""


def foreign_code(catalog: Catalog, root: Path, model: Model) -> dict[str, dict]:
    """The other catalog repos whose code `model`'s auto_map could name: per repo, the snapshot transformers would
    load it from (what `main` points to in the cache) and the code the catalog pins for that commit. A repo outside
    the catalog is never here, so code named from it is refused."""
    found = {}
    for other in catalog.models:
        commit = cache.read_ref(root, other.repo, "main")
        if other.trust_remote_code and other.repo != model.repo and commit and COMMIT_RE.match(commit):
            found[other.repo] = {
                "path": str(cache.snapshot_dir(root, other.repo, commit)),
                "code_sha256": other.pinned_files(commit) or {},
            }
    return found


def translation_plan(
    catalog: Catalog, root: Path, lock: dict, job: Job, language: str
) -> tuple[list[dict], dict[str, ModelSpec], list[str]]:
    """For a job whose source is `language`: (targets with their route, model specs by key, problems with fixes).

    A target equal to the source (possible when the source was "auto") is left out: the source transcript is it."""
    targets: list[dict] = []
    models: dict[str, ModelSpec] = {}
    problems: list[str] = []
    source = lookup(language).code
    for target in job.target_languages:
        if lookup(target).code == source:
            continue
        try:
            r = route(source, target)
        except LanguageError as exc:
            problems.append(str(exc))
            continue
        if r.model_group == "indictrans2":
            model = catalog.indictrans2_model(r.direction)
        else:
            model = catalog.nllb_model(nllb_name(catalog, job))
        targets.append({"language": target, "model": model.key, "src": r.src_code, "tgt": r.tgt_code})
        if model.key in models:
            continue
        state = cache.model_state(root, model, lock)
        if state.status != "complete":
            problems.append(
                f"translation model {model.key} ({source} -> {target}) is {state.status} in the cache: "
                f"{fix_for(state, fetch_command(model))}"
            )
            models[model.key] = {}
            continue
        ct2 = cache.derived_state(root, model, lock) if model.group == "nllb" else None
        models[model.key] = {
            "key": model.key,
            "repo": model.repo,
            "commit": state.commit,
            "kind": r.model_group,
            "path": str(cache.snapshot_dir(root, model.repo, state.commit)),
            "trust_remote_code": model.trust_remote_code,
            "code_sha256": model.pinned_files(state.commit),
            "foreign_code": foreign_code(catalog, root, model) if model.trust_remote_code else {},
            "ct2": str(ct2.location) if ct2 and ct2.status == "complete" else None,
        }
    return targets, models, problems
