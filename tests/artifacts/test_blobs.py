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
