"""Where a run's code came from: entry point, git commit, dirty flag."""

from __future__ import annotations

import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from keel.entities import Source


def current_source() -> Source:
    """Source of the running program, captured once per process (git is a subprocess)."""
    main = sys.modules.get("__main__")
    entry = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else None)
    return _resolve(entry)


@lru_cache(maxsize=8)
def _resolve(entry: str | None) -> Source:
    return _capture(str(Path(entry).resolve()) if entry and Path(entry).exists() else entry)


@lru_cache(maxsize=8)
def _capture(entry_point: str | None) -> Source:
    folder = Path(entry_point).parent if entry_point and Path(entry_point).exists() else Path.cwd()
    commit = _git(folder, "rev-parse", "HEAD")
    dirty = None
    if commit is not None:
        status = _git(folder, "status", "--porcelain", "--untracked-files=no")
        dirty = bool(status) if status is not None else None
    return Source(commit=commit, dirty=dirty, entry_point=entry_point)


def _git(folder: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None
