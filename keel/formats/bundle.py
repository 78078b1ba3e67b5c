"""The model bundle: a folder with ``keel.yaml``, the format's files and ``requirements.lock``.

``keel.yaml`` records the format and its version, the library versions, the
signature, every file with its sha256, the environment and lineage ids.
Saving writes into a temporary sibling folder and renames it into place, so a
crash never leaves a half-written bundle behind; loading checks every file's
hash before any of them is read.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from keel.errors import IntegrityError, InvalidInput, NotFound, PermissionDenied
from keel.formats.base import Saved, as_frame

MANIFEST = "keel.yaml"
LOCK = "requirements.lock"
BUNDLE_VERSION = 1


class EnvironmentMismatch(UserWarning):
    """The running interpreter differs from the model's requirements.lock."""


class UnverifiedPickle(UserWarning):
    """A pickle was loaded without a hash recorded by keel's store."""


@dataclass(frozen=True)
class Manifest:
    """The parsed ``keel.yaml`` of a bundle."""

    data: dict[str, Any]
    path: Path

    @property
    def format(self) -> str:
        return self.data["format"]

    @property
    def files(self) -> dict[str, str]:
        return self.data["files"]

    def saved(self) -> Saved:
        d = self.data
        return Saved(files=[f for f in d["files"] if f != LOCK], modules=d.get("modules", []),
                     meta=d.get("meta", {}), pickles=d.get("pickles", []), code=d.get("code", []))


def save_bundle(
    model: Any,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    input_example: Any = None,
    lineage: dict[str, Any] | None = None,
    source_commit: str | None = None,
) -> Manifest:
    """Save ``model`` as a bundle folder at ``path`` (which must not exist yet)."""
    import yaml

    from keel.envs.lock import capture
    from keel.formats.registry import detect_format, get_format
    from keel.formats.signature import infer_outputs, infer_signature, prepare_input

    target = Path(path)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidInput(f"cannot save a model to {target}: it exists and is not an empty folder")
    plugin = get_format(format) if format else detect_format(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        saved = plugin.save(model, staging)
        signature, outputs, modules = None, {}, list(saved.modules)
        if input_example is not None:
            signature = infer_signature(input_example)
            predictor = plugin.wrap(model, saved)
            frame = as_frame(predictor, signature.columnar)
            x = prepare_input(signature, input_example, as_frame=frame)
            output = predictor.predict(x)
            signature = infer_signature(input_example, output)
            outputs["predict"] = infer_outputs(output, "predict")
            if callable(getattr(predictor, "predict_proba", None)):
                outputs["predict_proba"] = infer_outputs(predictor.predict_proba(x), "predict_proba")
            if frame:
                modules.append("pandas")  # the loaded model will be handed DataFrames
        lock = capture(modules=[*modules, *_code_imports(staging, saved.code)], source_commit=source_commit)
        (staging / LOCK).write_text(lock.to_text())
        files = {rel: sha256_file(staging / rel) for rel in sorted({*saved.files, *saved.code, LOCK})}
        manifest = {
            "keel_bundle": BUNDLE_VERSION,
            "format": plugin.name,
            "format_version": plugin.version,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "libraries": {name: lock.packages[name] for name in _library_dists(modules, lock.packages)},
            "signature": signature.to_dict() if signature is not None else None,
            "outputs": {method: [_spec(s) for s in specs] for method, specs in outputs.items()},
            "files": files,
            "pickles": saved.pickles,
            "code": saved.code,
            "modules": modules,
            "meta": saved.meta,
            "environment": {"python": lock.python, "implementation": lock.implementation,
                            "platform": lock.platform, "lock": LOCK, "source_commit": source_commit},
            "lineage": lineage or {},
        }
        (staging / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False))
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Manifest(manifest, target)


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Parse and check the shape of a bundle's keel.yaml (no hashes checked yet)."""
    import yaml

    folder = Path(path)
    file = folder / MANIFEST
    if not file.is_file():
        raise NotFound(f"{folder} is not a keel model bundle: {MANIFEST} is missing")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise IntegrityError(f"{file} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or data.get("keel_bundle") != BUNDLE_VERSION or not isinstance(data.get("files"), dict):
        raise IntegrityError(f"{file} is not a keel bundle manifest (version {BUNDLE_VERSION})")
    return Manifest(data, folder)


def verify_files(manifest: Manifest) -> None:
    """Check every listed file against its sha256; IntegrityError names the first bad one."""
    from keel.artifacts.paths import safe_join

    for rel, expected in manifest.files.items():
        file = safe_join(manifest.path, rel)
        if not file.is_file():
            raise IntegrityError(f"model bundle {manifest.path}: file {rel} is missing")
        if sha256_file(file) != expected:
            raise IntegrityError(
                f"model bundle {manifest.path}: file {rel} was changed after the model was saved "
                f"(sha256 does not match keel.yaml); refusing to load it"
            )


def check_environment(manifest: Manifest, *, strict: bool) -> list[str]:
    """Compare the bundle's lock with this interpreter: warn, or refuse under ``strict``."""
    from keel.envs.lock import EnvironmentLock, verify

    lock = EnvironmentLock.from_text((manifest.path / LOCK).read_text())
    problems = [str(m) for m in verify(lock)]
    if problems:
        message = f"model {manifest.path} was saved in another environment: " + "; ".join(problems[:10])
        if len(problems) > 10:
            message += f"; and {len(problems) - 10} more (keel env verify shows all)"
        if strict:
            raise IntegrityError(message + " (strict: refusing to load; rebuild with `keel env build`)")
        warnings.warn(message, EnvironmentMismatch, stacklevel=3)
    return problems


def check_pickles(manifest: Manifest, trusted: Iterable[str], *, allow_unverified: bool) -> None:
    """Refuse a pickle unless its sha256 was recorded by keel's store when the model was logged."""
    known = set(trusted)
    for rel in manifest.data.get("pickles", []):
        sha = manifest.files.get(rel)
        if sha in known:
            continue
        if not allow_unverified:
            raise PermissionDenied(
                f"model {manifest.path} contains the pickle {rel}, whose sha256 {sha} was not recorded by "
                "keel's store when a model was logged; loading a pickle runs code. Load it through its "
                "runs:/ or models:/ URI, or pass allow_unverified_pickle=True if you trust its origin"
            )
        warnings.warn(
            f"LOADING AN UNVERIFIED PICKLE: {manifest.path / rel} (sha256 {sha}) was not recorded by keel's "
            "store; it can run arbitrary code", UnverifiedPickle, stacklevel=3)
        print(f"keel: WARNING: loading unverified pickle {manifest.path / rel}", file=sys.stderr)


def _spec(spec: Any) -> dict[str, Any]:
    return {"name": spec.name, "dtype": spec.dtype, "shape": list(spec.shape)}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _code_imports(folder: Path, code: list[str]) -> set[str]:
    if not code:
        return set()
    from keel.envs.lock import imports_of_source

    local = {Path(rel).stem for rel in code}  # the captured files themselves are not packages
    return imports_of_source([folder / rel for rel in code]) - local


def _library_dists(modules: list[str], packages: dict[str, str]) -> list[str]:
    from keel.envs.lock import distributions_for_modules

    canonical = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions_for_modules(modules)}
    return sorted(d for d in canonical if d in packages)
