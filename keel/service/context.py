"""What every service call needs: where to read and write, and who acts."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, TypeVar

from keel.governance.roles import EDITOR
from keel.settings import Settings
from keel.store.sql import SqlStore, Tx

T = TypeVar("T")


@dataclass
class Context:
    """Store handles plus the actor, built once per client from settings.

    The actor is ``KEEL_USER`` (default: the OS user), or with ``KEEL_TOKEN``
    the user who owns that token. A token-bound context re-checks the token
    in every write, so revoking it takes effect at once.
    """

    settings: Settings
    store: SqlStore
    actor: str
    token_hash: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Context":
        store = SqlStore(settings.store_uri, sqlite_busy_timeout=settings.sqlite_busy_timeout)
        if settings.token:
            from keel.service.users import authenticate, hash_token

            try:
                user = authenticate(store, settings.token)
            except Exception:
                store.close()
                raise
            return cls(settings=settings, store=store, actor=user.name, token_hash=hash_token(settings.token))
        return cls(settings=settings, store=store, actor=settings.user)

    def write(self, fn: Callable[[Tx], T], *, role: str = EDITOR, what: str | None = None) -> T:
        """Run ``fn`` in an audited write transaction, once the actor is checked to hold ``role``."""
        return self.store.write(self.actor, fn, role=role, token_hash=self.token_hash, what=what)

    def authorize(self, role: str, *, what: str | None = None) -> str | None:
        """Check the actor holds ``role`` for a read (returns the role; None in an open store)."""
        with self.store.read() as conn:
            return Tx(conn, self.actor).authorize(role, token_hash=self.token_hash, what=what)

    @cached_property
    def blobs(self):  # -> BlobStore; created on first artifact use only
        from keel.artifacts.blobs import BlobStore

        return BlobStore(self.settings.artifact_uri)

    def close(self) -> None:
        self.store.close()
