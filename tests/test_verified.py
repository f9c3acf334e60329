"""The verified-file index: a file is hashed once, then trusted only while its stat is exactly the same."""

from __future__ import annotations

import hashlib
import json
import os

from offline_speech.verified import VerifiedIndex


def test_hashes_once_then_trusts_an_unchanged_file_and_catches_same_size_damage(tmp_path):
    blob = tmp_path / "huggingface" / "blob"
    blob.parent.mkdir()
    blob.write_bytes(os.urandom(300_000))
    good = hashlib.sha256(blob.read_bytes()).hexdigest()
    link = tmp_path / "snapshot-file"
    link.symlink_to(blob)

    index = VerifiedIndex(tmp_path)
    assert index.check(link, good, 300_000) and index.hashed == 1
    index.save()
    again = VerifiedIndex(tmp_path)  # another process, later
    assert again.check(link, good, 300_000) and again.hashed == 0

    st = blob.stat()
    data = bytearray(blob.read_bytes())
    data[1234] ^= 0xFF
    blob.write_bytes(bytes(data))
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime restored: only ctime tells
    third = VerifiedIndex(tmp_path)
    assert not third.check(link, good, 300_000) and third.hashed == 1
    third.save()
    assert not VerifiedIndex(tmp_path).check(link, good)  # never trusted again until it is right


def test_a_git_blob_id_is_checked_as_git_does_and_a_broken_index_means_hashing_again(tmp_path):
    small = tmp_path / "config.json"
    small.write_text('{"a": 1}\n')
    data = small.read_bytes()
    git_id = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    index = VerifiedIndex(tmp_path)
    assert index.check(small, git_id) and not index.check(small, "0" * 40)
    index.save()
    (tmp_path / "offline-speech" / "verified.json").write_text("{garbage")
    broken = VerifiedIndex(tmp_path)
    assert broken.check(small, git_id) and broken.hashed == 1


def test_an_unwritable_index_is_no_error_the_check_still_holds(tmp_path):
    f = tmp_path / "w"
    f.write_bytes(b"x" * 10)
    sha = hashlib.sha256(b"x" * 10).hexdigest()
    (tmp_path / "offline-speech").write_text("a file where the index folder should be")
    index = VerifiedIndex(tmp_path)
    assert index.check(f, sha)
    index.save()  # cannot be written: no error, the index is only a shortcut
    assert index.dirty and VerifiedIndex(tmp_path).check(f, sha)


def test_saves_merge_with_other_processes_but_a_dropped_or_removed_file_is_not_brought_back(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a" * 10)
    b.write_bytes(b"b" * 10)
    sha_a, sha_b = (hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b))
    first = VerifiedIndex(tmp_path)
    assert first.check(a, sha_a) and first.check(b, sha_b)
    first.save()
    other = VerifiedIndex(tmp_path)  # another process: finds b damaged, and records nothing else
    b.write_bytes(b"B" * 10)
    assert not other.check(b, sha_b)
    late = VerifiedIndex(tmp_path)  # read before `other` saved: still holds b's old record
    other.save()
    late.record(a, sha_a)
    late.save()
    saved = json.loads((tmp_path / "offline-speech" / "verified.json").read_text())["files"]
    assert "a" in saved and "b" not in saved  # `late` wrote only what it learned
    check = VerifiedIndex(tmp_path)
    assert not check.check(b, sha_b) and check.hashed == 1
    a.unlink()
    third = VerifiedIndex(tmp_path)
    third.dirty = True
    third.save()
    assert json.loads((tmp_path / "offline-speech" / "verified.json").read_text())["files"] == {}
