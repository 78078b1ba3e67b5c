"""Load a pipeline file as a module and find its pipeline.

A file is loaded under a name derived from its path (``keel_pipeline_<hash>``)
so that worker processes can import its steps under the same name. Before a
fresh load, project modules already imported are forgotten: a helper edited
since the last run in this process is then the code that runs, not only the
code that is hashed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from keel.errors import InvalidInput, NotFound


def module_name_for(path: Path) -> str:
    return "keel_pipeline_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]


def project_root(path: Path) -> Path:
    """The git work tree holding ``path``, else its folder: where project code lives."""
    folder = path.resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip()).resolve()
    except (OSError, subprocess.SubprocessError):
        pass
    return folder


def load_file(path: Path, *, module_name: str | None = None, fresh: bool = True,
              root: Path | None = None) -> ModuleType:
    """Import the pipeline file at ``path`` (its folder goes first on sys.path, as for ``python FILE``).

    ``root``: the project root, when it is not the git work tree or folder of the file (a replay).
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"pipeline file {path} does not exist")
    path = path.resolve()
    name = module_name or module_name_for(path)
    for folder in dict.fromkeys([str(root.resolve())] if root else []) | {str(path.parent): None}:
        if folder not in sys.path:
            sys.path.insert(0, folder)
    if fresh:
        forget_project_modules(root or project_root(path))
        _forget_shadowed(path.parent)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InvalidInput(f"cannot load {path} as Python source")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def forget_project_modules(root: Path) -> None:
    from keel.pipelines.fingerprint import Project

    project = Project(root)
    for name, module in list(sys.modules.items()):
        if project.module_file(module) is not None:
            del sys.modules[name]
    importlib.invalidate_caches()


def _forget_shadowed(folder: Path) -> None:
    """Forget modules that this folder's files would shadow (a ``helpers`` of another project)."""
    local = {p.stem for p in folder.glob("*.py")} | {
        d.name for d in folder.iterdir() if d.is_dir() and (d / "__init__.py").is_file()}
    for name in list(sys.modules):
        if name.split(".", 1)[0] in local:
            del sys.modules[name]


def find_pipeline(module: ModuleType, name: str | None = None) -> Any:
    """The pipeline defined in ``module``: the only one, or the one called ``name``."""
    from keel.pipelines.dsl import Pipeline

    found = {p.name: p for p in vars(module).values() if isinstance(p, Pipeline)}
    where = getattr(module, "__file__", module.__name__)
    if name is not None:
        if name not in found:
            raise NotFound(f"{where} has no pipeline {name!r}; it defines: {', '.join(sorted(found)) or 'none'}")
        return found[name]
    if not found:
        raise NotFound(f"{where} defines no @keel.pipeline function")
    if len(found) > 1:
        raise InvalidInput(f"{where} defines several pipelines ({', '.join(sorted(found))}); choose one with "
                           "--pipeline NAME")
    return next(iter(found.values()))
