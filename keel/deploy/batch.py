"""Batch scoring: a model over a CSV or Parquet file, batch by batch, into one Parquet file.

``keel score MODEL_URI --input IN --output OUT.parquet`` (and the ``job``
deploy target, which runs it in a Kubernetes Job). Memory is bounded by the
batch size, not the file: the input is read as a stream of Arrow record
batches (CSV blocks, Parquet row groups), each batch is predicted and
appended to the output. The output holds the input's columns as they were
read, then ``prediction`` (``prediction_0``... for several outputs) and, for
a classifier, ``probability_<class>`` per class.

Everything that can refuse the job (the model, the input's existence and
columns, the output's name) is checked before the first row is scored. The
output is written to a temporary file and renamed (a local path) or uploaded
(an fsspec URL, one object put) only once complete, so a failure part way
leaves no partial output, and an earlier output stays as it was. Each
scoring is an audit event (``model.score``) naming the model version, the
files, the rows and the output's sha256.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from keel.errors import InvalidInput, KeelError
from keel.governance.roles import VIEWER
from keel.service.context import Context

DEFAULT_BATCH_ROWS = 10_000
PREDICTION = "prediction"
PROBABILITY = "probability_"
_CSV_BLOCK = 4 << 20  # bytes of CSV text parsed at a time


@dataclass(frozen=True)
class ScoreResult:
    model_uri: str  # as pinned: models:/NAME/VERSION for a registry alias
    model_name: str | None
    model_version: int | None
    input: str
    output: str
    rows: int
    batches: int
    columns: list[str]  # the output's columns
    sha256: str  # of the output file
    seconds: float


def score_file(ctx: Context, uri: str, input: str, output: str, *, batch_size: int = DEFAULT_BATCH_ROWS,
               columns: list[str] | None = None) -> ScoreResult:
    """Score every row of ``input`` (CSV or Parquet, path or fsspec URL) with the model at ``uri``.

    Args:
        uri: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``, ``runs:/RUN/PATH`` or a bundle folder.
        input: a ``.csv`` or ``.parquet`` file.
        output: a ``.parquet`` file (replaced atomically when complete).
        batch_size: rows predicted at a time (bounds the memory used).
        columns: the feature columns, in the model's order, for a model that takes one tensor
            (default: every input column); a model with named inputs takes its own columns.
    """
    from keel.formats.api import load_model

    ctx.authorize(VIEWER, what="score with a model")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput(f"--batch-size must be a whole number of rows >= 1, got {batch_size!r}")
    if not str(output).lower().endswith((".parquet", ".pq")):
        raise InvalidInput(f"--output must name a .parquet file, got {output!r}")
    name = version = None
    pinned = uri
    if uri.startswith("models:/"):
        from keel.service.registry import resolve_uri

        found = resolve_uri(ctx, uri)
        name, version, pinned = found.name, found.version, found.uri  # an alias moves; the record does not
    model = load_model(pinned, settings=ctx.settings)
    started = time.monotonic()
    with _open_input(str(input), _csv_types(model)) as (schema, batches):
        features = feature_columns(model, schema.names, columns, str(input))
        extra = output_columns(model, schema.names)
        rows, count, sha = _write(model, features, _rebatch(batches, batch_size), str(output), str(input))
    result = ScoreResult(pinned, name, version, str(input), str(output), rows, count, [*schema.names, *extra], sha,
                         round(time.monotonic() - started, 3))
    _audit(ctx, result)
    return result


def feature_columns(model: Any, names: list[str], columns: list[str] | None, where: str) -> list[str]:
    """The input columns the model reads, in its order; InvalidInput naming what is missing."""
    signature = model.signature
    if signature is not None and signature.columnar:
        wanted = [spec.name for spec in signature.inputs]
        if columns:
            raise InvalidInput(f"--columns is for models that take one tensor; {model.uri} takes the named "
                               f"columns {', '.join(wanted)}")
    else:
        wanted = list(columns or names)
    missing = [c for c in wanted if c not in names]
    if missing:
        raise InvalidInput(f"--input {where} lacks the column(s) {', '.join(map(repr, missing))} that the model "
                           f"{model.uri} needs; it has {', '.join(map(repr, names)) or 'none'}")
    if signature is not None and not signature.columnar:
        width = signature.inputs[0].shape[-1] if len(signature.inputs[0].shape) == 2 else -1
        if width not in (-1, len(wanted)):
            raise InvalidInput(f"the model {model.uri} takes rows of {width} values but --input {where} gives "
                               f"{len(wanted)} columns ({', '.join(wanted)}); pick them with --columns A,B,...")
    return wanted


def output_columns(model: Any, names: list[str]) -> list[str]:
    """The columns scoring adds; refused if the input already has one of them (it would be overwritten)."""
    added = [PREDICTION]
    outputs = model.signature.outputs if model.signature is not None else ()
    if len(outputs) == 1 and len(outputs[0].shape) == 2 and outputs[0].shape[1] > 1:
        added = [f"{PREDICTION}_{i}" for i in range(outputs[0].shape[1])]
    added += [f"{PROBABILITY}{c}" for c in _classes(model) or ()]
    clash = [c for c in added if c in names]
    if clash:
        raise InvalidInput(f"the input already has the column(s) {', '.join(map(repr, clash))} that scoring "
                           "adds; rename them in the input")
    return added


def _classes(model: Any) -> list[str] | None:
    if not model.has_proba:
        return None
    classes = getattr(model.native, "classes_", None)
    return [str(c) for c in classes] if classes is not None else None


def _csv_types(model: Any) -> dict[str, Any]:
    """Arrow types for the model's float columns: a first block of whole numbers must not fix them as ints."""
    import pyarrow as pa

    signature = model.signature
    if signature is None or not signature.columnar:
        return {}
    return {s.name: pa.float64() for s in signature.inputs if s.dtype.startswith("float")}


class _open_input:
    """``with _open_input(uri, csv_types) as (schema, batches)``: a stream of record batches."""

    def __init__(self, uri: str, csv_types: dict[str, Any]) -> None:
        self.uri, self.csv_types = uri, csv_types
        self.file: Any = None

    def __enter__(self) -> tuple[Any, Iterator[Any]]:
        import fsspec
        import pyarrow as pa

        suffix = self.uri.lower().rsplit(".", 1)[-1]
        if suffix not in ("csv", "parquet", "pq"):
            raise InvalidInput(f"--input must be a .csv or .parquet file, got {self.uri!r}")
        fs, path = fsspec.core.url_to_fs(self.uri)
        if not fs.isfile(path):
            raise InvalidInput(f"--input {self.uri} does not exist (or is not a file)")
        self.file = fs.open(path, "rb")
        try:
            if suffix == "csv":
                from pyarrow import csv

                reader = csv.open_csv(self.file, read_options=csv.ReadOptions(block_size=_CSV_BLOCK),
                                      convert_options=csv.ConvertOptions(column_types=self.csv_types))
                return reader.schema, _csv_batches(reader, self.uri)
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(self.file)
            # Row groups are read one at a time; batches are cut to size after reading.
            return parquet.schema_arrow, iter(parquet.iter_batches(batch_size=65_536))
        except (pa.ArrowException, OSError) as exc:
            self.file.close()
            raise InvalidInput(f"--input {self.uri} cannot be read as {suffix.upper()}: {exc}") from None

    def __exit__(self, *exc: Any) -> None:
        if self.file is not None:
            self.file.close()


def _csv_batches(reader: Any, uri: str) -> Iterator[Any]:
    import pyarrow as pa

    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowException as exc:  # a later block does not fit the types of the first
            raise InvalidInput(f"--input {uri}: {exc}") from None


def _rebatch(batches: Iterator[Any], size: int) -> Iterator[Any]:
    """Tables of exactly ``size`` rows (the last one shorter), whatever size the reader's batches have."""
    import pyarrow as pa

    pending: list[Any] = []
    held = 0
    for batch in batches:
        while batch.num_rows:
            take = min(size - held, batch.num_rows)
            pending.append(batch.slice(0, take))
            held += take
            batch = batch.slice(take)
            if held == size:
                yield pa.Table.from_batches(pending)
                pending, held = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def _scored(model: Any, table: Any, features: list[str]) -> Any:
    """``table`` with the prediction (and probability) columns appended."""
    import numpy as np
    import pyarrow as pa

    frame = table.select(features).to_pandas()
    predicted = np.asarray(model.predict(frame))
    if predicted.ndim == 2 and predicted.shape[1] == 1:
        predicted = predicted[:, 0]
    if predicted.ndim == 1:
        table = table.append_column(PREDICTION, pa.array(predicted))
    else:
        for i in range(predicted.shape[1]):
            table = table.append_column(f"{PREDICTION}_{i}", pa.array(predicted[:, i]))
    classes = _classes(model)
    if classes:
        proba = np.asarray(model.predict_proba(frame))
        for i, name in enumerate(classes):
            table = table.append_column(f"{PROBABILITY}{name}", pa.array(proba[:, i]))
    return table


def _write(model: Any, features: list[str], tables: Iterator[Any], output: str, where: str) -> tuple[int, int, str]:
    """Score every table into a temporary Parquet file, then put it in place; (rows, batches, sha256)."""
    import fsspec
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fsspec.implementations.local import LocalFileSystem

    fs, path = fsspec.core.url_to_fs(output)
    local = isinstance(fs, LocalFileSystem)
    if local:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.part"  # same filesystem: rename is atomic
    else:
        tmp = Path(tempfile.mkdtemp(prefix="keel-score-")) / "out.parquet"
    writer = None
    rows = count = 0
    try:
        for table in tables:
            try:
                scored = _scored(model, table, features)
            except KeelError as exc:
                raise InvalidInput(f"--input {where}, rows {rows + 1}-{rows + table.num_rows}: {exc}") from None
            if writer is None:
                writer = pq.ParquetWriter(str(tmp), scored.schema, compression="zstd")
            elif scored.schema != writer.schema:
                try:
                    scored = scored.cast(writer.schema)
                except (pa.ArrowException, ValueError) as exc:
                    raise InvalidInput(f"--input {where}, rows {rows + 1}-{rows + table.num_rows}: the columns' "
                                       f"types differ from the first rows' ({exc})") from None
            writer.write_table(scored)
            rows += table.num_rows
            count += 1
        if writer is None:
            raise InvalidInput(f"--input {where} has no rows; nothing to score")
        writer.close()
        writer = None
        sha = _sha256(tmp)
        if local:
            os.replace(tmp, target)
        else:
            fs.put_file(str(tmp), path)  # one object put: readers see the whole file or none
        return rows, count, sha
    finally:
        if writer is not None:
            writer.close()
        if local:
            tmp.unlink(missing_ok=True)
        else:
            import shutil

            shutil.rmtree(tmp.parent, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _audit(ctx: Context, result: ScoreResult) -> None:
    if result.model_version is not None:
        kind, object_id = "model_version", f"{result.model_name}/{result.model_version}"
    else:
        kind, object_id = "model", result.model_uri
    details = {"uri": result.model_uri, "input": result.input, "output": result.output, "rows": result.rows,
               "batches": result.batches, "sha256": result.sha256, "seconds": result.seconds}
    ctx.write(lambda tx: tx.audit("model.score", kind, object_id, details), role=VIEWER, what="score with a model")
