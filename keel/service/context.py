"""What every service call needs: where to read and write, and who acts."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from keel.settings import Settings
from keel.store.sql import SqlStore


@dataclass
class Context:
    """Store handles plus the actor, built once per client from settings."""

    settings: Settings
    store: SqlStore
    actor: str

    @classmethod
    def from_settings(cls, settings: Settings) -> "Context":
        store = SqlStore(settings.store_uri, sqlite_busy_timeout=settings.sqlite_busy_timeout)
        return cls(settings=settings, store=store, actor=settings.user)

    @cached_property
    def blobs(self):  # -> BlobStore; created on first artifact use only
        from keel.artifacts.blobs import BlobStore

        return BlobStore(self.settings.artifact_uri)

    def close(self) -> None:
        self.store.close()
