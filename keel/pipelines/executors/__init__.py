"""Where steps run, behind one small interface (see ``base.Executor``).

Plug-ins are a declarative table, imported only when chosen, so that Ray is
never imported unless a pipeline asks for it.
"""

from __future__ import annotations

import importlib
from typing import Any

from keel.errors import InvalidInput

EXECUTORS: dict[str, str] = {
    "inprocess": "keel.pipelines.executors.inprocess:InProcessExecutor",
    "subprocess": "keel.pipelines.executors.local:SubprocessExecutor",
    "ray": "keel.pipelines.executors.ray:RayExecutor",
    "kubernetes": "keel.pipelines.executors.kubernetes:KubernetesExecutor",
}


def get_executor(name: str, **options: Any) -> Any:
    """A new executor of kind ``name``."""
    if name not in EXECUTORS:
        raise InvalidInput(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    module, _, cls = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(**options)
