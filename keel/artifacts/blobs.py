"""Content-addressed blobs (sha256) on any fsspec filesystem.

Layout under the root: ``sha256/ab/abcdef...`` for blobs, ``tmp/`` for writes
in progress. A blob becomes visible only by an atomic rename of a complete,
fsynced temp file (on object stores, by the single PUT of the final key), so a
crash at any point leaves at most a stray file in ``tmp/``, never a partial
blob. Every read recomputes the hash.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO

from keel.errors import IntegrityError, InvalidInput, NotFound

CHUNK = 1 << 20
_HEX = frozenset("0123456789abcdef")


class BlobStore:
    """Four byte operations over a root: put, get, exists, copy out."""

    def __init__(self, uri: str) -> None:
        import fsspec

        self.uri = uri
        self.fs, self.root = fsspec.core.url_to_fs(uri)
        self.local = "file" in _protocols(self.fs)
        if self.local:
            self.root = str(Path(self.root).resolve())
        self.fs.makedirs(self._join("tmp"), exist_ok=True)

    # -- writing -----------------------------------------------------------
    def put_file(self, path: str | os.PathLike[str], *, link: bool = False) -> tuple[str, int]:
        """Store a local file's content; returns (sha256 hex, size).

        ``link=True`` hard-links the file into a local store instead of copying
        it, when the file system allows (the same device): for a file that is
        complete, synced and never written again, such as a sealed prediction
        segment. Otherwise, and on any other store, the content is copied.
        """
        if link and self.local:
            linked = self._link(Path(path))
            if linked is not None:
                return linked
        with open(path, "rb") as src:
            return self._put_stream(src)

    def _link(self, path: Path) -> tuple[str, int] | None:
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as src:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        hexdigest = digest.hexdigest()
        final = self.path_of(hexdigest)
        os.makedirs(self._parent(final), exist_ok=True)
        try:
            os.link(path, final)
        except FileExistsError:
            pass  # identical content is stored once
        except OSError:  # another device, or a file system without hard links: copy
            return None
        else:
            os.chmod(final, 0o444)
        return hexdigest, size

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store bytes; returns (sha256 hex, size)."""
        import io

        return self._put_stream(io.BytesIO(data))

    def _put_stream(self, src: BinaryIO) -> tuple[str, int]:
        digest, size = hashlib.sha256(), 0
        tmp = self._join("tmp", uuid.uuid4().hex)
        try:
            with self.fs.open(tmp, "wb") as out:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                if self.local:
                    out.flush()
                    os.fsync(out.fileno())
            hexdigest = digest.hexdigest()
            final = self.path_of(hexdigest)
            if self.fs.exists(final):  # identical content is stored once
                self.fs.rm(tmp)
            else:
                self.fs.makedirs(self._parent(final), exist_ok=True)
                if self.local:
                    os.chmod(tmp, 0o444)
                    os.replace(tmp, final)
                else:
                    self.fs.mv(tmp, final)
            return hexdigest, size
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise

    # -- reading -----------------------------------------------------------
    def exists(self, sha256: str) -> bool:
        return self.fs.exists(self.path_of(sha256))

    def get_bytes(self, sha256: str, *, name: str | None = None) -> bytes:
        """Read a whole blob and verify its hash (``name`` is used in errors)."""
        try:
            with self.fs.open(self.path_of(sha256), "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise NotFound(f"blob {sha256} ({name or 'unnamed'}) is missing from {self.uri}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise IntegrityError(f"artifact {name or sha256} is corrupt: content does not match sha256 {sha256}")
        return data

    def copy_to(self, sha256: str, dest: str | os.PathLike[str], *, name: str | None = None) -> Path:
        """Stream a blob to a local file, verifying the hash before it appears there."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        digest = hashlib.sha256()
        try:
            with self.fs.open(self.path_of(sha256), "rb") as src, open(tmp, "wb") as out:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256:
                raise IntegrityError(f"artifact {name or sha256} is corrupt: content does not match sha256 {sha256}")
            os.replace(tmp, dest)
            return dest
        except FileNotFoundError:
            raise NotFound(f"blob {sha256} ({name or 'unnamed'}) is missing from {self.uri}") from None
        finally:
            tmp.unlink(missing_ok=True)

    # -- layout ------------------------------------------------------------
    def path_of(self, sha256: str) -> str:
        if len(sha256) != 64 or not set(sha256) <= _HEX:
            raise InvalidInput(f"not a sha256 hex digest: {sha256!r}")
        return self._join("sha256", sha256[:2], sha256)

    def _join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    @staticmethod
    def _parent(path: str) -> str:
        return path.rsplit("/", 1)[0]


def _protocols(fs: object) -> tuple[str, ...]:
    proto = getattr(fs, "protocol", ())
    return (proto,) if isinstance(proto, str) else tuple(proto)
