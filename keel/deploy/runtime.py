"""What a host or image needs to run ``keel serve`` on a bundle: one lock and keel's own code.

The serving lock is the model's ``requirements.lock`` plus keel's serving
dependencies as installed here (the model's pins win where both name a
package). keel itself travels as source under ``vendor/`` on PYTHONPATH, so
a host or image needs nothing that is not on the package index.
"""

from __future__ import annotations

from pathlib import Path

from keel.deploy.base import DeploySpec
from keel.envs.lock import EnvironmentLock, capture

VENDOR = "vendor"
LOCK = "requirements.lock"


def serving_lock(spec: DeploySpec) -> str:
    """The merged lock text (reads installed package metadata: call from ``prepare``)."""
    model = EnvironmentLock.from_text((spec.bundle / LOCK).read_text())
    server = capture(["keel[serve]"])
    packages = {**server.packages, **model.packages}
    packages.pop("keel", None)  # vendored: keel is not taken from an index
    return EnvironmentLock(model.python, model.implementation, model.platform, packages,
                           model.source_commit).to_text()


def keel_sources() -> dict[str, Path]:
    """The running keel package's files, as ``vendor/keel/...`` -> file (no byte-code)."""
    import keel

    root = Path(keel.__file__).parent
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and "__pycache__" not in rel.parts and path.suffix not in (".pyc", ".pyo"):
            files[f"{VENDOR}/keel/{rel.as_posix()}"] = path
    return files


def python_minor(lock_text: str) -> str:
    """"3.11" from a lock's ``# python:`` header."""
    version = EnvironmentLock.from_text(lock_text).python
    return ".".join(version.split(".")[:2])
