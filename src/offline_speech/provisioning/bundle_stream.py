"""How a bundle's bytes move: the archive written plain or through zstd, each file copied by the kernel while a
second thread hashes what landed (or in large blocks, hashed in the same pass, where the kernel cannot copy), an
archive's compression told by its magic bytes, and a member's bytes moved into a staging file while they are hashed.

Apart from bundle.py and bundle_import.py, which decide what goes in and what may come out, because throughput
lives here (scripts/bench_bundle.py measures it against plain tar). sha256 runs at about the speed plain tar copies,
so the copy must not also cost the hashing core: between plain files the kernel copies (copy_file_range, else
sendfile: no pass through Python) while a second thread reads back the bytes already written to the destination and
hashes them, so what is checked is exactly what was written. Through a compressor or decompressor, reading, hashing
and writing overlap in three threads: file reads and writes and hashlib's updates of large buffers release the GIL.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import hashlib
import lzma
import os
import queue
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..util import atomic_output

BLOCK = 4 << 20  # per read, hash and write: large enough that per-call overhead vanishes
_BUFFERS = 4  # blocks in flight between the reader, the hasher and the writer
_SEND = 16 << 20  # per kernel copy call: progress moves on a big file, and the read-back hash trails closely
# What a kernel copy raises where it cannot copy between two files (macOS: sendfile only to sockets; a pipe).
_NO_KERNEL_COPY = {
    errno.EXDEV,
    errno.ENOSYS,
    errno.EINVAL,
    errno.EOPNOTSUPP,
    errno.EBADF,
    errno.ENOTSUP,
    errno.ENOTSOCK,
    errno.ESPIPE,
}
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_SUFFIXES = (".zst", ".tzst")
ZSTD_LEVEL = 1  # weights barely compress: a fast level, so compression never slows the export much
_MAGIC = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"BZh": "bz2", ZSTD_MAGIC: "zstd"}

Progress = Callable[[int], None]


def zstandard():
    """The zstandard module, or None where it is not installed (the core lock has it)."""
    try:
        import zstandard as module
    except ImportError:
        return None
    return module


def wants_zstd(dest: Path) -> bool:
    """Whether an export name asks for zstd (NAME.tar.zst, NAME.tzst)."""
    return dest.name.endswith(ZSTD_SUFFIXES)


def decode_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged or truncated compressed archive raises, besides tarfile's own errors."""
    zstd = zstandard()
    return (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError, *((zstd.ZstdError,) if zstd else ()))


class Hasher:
    """The hash a file id names, fed block by block: sha256 for a 64-hex id, a git blob sha1 (which needs the size
    up front) for a 40-hex one."""

    def __init__(self, file_id: str, size: int):
        self.h = hashlib.sha256() if len(file_id) == 64 else hashlib.sha1(f"blob {size}\0".encode())

    def update(self, data) -> None:
        self.h.update(data)

    def hexdigest(self) -> str:
        return self.h.hexdigest()


@contextlib.contextmanager
def open_output(dest: Path, zstd: bool) -> Iterator[BinaryIO]:
    """The archive being written: renamed to `dest` only when the block ends without an error; through a
    multi-threaded zstd compressor when `zstd`. Not fsynced (as tar and cp do not): an archive a crash cut short
    fails --import's checks (each member is hashed, the manifest comes last), so it is never taken for whole."""
    with atomic_output(dest, durable=False) as raw:
        if not zstd:
            yield raw
            return
        compressor = zstandard().ZstdCompressor(level=ZSTD_LEVEL, threads=-1, write_checksum=True)
        with compressor.stream_writer(raw, closefd=False) as out:
            yield out


def copy_file(out: BinaryIO, source: Path, size: int, hasher: Hasher | None, progress: Progress, kernel: bool) -> int:
    """Copy `source` to `out`, `hasher` (if any) seeing every byte; the bytes copied. With `kernel` (`out` a plain
    file opened read-write), the kernel copies and `hasher` is fed what landed in `out`."""
    with open(source, "rb", buffering=0) as src:
        if kernel:
            out.flush()
            sent = kernel_copy(src.fileno(), 0, size, out.fileno(), hasher, progress)
            if sent is not None:
                return sent
        return pump(src.readinto, size, out.write, hasher, progress)


def kernel_copy(src: int, offset: int, size: int, dst: int, hasher: Hasher | None, progress: Progress) -> int | None:
    """Copy `size` bytes of descriptor `src` from `offset` to descriptor `dst` at its position (which moves on),
    by the kernel; while it copies, a second thread reads back from `dst` what has landed (so `dst` must be open for
    reading too) and feeds `hasher`. The bytes copied (fewer when `src` ends early); None, with nothing written,
    where the kernel cannot copy between these two files."""
    if hasher is not None and not hasattr(os, "preadv"):
        return None
    start = os.lseek(dst, 0, os.SEEK_CUR)
    copy = _kernel_copier(src, dst)
    readback = _ReadBack(dst, start, hasher) if hasher is not None else None
    done = 0
    try:
        while done < size:
            n = copy(offset + done, min(_SEND, size - done))
            if n is None:
                return None
            if n == 0:
                break
            done += n
            if readback is not None:
                readback.advance(n)
            progress(n)
        if readback is not None:
            readback.finish()
    finally:
        if readback is not None:
            readback.stop()
    return done


def _kernel_copier(src: int, dst: int) -> Callable[[int, int], int | None]:
    """copy(offset, count) -> bytes copied from `src` at `offset` to `dst` at its position: copy_file_range (which
    may share extents on file systems that can), else sendfile; None when neither works here (nothing copied)."""
    ways = [lambda off, n: os.copy_file_range(src, dst, n, off)] if hasattr(os, "copy_file_range") else []
    if hasattr(os, "sendfile"):
        ways.append(lambda off, n: os.sendfile(dst, src, off, n))
    copied = False

    def copy(offset: int, count: int) -> int | None:
        nonlocal copied
        while ways:
            try:
                n = ways[0](offset, count)
            except OSError as exc:
                if copied or exc.errno not in _NO_KERNEL_COPY:
                    raise
                ways.pop(0)  # this way cannot copy between these files: the next one, or None
                continue
            if n == 0 and not copied:  # some file systems answer a first copy with 0: try the next way
                ways.pop(0)
                continue
            copied = True
            return n
        return None

    return copy


class _ReadBack:
    """A thread that hashes `dst` from `start` as far as the copier has written (advance), reading it back in blocks
    (from the page cache: the bytes just written); finish() waits until every written byte is hashed."""

    def __init__(self, dst: int, start: int, hasher: Hasher):
        self.dst, self.start, self.hasher = dst, start, hasher
        self.written = 0
        self.closing = self.stopped = False
        self.error: BaseException | None = None
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="bundle-readback", daemon=True)
        self.thread.start()

    def advance(self, n: int) -> None:
        with self.cond:
            self.written += n
            self.cond.notify()

    def finish(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify()
        self.thread.join()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify()
        self.thread.join()

    def _run(self) -> None:
        view = memoryview(bytearray(BLOCK))
        hashed = 0
        try:
            while True:
                with self.cond:
                    while self.written == hashed and not (self.closing or self.stopped):
                        self.cond.wait()
                    if self.stopped or self.written == hashed:
                        return
                    limit = self.written
                while hashed < limit:
                    n = os.preadv(self.dst, [view[: min(BLOCK, limit - hashed)]], self.start + hashed)
                    if n == 0:
                        raise OSError(errno.EIO, "the bytes just written cannot be read back")
                    self.hasher.update(view[:n])
                    hashed += n
        except BaseException as exc:  # raised by finish() in the copier's thread
            self.error = exc


def archive_kind(archive: Path) -> str:
    """What an archive's first bytes say it is: 'zstd', 'gzip', 'xz', 'bz2', else 'tar'."""
    with open(archive, "rb") as f:
        head = f.read(6)
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), "tar")


def open_archive(stack: contextlib.ExitStack, archive: Path) -> BinaryIO:
    """The archive's tar stream, decompressed as archive_kind says (zstd needs the zstandard module)."""
    kind = archive_kind(archive)
    raw = stack.enter_context(open(archive, "rb"))
    if kind == "tar":
        return raw
    if kind == "zstd":
        reader = (
            zstandard().ZstdDecompressor().stream_reader(raw, read_size=BLOCK, read_across_frames=True, closefd=False)
        )
        return stack.enter_context(reader)
    opener = {"gzip": lambda f: gzip.GzipFile(fileobj=f), "xz": lzma.LZMAFile, "bz2": bz2.BZ2File}[kind]
    return stack.enter_context(opener(raw))


def pump(readinto: Callable, size: int, write: Callable, hasher: Hasher | None, progress: Progress) -> int:
    """Move `size` bytes from `readinto(buffer) -> n` to `write(view)`, `hasher` seeing each block in between;
    the bytes moved (fewer when the source ends early). Beyond one block, reading, hashing and writing overlap."""
    if size <= BLOCK:
        buf = memoryview(bytearray(max(size, 1)))
        got = 0
        while got < size and (n := readinto(buf[: size - got])):
            _hash_and_write(buf[:n], write, hasher, progress)
            got += n
        return got
    return _Pipeline(readinto, size, write).run(hasher, progress)


def _hash_and_write(view: memoryview, write: Callable, hasher: Hasher | None, progress: Progress) -> None:
    if hasher is not None:
        hasher.update(view)
    write(view)
    progress(len(view))


class _Pipeline:
    """A reader thread and a writer thread around the caller's thread, which hashes: buffers go free -> read ->
    hashed -> written -> free. An error in any of the three stops all of them and is raised in the caller."""

    def __init__(self, readinto: Callable, size: int, write: Callable):
        self.readinto, self.size, self.write = readinto, size, write
        self.free: queue.Queue = queue.Queue()
        self.read: queue.Queue = queue.Queue()
        self.hashed: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        for _ in range(_BUFFERS):
            self.free.put(memoryview(bytearray(BLOCK)))

    def _get(self, q: queue.Queue):
        while not self.stop.is_set():
            with contextlib.suppress(queue.Empty):
                return q.get(timeout=0.1)
        return None

    def _reader(self) -> None:
        left = self.size
        try:
            while left > 0 and (buf := self._get(self.free)) is not None:
                n = self.readinto(buf[: min(BLOCK, left)])
                if not n:
                    break
                self.read.put(buf[:n])
                left -= n
        except BaseException as exc:  # handed to the caller's thread
            self.error = self.error or exc
            self.stop.set()
        self.read.put(None)

    def _writer(self) -> None:
        try:
            while (view := self._get(self.hashed)) is not None:
                self.write(view)
                self.free.put(memoryview(view.obj))
        except BaseException as exc:  # handed to the caller's thread
            self.error = self.error or exc
            self.stop.set()

    def run(self, hasher: Hasher | None, progress: Progress) -> int:
        reader = threading.Thread(target=self._reader, name="bundle-read", daemon=True)
        writer = threading.Thread(target=self._writer, name="bundle-write", daemon=True)
        reader.start()
        writer.start()
        got = 0
        try:
            while (view := self._get(self.read)) is not None:
                if hasher is not None:
                    hasher.update(view)
                self.hashed.put(view)
                got += len(view)
                progress(len(view))
            self.hashed.put(None)  # the writer finishes what is queued, then stops
            writer.join()
        finally:
            self.stop.set()
            reader.join()
            writer.join()
        if self.error is not None:
            raise self.error
        return got
