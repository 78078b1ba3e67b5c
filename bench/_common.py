"""Driver helpers shared by the side-by-side benchmarks (standard library only)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_checked(cmd: list[str], what: str, **kw: Any) -> str:
    """Run ``cmd``; on failure exit with a message that includes its stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.exit(f"error: {what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                 f"--- stderr ---\n{proc.stderr.strip()[-4000:]}\n--- stdout (tail) ---\n{proc.stdout[-2000:]}")
    return proc.stdout


def mlflow_python(venv: Path | None, spec: str) -> str:
    """Python of the MLflow venv: reuse ``venv`` if it imports mlflow and sklearn, else create it."""
    if venv is None:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        venv = cache / "keel-bench" / f"mlflow-{re.sub(r'[^A-Za-z0-9.]+', '_', spec)}"
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if py.exists() and subprocess.run([str(py), "-c", "import mlflow, sklearn"], capture_output=True).returncode == 0:
        return str(py)
    print(f"creating MLflow venv {venv} ({spec} + scikit-learn; takes a few minutes)...", file=sys.stderr)
    run_checked([sys.executable, "-m", "venv", str(venv)], "venv creation")
    run_checked([str(py), "-m", "pip", "install", "-q", spec, "scikit-learn"], "pip install")
    return str(py)


def bench_venv(name: str, specs: list[str], probe: str, venv: Path | None = None) -> str:
    """Python of the benchmark venv ``~/.cache/keel-bench/<name>`` (or ``venv``).

    Reused as is when ``python -c probe`` succeeds in it, else (re)created with
    ``pip install *specs``. Put the pinned versions into ``name`` so that a change
    of pins makes a new venv instead of silently reusing an old one.
    """
    if venv is None:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        venv = cache / "keel-bench" / re.sub(r"[^A-Za-z0-9.=+-]+", "_", name)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if py.exists() and subprocess.run([str(py), "-c", probe], capture_output=True).returncode == 0:
        return str(py)
    print(f"creating venv {venv} ({' '.join(specs)}; takes a few minutes)...", file=sys.stderr)
    run_checked([sys.executable, "-m", "venv", "--clear", str(venv)], "venv creation")
    run_checked([str(py), "-m", "pip", "install", "-q", *specs], "pip install")
    run_checked([str(py), "-c", probe], f"check of the new venv {venv}")
    return str(py)
