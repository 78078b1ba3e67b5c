"""What a model format plug-in is: a small protocol, and the records it returns.

A plug-in turns a live model object into files in a folder (``save``) and
those files back into something that predicts (``load``). Everything else —
the manifest, hashes, signature, environment lock, URIs — is shared and lives
in ``bundle.py``; adding a format touches one module and one table line
(``registry.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass
class Saved:
    """What ``ModelFormat.save`` wrote and needs to load it again."""

    files: list[str]  # paths relative to the bundle folder
    modules: list[str]  # import names the loader needs (mapped to pinned distributions)
    meta: dict[str, Any] = field(default_factory=dict)  # plain YAML-safe data for ``load``
    pickles: list[str] = field(default_factory=list)  # files among ``files`` that are pickles
    code: list[str] = field(default_factory=list)  # captured source files (for their imports)


@runtime_checkable
class Predictor(Protocol):
    """The uniform face of a loaded model. ``predict_proba`` only where the model has it."""

    # True: give it a pandas DataFrame with the signature's columns; False: a
    # numpy array; None: a DataFrame when the signature has named columns.
    wants_frame: bool | None

    def predict(self, x: Any) -> Any: ...


class ModelFormat(Protocol):
    """One model format: files out, predictor back."""

    name: str
    version: int

    def matches(self, model: Any) -> bool:
        """Whether this plug-in handles the object (a cheap check, no heavy import)."""

    def save(self, model: Any, folder: Path) -> Saved:
        """Write the model's files into ``folder`` (which exists and is empty)."""

    def wrap(self, model: Any, saved: Saved) -> Predictor:
        """A predictor over the live object (to infer the output signature at save time)."""

    def load(self, folder: Path, saved: Saved) -> Predictor:
        """Load files written by ``save``; the bundle has verified every file's hash."""


class MethodPredictor:
    """A predictor over an object that already has ``predict`` (and maybe ``predict_proba``).

    Most libraries' models are such objects; only boosters, sessions and
    modules need a predictor of their own.
    """

    def __init__(self, model: Any, wants_frame: bool | None, *, proba: bool | None = None) -> None:
        self.native = model
        self.wants_frame = wants_frame
        self.predict = model.predict
        if has_proba(model) if proba is None else proba:
            self.predict_proba = model.predict_proba


def as_frame(predictor: Predictor, columnar: bool) -> bool:
    """Whether ``predictor`` is handed a DataFrame for a signature that is (not) columnar."""
    return columnar if predictor.wants_frame is None else predictor.wants_frame


def module_of(obj: Any) -> str:
    """Top-level package of an object's class (``sklearn``, ``xgboost``, ...)."""
    return (type(obj).__module__ or "").split(".", 1)[0]


def has_proba(obj: Any) -> bool:
    return callable(getattr(obj, "predict_proba", None))
