"""Writing a plan to disk: every path checked, all files at once, each one hashed.

The files land in a temporary sibling folder that is renamed into place, so a
failure leaves no half-written deployment behind, and no planned path can
climb out of the output folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from keel.artifacts.paths import normalize_artifact_path
from keel.deploy.base import Plan
from keel.errors import InvalidInput

CHECKSUMS = "SHA256SUMS"


def check_out(out: str | os.PathLike[str]) -> Path:
    """The absolute output folder; it must not exist yet, or be an empty folder (nothing is overwritten)."""
    path = Path(out).expanduser().absolute()
    if path.is_symlink() or (path.exists() and (not path.is_dir() or any(path.iterdir()))):
        raise InvalidInput(f"--out {path}: it exists and is not an empty folder; choose a new folder "
                           "(keel never overwrites a deployment)")
    return path


def check_paths(plan: Plan) -> None:
    """Every planned path is relative and stays inside the output folder."""
    for rel in plan.files:
        if normalize_artifact_path(rel) != rel:
            raise InvalidInput(f"deploy plan path {rel!r} is not in normal form")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content(source: bytes | Path) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def write_plan(plan: Plan, out: Path) -> dict[str, str]:
    """Write ``plan`` into ``out`` (see :func:`check_out`); returns path -> sha256 of what was written."""
    check_paths(plan)
    out = check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    hashes: dict[str, str] = {}
    try:
        for rel in sorted(plan.files):
            data = content(plan.files[rel])
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(0o755 if rel in plan.executable else 0o644)
            hashes[rel] = sha256_bytes(data)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return hashes


def checksums_text(files: dict[str, bytes | Path]) -> bytes:
    """A ``sha256sum -c`` compatible listing of ``files`` (sorted by path)."""
    return "".join(f"{sha256_bytes(content(files[rel]))}  {rel}\n" for rel in sorted(files)).encode()
