"""Logical artifact paths: one normal form, and no way out of a root.

A logical path names an artifact inside a run (``plots/roc.png``). It is only
ever a key in the metadata store, but it becomes a file path when artifacts
are downloaded, so anything that could climb out of the destination is
refused here, once, with a message naming the path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

from keel.errors import InvalidInput

MAX_PATH_LENGTH = 1000
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalize_artifact_path(path: str) -> str:
    """Return the normal form of a logical artifact path or raise InvalidInput.

    Rejected: empty paths, absolute paths (``/x``, ``C:x``, ``~``), ``..``
    components, backslashes, control characters, URL schemes, and
    percent-encoded forms of any of these (``%2e%2e%2f``, also double-encoded).
    ``.`` and empty components are dropped (``a//./b`` -> ``a/b``).
    """
    if not isinstance(path, str):
        raise InvalidInput(f"artifact path must be a string, got {type(path).__name__}")
    if not path or not path.strip():
        raise InvalidInput("artifact path must not be empty")
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidInput(f"artifact path is {len(path)} characters long; at most {MAX_PATH_LENGTH} allowed")
    decoded, previous = path, None
    while decoded != previous:  # undo any depth of percent-encoding
        previous, decoded = decoded, unquote(decoded)
    for form in {path, decoded}:
        _reject_escape(form, original=path)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise InvalidInput(f"artifact path {path!r} names no file")
    return "/".join(parts)


def _reject_escape(form: str, *, original: str) -> None:
    encoded = " (percent-encoded)" if form != original else ""
    if _CONTROL.search(form):
        raise InvalidInput(f"artifact path {original!r} contains a control character{encoded}")
    if "\\" in form:
        raise InvalidInput(f"artifact path {original!r} contains a backslash{encoded}; use '/'")
    if form.startswith(("/", "~")) or _DRIVE.match(form):
        raise InvalidInput(f"artifact path {original!r} is absolute{encoded}; give a path relative to the run")
    if "://" in form:
        raise InvalidInput(f"artifact path {original!r} looks like a URL{encoded}; give a relative path")
    if ".." in form.split("/"):
        raise InvalidInput(f"artifact path {original!r} escapes its root with '..'{encoded}")


def safe_join(root: str | os.PathLike[str], logical: str) -> Path:
    """Join a logical path under a local ``root`` and prove it stays inside.

    Symlinks already present under ``root`` are resolved, so a link that points
    elsewhere cannot be used to write outside the root.
    """
    base = Path(root).resolve()
    target = (base / normalize_artifact_path(logical)).resolve()
    if target != base and base not in target.parents:
        raise InvalidInput(f"artifact path {logical!r} resolves outside {base} (through a symlink)")
    return target
