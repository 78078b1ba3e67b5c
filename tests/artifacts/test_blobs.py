"""Content-addressed blobs: dedup, atomic visibility, verified reads."""

from __future__ import annotations

import hashlib
import os

import pytest

from keel.artifacts.blobs import BlobStore
from keel.errors import IntegrityError, InvalidInput, NotFound


def test_put_get_roundtrip_and_dedup(tmp_path):
    store = BlobStore(str(tmp_path / "blobs"))
    sha, size = store.put_bytes(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest() and size == 5
    again, _ = store.put_bytes(b"hello")
    assert again == sha
    files = [p for p in (tmp_path / "blobs" / "sha256").rglob("*") if p.is_file()]
    assert len(files) == 1  # identical content stored once
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []  # no temp file left behind
    assert store.get_bytes(sha) == b"hello"


def test_put_file_streams_large_content(tmp_path):
    src = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks
    src.write_bytes(data)
    store = BlobStore(str(tmp_path / "blobs"))
    sha, size = store.put_file(src)
    assert size == len(data) and sha == hashlib.sha256(data).hexdigest()
    out = store.copy_to(sha, tmp_path / "out" / "big.bin")
    assert out.read_bytes() == data


def test_corrupted_blob_is_refused_on_every_read(tmp_path):
    store = BlobStore(str(tmp_path / "blobs"))
    sha, _ = store.put_bytes(b"original content")
    path = store.path_of(sha)
    os.chmod(path, 0o644)
    with open(path, "wb") as fh:
        fh.write(b"tampered content")
    with pytest.raises(IntegrityError, match=f"model.bin is corrupt: content does not match sha256 {sha}"):
        store.get_bytes(sha, name="model.bin")
    with pytest.raises(IntegrityError, match="is corrupt"):
        store.copy_to(sha, tmp_path / "out.bin", name="model.bin")
    assert not (tmp_path / "out.bin").exists()  # nothing unverified reaches the destination


def test_missing_blob_and_bad_digest(tmp_path):
    store = BlobStore(str(tmp_path / "blobs"))
    with pytest.raises(NotFound, match="is missing"):
        store.get_bytes("0" * 64)
    with pytest.raises(InvalidInput, match="not a sha256 hex digest"):
        store.get_bytes("../../etc/passwd")


def test_any_fsspec_url_works(tmp_path):
    store = BlobStore("memory://keel-test-blobs")
    sha, _ = store.put_bytes(b"in memory")
    assert store.exists(sha) and store.get_bytes(sha) == b"in memory"
    file_url = BlobStore(f"file://{tmp_path}/viaurl")
    sha2, _ = file_url.put_bytes(b"x")
    assert (tmp_path / "viaurl" / "sha256" / sha2[:2] / sha2).is_file()


def test_put_file_can_link_a_finished_file_instead_of_copying_it(tmp_path, monkeypatch):
    store = BlobStore(str(tmp_path / "blobs"))
    src = tmp_path / "segment.log"
    src.write_bytes(b"sealed and never written again" * 1000)
    sha, size = store.put_file(src, link=True)
    assert (sha, size) == (hashlib.sha256(src.read_bytes()).hexdigest(), src.stat().st_size)
    blob = store.path_of(sha)
    assert os.stat(blob).st_ino == src.stat().st_ino  # the same file, not a copy
    assert os.stat(blob).st_mode & 0o222 == 0  # read-only, as every blob
    src.unlink()  # the spool deletes its name afterwards: the blob stays whole
    assert store.get_bytes(sha) == b"sealed and never written again" * 1000

    again = tmp_path / "again.log"
    again.write_bytes(b"sealed and never written again" * 1000)
    assert store.put_file(again, link=True) == (sha, size)  # stored once

    other = tmp_path / "other.log"
    other.write_bytes(b"on another device")

    def cross_device(*_):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    sha2, _ = store.put_file(other, link=True)  # falls back to a copy
    assert store.get_bytes(sha2) == b"on another device"
    assert os.stat(store.path_of(sha2)).st_ino != other.stat().st_ino
