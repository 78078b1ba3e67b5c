"""edge: a folder that scores with only numpy and onnxruntime installed (no keel).

It holds the model as ONNX (the model itself if it is one, else its ONNX copy
that passed the parity check when it was logged), ``runner.py`` (batch
scoring of CSV/.npy and a small HTTP mode), ``signature.json``, a
``requirements.lock`` pinning numpy and onnxruntime (and what they need) at
the versions installed here, and ``SHA256SUMS``, which the runner checks
before it loads anything. ``--quantize int8`` quantizes the model and records
how far its labels move (``quantization.json``), refusing beyond a tolerance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keel.deploy.base import DeploySpec, Plan, Target
from keel.deploy.files import checksums_text
from keel.deploy.quantize import DEFAULT_TOLERANCE, n_features, quantize_checked
from keel.errors import InvalidInput, NotFound

RUNNER = Path(__file__).with_name("edge_runner.py")


def onnx_model(spec: DeploySpec) -> tuple[bytes, str]:
    """The ONNX bytes to ship and where they came from."""
    from keel.formats.onnx import FILE

    if spec.manifest.get("format") == "onnx":
        return (spec.bundle / FILE).read_bytes(), spec.model_uri
    copy = _onnx_copy_uri(spec)
    from keel.formats.api import resolve_bundle
    from keel.formats.bundle import read_manifest, verify_files

    folder, _ = resolve_bundle(copy, spec.settings)
    verify_files(read_manifest(folder))
    return (folder / FILE).read_bytes(), copy


def _onnx_copy_uri(spec: DeploySpec) -> str:
    from keel.formats.onnx_copy import tag_key
    from keel.tracking.fluent import client_for

    uri = spec.model_uri
    if uri.startswith("models:/"):
        from keel.service.registry import resolve_uri

        client = client_for(spec.settings)
        version = resolve_uri(client.ctx, uri)
        run_id, path = version.run_id, version.artifact_path
    elif uri.startswith("runs:/"):
        client = client_for(spec.settings)
        run_id, _, path = uri[len("runs:/"):].partition("/")
    else:
        raise InvalidInput(f"{uri} is a {spec.manifest.get('format')} model folder; the edge target needs ONNX: "
                           "deploy its models:/ or runs:/ URI (whose ONNX copy was parity-checked when it was "
                           "logged), or save the model as ONNX")
    raw = client.get_run(run_id).tags.get(tag_key(path.rstrip("/")))
    status = json.loads(raw) if raw else {"status": "never attempted"}
    if status.get("status") != "passed":
        why = status.get("reason") or ", ".join(f"{k}={v}" for k, v in status.items() if k != "status")
        raise NotFound(f"{uri} has no ONNX copy that passed its parity check (status: {status.get('status')}"
                       f"{'; ' + why if why else ''}); the edge target needs one")
    return status["uri"]


def signature(spec: DeploySpec, onnx_bytes: bytes) -> dict[str, Any]:
    sig = spec.manifest.get("signature") or {}
    columns = [i["name"] for i in sig.get("inputs", [])] if sig.get("columnar") else None
    return {"model": spec.model_name or spec.name, "version": spec.model_version, "source": spec.model_uri,
            "onnx_source": spec.extras.get("onnx_source"), "n_features": n_features(onnx_bytes),
            "columns": columns, "inputs": sig.get("inputs", []),
            "quantization": spec.extras.get("quantization")}


class EdgeTarget(Target):
    name = "edge"

    def check(self, spec: DeploySpec) -> None:
        super().check(spec)
        quantize = spec.options.get("quantize")
        if quantize not in (None, "int8"):
            raise InvalidInput(f"--quantize supports int8 only, got {quantize!r}")
        tolerance = spec.options.get("quantize_tolerance")
        if tolerance is not None and not 0 <= tolerance < 1:
            raise InvalidInput(f"--quantize-tolerance is a share of labels from 0 to below 1, got {tolerance!r}")

    def prepare(self, spec: DeploySpec) -> DeploySpec:
        from keel.envs.lock import capture

        data, source = onnx_model(spec)
        extras: dict[str, Any] = {"onnx_source": source, "quantization": None,
                                  "lock": capture(["numpy", "onnxruntime"]).to_text()}
        if spec.options.get("quantize") == "int8":
            sample = _read_sample(spec.options.get("sample"))
            tolerance = spec.options.get("quantize_tolerance")
            tolerance = DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
            data, extras["quantization"] = quantize_checked(data, tolerance=tolerance, sample=sample)
        extras["onnx"] = data
        return spec.with_extras(**extras)

    def plan(self, spec: DeploySpec) -> Plan:
        onnx_bytes = spec.extras["onnx"]
        files: dict[str, bytes | Path] = {
            "model.onnx": onnx_bytes,
            "runner.py": RUNNER,
            "signature.json": (json.dumps(signature(spec, onnx_bytes), indent=2, sort_keys=True) + "\n").encode(),
            "requirements.lock": spec.extras["lock"].encode(),
        }
        if spec.extras.get("quantization"):
            files["quantization.json"] = (json.dumps(spec.extras["quantization"], indent=2, sort_keys=True)
                                          + "\n").encode()
        files["SHA256SUMS"] = checksums_text(files)
        return Plan(files, executable=frozenset({"runner.py"}),
                    notes=("pip install -r {out}/requirements.lock",
                           "python {out}/runner.py score rows.csv --out predictions.csv",
                           "python {out}/runner.py serve --port 8080"))


def _read_sample(path: Any) -> Any:
    if path is None:
        return None
    import numpy as np

    file = Path(path)
    if not file.is_file():
        raise InvalidInput(f"--sample {file}: no such file")
    if file.suffix == ".npy":
        return np.load(file, allow_pickle=False)
    try:
        return np.genfromtxt(file, delimiter=",", skip_header=1 if _has_header(file) else 0, dtype=np.float64)
    except ValueError as exc:
        raise InvalidInput(f"--sample {file}: not a numeric CSV ({exc})") from None


def _has_header(file: Path) -> bool:
    first = file.open().readline().strip().split(",")
    try:
        [float(v) for v in first]
        return False
    except ValueError:
        return True
