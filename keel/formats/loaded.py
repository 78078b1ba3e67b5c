"""A loaded model: one face for every format, with its signature enforced."""

from __future__ import annotations

from typing import Any

from keel.errors import InvalidInput
from keel.formats.base import Predictor, as_frame
from keel.formats.bundle import Manifest


class LoadedModel:
    """``predict(X)`` and, where the model has it, ``predict_proba(X)``.

    ``X`` may be a pandas or polars DataFrame, a numpy array, a list of records
    or a dict of columns; it is checked against the signature recorded at save
    time (names, types, width) and converted to what the model takes.
    """

    def __init__(self, manifest: Manifest, predictor: Predictor, uri: str) -> None:
        from keel.formats.signature import Signature

        self.manifest = manifest
        self.uri = uri
        self.format: str = manifest.format
        self._predictor = predictor
        raw = manifest.data.get("signature")
        self.signature = Signature.from_dict(raw) if raw else None
        self._as_frame = as_frame(predictor, bool(self.signature and self.signature.columnar))

    def __repr__(self) -> str:
        return f"<LoadedModel {self.format} from {self.uri}>"

    @property
    def native(self) -> Any:
        """The underlying library object (estimator, booster, session, ...)."""
        return getattr(self._predictor, "native", self._predictor)

    @property
    def has_proba(self) -> bool:
        return callable(getattr(self._predictor, "predict_proba", None))

    def prepare(self, data: Any) -> Any:
        """Validate and convert input as ``predict`` does (servers call this once per batch)."""
        if self.signature is None:
            return data
        from keel.formats.signature import prepare_input

        return prepare_input(self.signature, data, as_frame=self._as_frame)

    def predict(self, data: Any) -> Any:
        return self._predictor.predict(self.prepare(data))

    def predict_proba(self, data: Any) -> Any:
        if not self.has_proba:
            raise InvalidInput(f"the {self.format} model at {self.uri} has no predict_proba (it is not a classifier)")
        return self._predictor.predict_proba(self.prepare(data))
