"""Non-hub asset entries: files fetched from a URL (torchaudio aligner checkpoints, nltk punkt_tab), unpacked.

Planned with one HEAD, downloaded with urllib into a temporary file beside the destination, hashed as it is
written, renamed into place, unpacked when it is an archive; the lock records its size and sha256 and those of
every unpacked member.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import cache
from ..cache import LocalState, RemoteFile
from ..catalog import Asset
from ..util import CHUNK, atomic_write, default_mode
from .contract import ItemPlan, ItemResult, Reporter, VerifyResult
from .remote import Remote

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future


HEAD_TIMEOUT = 30
GET_TIMEOUT = 60


@dataclass(frozen=True)
class AssetEntry:
    """A catalog Asset, with what provisioning does to it."""

    item: Asset

    @property
    def key(self) -> str:
        return self.item.key

    @property
    def source(self) -> str:
        return self.item.url()

    @property
    def revision(self) -> str:
        return ""

    @property
    def conversion(self) -> None:
        return None

    def state(self, root: Path, lock: dict) -> LocalState:
        return cache.asset_state(root, self.item, lock)

    def plan(self, root: Path, state: LocalState, remote: Remote) -> ItemPlan:
        """One HEAD: is the URL there, and how big is it."""
        import urllib.error  # here, as in _download: a fast start for runs that reach no URL
        import urllib.request

        asset = self.item
        url = asset.url(remote.asset_mirror)
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=HEAD_TIMEOUT) as response:
                size = int(response.headers.get("Content-Length") or asset.size)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return ItemPlan(self, state, error=f"cannot reach {url}: {exc}")
        remote_file = RemoteFile(asset.path, size, "", asset.sha256 or None)
        return ItemPlan(self, state, asset.sha256 or None, (remote_file,), (remote_file,))

    def remaining(self, root: Path, p: ItemPlan, state: LocalState) -> ItemPlan:
        return p  # one file, fetched whole

    def start(self, root: Path, p: ItemPlan, remote: Remote, reporter: Reporter, files: Executor) -> list[Future]:
        return [files.submit(self._download, root, remote, reporter)]

    def _download(self, root: Path, remote: Remote, reporter: Reporter) -> None:
        """Fetch the file (checked against the catalog's or the lock's sha256), unpack it, record it in the lock."""
        import urllib.request

        asset = self.item
        url = asset.url(remote.asset_mirror)
        dest = root / asset.dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        recorded = cache.read_lock(root)["assets"].get(asset.key, {})
        expected = asset.sha256 or recorded.get("sha256")
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix="." + dest.name, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=GET_TIMEOUT) as response:
                total = int(response.headers.get("Content-Length") or 0)
                reporter.file_started(asset.key, asset.path, total)
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    reporter.advance(asset.key, asset.path, len(chunk))
            size = os.path.getsize(tmp)
            if total and size != total:
                raise OSError(f"{url}: got {size} of {total} bytes")
            if expected and digest.hexdigest() != expected:
                raise OSError(f"{url}: sha256 {digest.hexdigest()} does not match the expected {expected}")
            os.chmod(tmp, default_mode())  # private while written, then what a plain open() would give
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        reporter.file_done(asset.key, asset.path)
        members = unpack(dest) if asset.unpack else {}
        entry = {"url": url, "dest": asset.dest, "size": size, "sha256": digest.hexdigest(), "members": members}
        cache.update_lock(root, "assets", asset.key, entry)

    def finish(self, root: Path, p: ItemPlan) -> ItemResult:
        recorded = cache.read_lock(root)["assets"][self.key]
        return ItemResult(self.key, True, recorded["size"], self.item.dest)

    def describe_error(self, exc: BaseException, remote: Remote) -> str:
        return str(exc)

    def expected_files(self, root: Path, lock: dict) -> tuple[str | None, list[RemoteFile]]:
        entry = lock["assets"].get(self.key)
        if not entry:
            return None, []
        files = [RemoteFile(self.item.dest, entry["size"], "", entry["sha256"])]
        parent = str(Path(self.item.dest).parent)
        files += [RemoteFile(f"{parent}/{m}", i["size"], "", i["sha256"]) for m, i in entry["members"].items()]
        return entry["sha256"], files

    def local_path(self, root: Path, commit: str | None, path: str) -> Path:
        return root / path

    def repair_plan(self, root: Path, lock: dict, result: VerifyResult) -> None:
        """An asset is fetched whole again: drop the file, then plan it afresh."""
        with contextlib.suppress(FileNotFoundError):
            (root / self.item.dest).unlink()
        return None

    def remove(self, root: Path, lock: dict) -> int:
        entry = lock["assets"].get(self.key, {})
        dest = root / self.item.dest
        paths = [dest] + [dest.parent / m for m in entry.get("members", {})]
        size = sum(p.stat().st_size for p in paths if p.is_file())
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        cache.update_lock(root, "assets", self.key, None)
        return size


def unpack(archive: Path) -> dict[str, dict]:
    """Extract a zip beside itself (each member replaced atomically); return members with size and sha256."""
    members = {}
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            if info.is_dir():
                continue
            target = (archive.parent / info.filename).resolve()
            if archive.parent.resolve() not in target.parents:
                raise OSError(f"{archive.name}: member {info.filename} escapes the folder")
            data = z.read(info)
            atomic_write(target, data)
            members[info.filename] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return members
