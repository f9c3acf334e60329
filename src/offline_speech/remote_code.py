"""Whether a model's own code (transformers' trust_remote_code) may run: only code the catalog reviewed and pinned.

Every module transformers may import for a model (each .py of its snapshot, each class its config's auto_map names,
in this repo or another) must match the sha256 the catalog pins for the commit it comes from, unless the user allows
it for one run (run-pipeline.sh --trust-remote-code). Preflight asks before any stage starts; the translate stage
asks again before it imports anything. Standard library only: both the core and the translation venv import it.
"""

from __future__ import annotations

import json
from pathlib import Path

from .util import sha256_file


def remote_modules(snapshot: Path, repo: str) -> list[tuple[str, str]]:
    """Every module transformers may import for this model, as (repo, file): each .py of the snapshot, and each
    class its config.json and tokenizer_config.json `auto_map` name: `module.Class` from this repo, and
    `org/name--module.Class` from another repo, which transformers loads from that repo's cached snapshot."""
    modules = {(repo, p.relative_to(snapshot).as_posix()) for p in snapshot.rglob("*.py")}
    for name in ("config.json", "tokenizer_config.json"):
        try:
            data = json.loads((snapshot / name).read_text())
        except (OSError, ValueError):
            continue
        auto_map = data.get("auto_map") if isinstance(data, dict) else None
        for value in auto_map.values() if isinstance(auto_map, dict) else ():
            for ref in value if isinstance(value, list) else [value]:
                if isinstance(ref, str) and "." in ref:
                    source, _, dotted = ref.rpartition("--")
                    modules.add((source or repo, dotted.rsplit(".", 1)[0].replace(".", "/") + ".py"))
    return sorted(modules)


def _pinned(folder: Path, rel: str, pins: dict) -> bool:
    path = folder / rel
    return path.is_file() and pins.get(rel) == sha256_file(path)


def remote_code_refusal(spec: dict) -> str | None:
    """Why the model's remote code must not run (one line naming the fix), None when it may: no remote code, or
    every module transformers may import for it (remote_modules) pinned by the catalog for the commit it comes
    from (`code_sha256` for this repo's, `foreign_code` for another catalog repo's cached snapshot), or allowed
    for this run."""
    if not spec.get("trust_remote_code") or spec.get("remote_code_allowed"):
        return None
    snapshot = Path(spec["path"])
    repo = spec.get("repo") or ""
    pins = spec.get("code_sha256") or {}
    foreign = spec.get("foreign_code") or {}
    unpinned = []
    for source, rel in remote_modules(snapshot, repo):
        if source == repo:
            ok = _pinned(snapshot, rel, pins)
        else:
            other = foreign.get(source) or {}
            ok = bool(other) and _pinned(Path(other["path"]), rel, other.get("code_sha256") or {})
        if not ok:
            unpinned.append(rel if source == repo else f"{source}--{rel}")
    if not unpinned:
        return None
    why = "the catalog pins no reviewed code for this commit" if not pins else "not the code the catalog pins for it"
    return (
        f"{spec.get('key', snapshot.name)}@{str(spec.get('commit'))[:14]} would run remote code "
        f"({', '.join(unpinned)}): {why}; "
        f"refused. Read it in {snapshot}, then run again with --trust-remote-code (for that run only)"
    )
