"""Content-addressed artifact storage over fsspec."""

from keel.artifacts.blobs import BlobStore
from keel.artifacts.paths import normalize_artifact_path, safe_join

__all__ = ["BlobStore", "normalize_artifact_path", "safe_join"]
