"""How a bundle's bytes move: the kernel copies between plain files while a second thread hashes what landed in the
destination; where the kernel cannot copy, nothing is written and the caller streams instead."""

from __future__ import annotations

import hashlib
import os

import pytest

from offline_speech.provisioning import bundle_stream
from offline_speech.provisioning.bundle_stream import Hasher, copy_file, kernel_copy


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture()
def small_chunks(monkeypatch):
    """Kernel copies of 1 MiB per call, so a few MiB cross many chunks and the read-back trails the copier."""
    monkeypatch.setattr(bundle_stream, "_SEND", 1 << 20)


def test_the_kernel_copies_and_the_bytes_that_landed_are_hashed(tmp_path, small_chunks):
    data = os.urandom((5 << 20) + 12345)
    src = tmp_path / "src"
    src.write_bytes(b"skip me" + data)
    dst = tmp_path / "dst"
    header = b"H" * 512  # the destination already holds a tar header: hashing starts after it
    seen = []
    with open(src, "rb") as s, open(dst, "w+b", buffering=0) as d:
        d.write(header)
        hasher = Hasher("0" * 64, len(data))
        assert kernel_copy(s.fileno(), 7, len(data), d.fileno(), hasher, seen.append) == len(data)
        assert os.lseek(d.fileno(), 0, os.SEEK_CUR) == len(header) + len(data)  # the position moved on
    assert dst.read_bytes() == header + data
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    assert sum(seen) == len(data) and len(seen) == 6  # progress per chunk


def test_a_git_blob_id_is_hashed_as_git_does(tmp_path):
    data = b"{}\n" * 1000
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(data)
    with open(src, "rb") as s, open(dst, "w+b", buffering=0) as d:
        hasher = Hasher("0" * 40, len(data))
        assert kernel_copy(s.fileno(), 0, len(data), d.fileno(), hasher, lambda n: None) == len(data)
    assert hasher.hexdigest() == _git_sha1(data)


def test_a_source_that_ends_early_copies_what_there_is(tmp_path, small_chunks):
    data = os.urandom(3 << 20)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(data)
    with open(src, "rb") as s, open(dst, "w+b", buffering=0) as d:
        hasher = Hasher("0" * 64, 4 << 20)
        assert kernel_copy(s.fileno(), 1 << 20, 4 << 20, d.fileno(), hasher, lambda n: None) == 2 << 20
    assert dst.read_bytes() == data[1 << 20 :]
    assert hasher.hexdigest() == hashlib.sha256(data[1 << 20 :]).hexdigest()


def test_where_the_kernel_cannot_copy_nothing_is_written_and_copy_file_streams(tmp_path):
    read_end, write_end = os.pipe()  # neither copy_file_range nor sendfile reads from a pipe
    os.write(write_end, b"x" * 1000)
    os.close(write_end)
    dst = tmp_path / "dst"
    with open(dst, "w+b", buffering=0) as d:
        assert kernel_copy(read_end, 0, 1000, d.fileno(), Hasher("0" * 64, 1000), lambda n: None) is None
    os.close(read_end)
    assert dst.read_bytes() == b""

    data = os.urandom(200_000)
    src = tmp_path / "src"
    src.write_bytes(data)
    with open(tmp_path / "out", "wb") as out:  # write-only: copy_file streams, hashing as it goes
        hasher = Hasher("0" * 64, len(data))
        assert copy_file(out, src, len(data), hasher, lambda n: None, kernel=False) == len(data)
    assert (tmp_path / "out").read_bytes() == data and hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_destination_that_cannot_be_read_back_is_an_error_not_a_pass(tmp_path):
    data = os.urandom(100_000)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(data)
    with open(src, "rb") as s, open(dst, "wb", buffering=0) as d:  # write-only: the read-back hash cannot run
        with pytest.raises(OSError):
            kernel_copy(s.fileno(), 0, len(data), d.fileno(), Hasher("0" * 64, len(data)), lambda n: None)
