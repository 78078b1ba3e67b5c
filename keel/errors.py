"""One exception tree for keel. Each class carries the HTTP status the server
maps it to; the CLI prints its message as one line."""

from __future__ import annotations


class KeelError(Exception):
    """Base of every error keel raises on purpose."""

    http_status: int = 500


class InvalidInput(KeelError, ValueError):
    """The caller passed something malformed: the message names the field."""

    http_status = 400


class NotFound(KeelError, LookupError):
    """A named object (run, experiment, artifact, ...) does not exist."""

    http_status = 404


class Conflict(KeelError):
    """The request contradicts the current state (e.g. a param re-logged with another value)."""

    http_status = 409


class PermissionDenied(KeelError):
    """The actor's role, identity or token does not allow the action.

    Raised from a store write, it is recorded as an ``access.denied`` audit
    event (in its own transaction, since the refused one rolls back).
    """

    http_status = 403
    audit_action = "access.denied"


class PolicyViolation(KeelError):
    """A governance policy check failed (recorded as a ``policy.refused`` audit event)."""

    http_status = 422
    audit_action = "policy.refused"


class IntegrityError(KeelError):
    """Stored content does not match its recorded hash, or the audit chain is broken."""

    http_status = 500


class ConfigError(KeelError):
    """A setting or keel.toml value is invalid."""

    http_status = 500
