#!/usr/bin/env python3
"""keel edge runner: score rows with model.onnx using only numpy and onnxruntime.

This file is copied as ``runner.py`` into an edge bundle, next to
``model.onnx``, ``signature.json``, ``requirements.lock`` and ``SHA256SUMS``.
It imports nothing from keel. Every file is checked against SHA256SUMS
before the model is loaded.

    python runner.py score rows.csv --out predictions.csv   # or rows.npy; stdout without --out
    python runner.py serve --port 8080                       # POST /predict, GET /health
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
MAX_BODY = 16 * 2**20
_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
           "tensor(int32)": np.int32}


class RunnerError(Exception):
    """A bad input or bundle: reported as one line (CLI) or a 400 (HTTP)."""


def verify(folder: Path) -> None:
    """Refuse to run if any listed file is missing or changed."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        raise RunnerError(f"{sums} is missing")
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        expected, rel = line.split(None, 1)
        rel = rel.strip().lstrip("*")
        path = (folder / rel).resolve()
        if folder.resolve() not in path.parents:
            raise RunnerError(f"SHA256SUMS names a path outside the bundle: {rel}")
        if not path.is_file():
            raise RunnerError(f"{rel} is missing")
        if hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            raise RunnerError(f"{rel} was changed (sha256 does not match SHA256SUMS); refusing to run")


class Model:
    def __init__(self, folder: Path) -> None:
        verify(folder)
        self.meta = json.loads((folder / "signature.json").read_text())
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input = first.name
        self.dtype = _DTYPES.get(first.type, np.float32)
        self.columns = self.meta.get("columns")
        self.n_features = self.meta["n_features"]

    def predict(self, rows: np.ndarray) -> tuple[list, list | None]:
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise RunnerError(f"expected rows of {self.n_features} values, got shape {list(x.shape)}")
        outputs = self.session.run(None, {self.input: x.astype(self.dtype)})
        labels = np.asarray(outputs[0])
        labels = labels.ravel() if labels.ndim == 2 and labels.shape[1] == 1 else labels
        proba = None
        if len(outputs) > 1:
            second = outputs[1]
            if isinstance(second, list):  # ZipMap: one {label: probability} per row
                keys = sorted(second[0]) if second else []
                second = np.array([[row[k] for k in keys] for row in second])
            proba = np.asarray(second).tolist()
        return labels.tolist(), proba

    def rows_from_records(self, records: list) -> np.ndarray:
        if not self.columns:
            raise RunnerError("this model takes unnamed columns: send {\"instances\": [[...], ...]}")
        try:
            return np.array([[float(r[c]) for c in self.columns] for r in records], dtype=np.float64)
        except KeyError as exc:
            raise RunnerError(f"a record lacks the column {exc.args[0]!r}") from None


def read_rows(path: Path, columns: list | None) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if r]
    if not rows:
        raise RunnerError(f"{path} has no rows")
    try:
        [float(v) for v in rows[0]]
        header = None
    except ValueError:
        header, rows = rows[0], rows[1:]
    if header is not None and columns and set(columns) <= set(header):
        index = [header.index(c) for c in columns]
        rows = [[r[i] for i in index] for r in rows]
    try:
        return np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise RunnerError(f"{path}: {exc}") from None


def score(model: Model, source: Path, out: Path | None) -> int:
    labels, proba = model.predict(read_rows(source, model.columns))
    sink = io.StringIO()
    writer = csv.writer(sink)
    width = len(proba[0]) if proba else 0
    writer.writerow(["prediction", *[f"proba_{i}" for i in range(width)]])
    for i, label in enumerate(labels):
        writer.writerow([label, *(repr(float(p)) for p in (proba[i] if proba else []))])
    if out is None:
        sys.stdout.write(sink.getvalue())
    else:
        out.write_text(sink.getvalue())
    return len(labels)


def handler_for(model: Model) -> type:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path in ("/health", "/v2/health/live", "/v2/health/ready"):
                self._send(200, {"status": "ok", "model": model.meta.get("model")})
            else:
                self._send(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/predict":
                return self._send(404, {"error": f"no route {self.path}"})
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return self._send(400, {"error": "Content-Length must be a number of bytes"})
            if length < 0:
                return self._send(400, {"error": "Content-Length must not be negative"})
            if length > MAX_BODY:
                return self._send(413, {"error": f"body larger than {MAX_BODY} bytes"})
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                if "instances" in body:
                    rows = np.asarray(body["instances"], dtype=np.float64)
                elif "records" in body:
                    rows = model.rows_from_records(body["records"])
                else:
                    raise RunnerError('send {"instances": [[...], ...]} or {"records": [{...}, ...]}')
                labels, proba = model.predict(rows)
            except (RunnerError, ValueError, TypeError) as exc:
                return self._send(400, {"error": str(exc)})
            result = {"predictions": labels}
            if proba is not None:
                result["probabilities"] = proba
            self._send(200, result)

        def log_message(self, fmt: str, *args: object) -> None:
            sys.stderr.write("runner: " + fmt % args + "\n")

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score rows with this edge bundle's model.")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="score a CSV or .npy file")
    s.add_argument("input", type=Path)
    s.add_argument("--out", type=Path, default=None)
    h = sub.add_parser("serve", help="a small HTTP server: POST /predict, GET /health")
    h.add_argument("--host", default="127.0.0.1")
    h.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    try:
        model = Model(HERE)
        if args.command == "score":
            count = score(model, args.input, args.out)
            if args.out is not None:
                print(f"scored {count} rows into {args.out}", file=sys.stderr)
            return 0
        server = ThreadingHTTPServer((args.host, args.port), handler_for(model))
        print(f"runner: serving on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        return 0
    except (RunnerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
