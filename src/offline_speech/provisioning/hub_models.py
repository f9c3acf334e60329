"""Hub model entries: a repo (or the part of it a loader requests) at a commit, in huggingface_hub's own layout.

Planned from the hub's tree listing (cached in `trees/` once fetched, so a second plan asks only for the
revision), fetched file by file through the download engine, recorded with the refs loaders ask for and a lock
entry listing every file with its size and hash.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .. import cache
from ..cache import LocalState, RemoteFile
from ..catalog import Model
from ..verified import VerifiedIndex
from .contract import ItemPlan, ItemResult, Reporter, VerifyResult
from .convert import Ct2Conversion, conversion_for
from .download import drop_file, fetch_hub_file
from .hub_errors import describe_hub_error
from .remote import Remote

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future


@dataclass(frozen=True)
class ModelEntry:
    """A catalog Model, with what provisioning does to it; `commit`, when given, is provisioned instead of what
    the catalog's revision resolves to (--lock-file's pin, --update's newest)."""

    item: Model
    commit: str | None = None

    @property
    def key(self) -> str:
        return self.item.key

    @property
    def source(self) -> str:
        return self.item.repo

    @property
    def revision(self) -> str:
        return self.item.revision

    @property
    def conversion(self) -> Ct2Conversion | None:
        return conversion_for(self.item)

    def state(self, root: Path, lock: dict) -> LocalState:
        if self.commit is None:
            return cache.model_state(root, self.item, lock)
        # Judged at the commit asked for, as if the catalog pinned it (the ref checked is "main" either way).
        return cache.model_state(root, replace(self.item, revision=self.commit), lock)

    def plan(self, root: Path, state: LocalState, remote: Remote) -> ItemPlan:
        """The files to fetch, from the hub's tree listing. A gated repo is asked like any other (a mirror may
        serve it without a token); the hub's answer decides."""
        try:
            return self._plan_online(root, state, remote)
        except Exception as exc:  # one model's failure must not stop the others
            return ItemPlan(self, state, error=self.describe_error(exc, remote))

    def _plan_online(self, root: Path, state: LocalState, remote: Remote) -> ItemPlan:
        from huggingface_hub import RepoFile, get_hf_file_metadata, hf_hub_url

        model = self.item
        api = remote.api()
        commit = self.commit or (
            model.revision if model.pinned else api.model_info(model.repo, revision=model.revision).sha
        )
        tree = cache.read_tree(root, model.repo, commit)
        if tree is None:
            tree = {
                f.path: RemoteFile(f.path, f.size, f.blob_id, f.lfs.sha256 if f.lfs else None, f.xet_hash)
                for f in api.list_repo_tree(model.repo, revision=commit, recursive=True)
                if isinstance(f, RepoFile)
            }
        needed = cache.needed_files(model, tree)
        if not needed:
            error = f"no file of {model.repo}@{commit[:8]} matches the catalog patterns {list(model.files)}"
            return ItemPlan(self, state, commit, error=error)
        to_fetch = self._absent(root, commit, needed)
        if model.gated and to_fetch:
            # One HEAD tells whether this token may download, before any byte of a big repo is fetched.
            url = hf_hub_url(model.repo, to_fetch[0].path, revision=commit, endpoint=remote.endpoint)
            get_hf_file_metadata(url, token=remote.token or False)
        return ItemPlan(self, state, commit, tuple(needed), to_fetch, tree)

    def _absent(self, root: Path, commit: str, files) -> tuple[RemoteFile, ...]:
        """The files not in the snapshot with their listed size and content (a damaged one is fetched again)."""
        index = VerifiedIndex(root)
        missing, damaged, _ = cache.snapshot_damage(root, self.item.repo, commit, files, index)
        index.save()
        return tuple(f for f in files if f.path in missing or f.path in damaged)

    def remaining(self, root: Path, p: ItemPlan, state: LocalState) -> ItemPlan:
        if not p.commit:
            return p
        return ItemPlan(self, state, p.commit, p.needed, self._absent(root, p.commit, p.needed), p.tree)

    def start(self, root: Path, p: ItemPlan, remote: Remote, reporter: Reporter, files: Executor) -> list[Future]:
        """Record the tree listing, drop files there with the wrong size (hf_hub_download would trust them), then
        submit one download per missing file."""
        assert p.commit
        repo = self.item.repo
        cache.write_tree(root, repo, p.commit, p.tree)
        snapshot = cache.snapshot_dir(root, repo, p.commit)
        for f in p.to_fetch:
            if cache.local_file_size(snapshot, f.path) is not None:
                drop_file(root, repo, p.commit, f.path)
        return [files.submit(fetch_hub_file, root, self.key, repo, p.commit, f, remote, reporter) for f in p.to_fetch]

    def finish(self, root: Path, p: ItemPlan) -> ItemResult:
        assert p.commit
        return record_snapshot(root, self.item, p.commit, list(p.needed), p.bytes_to_fetch)

    def describe_error(self, exc: BaseException, remote: Remote) -> str:
        return describe_hub_error(exc, self.item, remote, self.commit)

    def expected_files(self, root: Path, lock: dict) -> tuple[str | None, list[RemoteFile]]:
        entry = lock["models"].get(self.key)
        if entry and entry.get("repo") == self.item.repo:
            files = [RemoteFile(f["path"], f["size"], f.get("git-sha1", ""), f.get("sha256")) for f in entry["files"]]
            return entry["commit"], files
        state = self.state(root, lock)
        return state.commit, list(state.needed)

    def local_path(self, root: Path, commit: str | None, path: str) -> Path:
        assert commit
        return cache.snapshot_dir(root, self.item.repo, commit) / path

    def repair_plan(self, root: Path, lock: dict, result: VerifyResult) -> ItemPlan | None:
        """Drop the damaged files and plan exactly those again; a model never provisioned is planned afresh."""
        if result.status == "missing":
            return None
        commit, files = self.expected_files(root, lock)
        assert commit
        repo = self.item.repo
        bad = {problem.path for problem in result.problems}
        for path in bad:
            drop_file(root, repo, commit, path)
        tree = cache.read_tree(root, repo, commit) or {f.path: f for f in files}
        needed = tuple(f for f in files if f.path in tree)
        to_fetch = tuple(f for f in needed if f.path in bad)
        return ItemPlan(self, self.state(root, lock), commit, needed, to_fetch, tree)

    def remove(self, root: Path, lock: dict) -> int:
        """Remove the repo's folder and the shared store payloads (Xet files) no other cached repo links to."""
        target = cache.repo_dir(root, self.item.repo)
        payloads = cache.repo_store_payloads(root, self.item.repo)
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file() and not p.is_symlink())
        size += cache.release_store_payloads(root, payloads, besides=target)
        shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(cache.hub_dir(root) / ".locks" / target.name, ignore_errors=True)
        cache.update_lock(root, "models", self.key, None)
        if self.conversion is not None:
            size += self.conversion.remove(root)
        return size


def record_snapshot(root: Path, model: Model, commit: str, needed: list[RemoteFile], fetched: int) -> ItemResult:
    """Write the refs loaders ask for and record the entry in the lock, once every file is in place."""
    snapshot = cache.snapshot_dir(root, model.repo, commit)
    absent = [f.path for f in needed if cache.local_file_size(snapshot, f.path) != f.size]
    if absent:
        return ItemResult(model.key, False, fetched, f"still missing after download: {', '.join(absent)}")
    cache.write_ref(root, model.repo, "main" if model.pinned else model.revision, commit)
    cache.update_lock(root, "models", model.key, cache.model_lock_entry(model, commit, needed))
    return ItemResult(model.key, True, fetched, f"{model.repo}@{commit[:8]}")
