"""keel: the whole life of a model as one repeatable, audited loop.

Only the public API is defined here, and it is imported lazily so that
``import keel`` stays fast: nothing heavy loads until it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "start_run": "keel.tracking.fluent",
    "end_run": "keel.tracking.fluent",
    "active_run": "keel.tracking.fluent",
    "log_param": "keel.tracking.fluent",
    "log_params": "keel.tracking.fluent",
    "log_metric": "keel.tracking.fluent",
    "log_metrics": "keel.tracking.fluent",
    "set_tag": "keel.tracking.fluent",
    "set_tags": "keel.tracking.fluent",
    "log_artifact": "keel.tracking.fluent",
    "log_artifacts": "keel.tracking.fluent",
    "log_text": "keel.tracking.fluent",
    "log_dict": "keel.tracking.fluent",
    "log_dataset": "keel.tracking.fluent",
    "flush": "keel.tracking.fluent",
    "get_run": "keel.tracking.fluent",
    "search_runs": "keel.tracking.fluent",
    "ActiveRun": "keel.tracking.fluent",
    "log_model": "keel.formats.api",
    "save_model": "keel.formats.api",
    "load_model": "keel.formats.api",
    "step": "keel.pipelines.dsl",
    "pipeline": "keel.pipelines.dsl",
    "Client": "keel.tracking.client",
    "Settings": "keel.settings",
    "KeelError": "keel.errors",
}

# Public sub-modules, imported on first attribute access (``keel.registry.approve``).
_SUBMODULES = ("registry",)

__all__ = sorted([*_EXPORTS, *_SUBMODULES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"keel.{name}")  # the import binds keel.<name> itself
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'keel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and IDEs only
    from keel.errors import KeelError
    from keel.formats.api import load_model, log_model, save_model
    from keel.pipelines.dsl import pipeline, step
    from keel.settings import Settings
    from keel.tracking.client import Client
    from keel.tracking.fluent import (
        ActiveRun, active_run, end_run, flush, get_run, log_artifact, log_artifacts, log_dataset,
        log_dict, log_metric, log_metrics, log_param, log_params, log_text, search_runs, set_tag,
        set_tags, start_run,
    )
