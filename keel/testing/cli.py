"""Run the `keel` command as a user does: a real process, its own stdout, stderr and exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Mapping


def run_cli(env: Mapping[str, str], *args: str, check: bool = True,
            cwd: str | os.PathLike[str] | None = None) -> subprocess.CompletedProcess[str]:
    """``keel ARGS`` in a subprocess with ``env`` (in ``cwd``, where its keel.toml is read);
    with ``check``, a non-zero exit fails with its stderr."""
    proc = subprocess.run([sys.executable, "-m", "keel.cli.main", *args], env=dict(env), capture_output=True,
                          text=True, cwd=cwd)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc
