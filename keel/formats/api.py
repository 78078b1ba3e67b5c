"""save_model, load_model, log_model: bundles on disk and in runs.

Model URIs: a bundle folder on disk, ``runs:/RUN_ID/PATH`` (a model logged
with a run), and ``models:/NAME/VERSION`` / ``models:/NAME@ALIAS`` (a
registered version, by number or alias).
"""

from __future__ import annotations

import importlib.util
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.errors import InvalidInput, NotFound
from keel.formats.bundle import (
    MANIFEST, Manifest, check_environment, check_pickles, read_manifest, save_bundle, sha256_file, verify_files,
)
from keel.formats.loaded import LoadedModel
from keel.settings import Settings

_RUNS_URI = re.compile(r"^runs:/(?P<run>[^/]+)/(?P<path>.+)$")


@dataclass(frozen=True)
class ModelInfo:
    """What ``log_model`` recorded."""

    uri: str
    run_id: str
    artifact_path: str
    format: str
    manifest_sha256: str
    signature: dict[str, Any] | None
    onnx: str  # "pending" (converting in the background), or why there will be no ONNX copy
    registered: str | None = None  # models:/NAME/VERSION when register= was given

    @property
    def version(self) -> int | None:
        """The registered version number (None unless ``register=`` was given)."""
        return int(self.registered.rsplit("/", 1)[1]) if self.registered else None

    @property
    def name(self) -> str | None:
        """The registered model name (None unless ``register=`` was given)."""
        return self.registered[len("models:/"):].rsplit("/", 1)[0] if self.registered else None


def save_model(model: Any, path: str | os.PathLike[str], *, format: str | None = None,
               input_example: Any = None) -> Manifest:
    """Save ``model`` as a bundle folder (keel.yaml + files + requirements.lock).

    Args:
        model: a scikit-learn, XGBoost or LightGBM model, an ONNX ModelProto, or
            any object with ``predict`` (custom Python; its class must live in a module).
        path: a folder that does not exist yet (or is empty).
        format: force a format plug-in instead of detecting it.
        input_example: a few rows of input; the signature is inferred from it and
            enforced at every prediction.
    """
    from keel.tracking.source import current_source

    return save_bundle(model, path, format=format, input_example=input_example,
                       source_commit=current_source().commit)


def log_model(model: Any, name: str = "model", *, input_example: Any = None, format: str | None = None,
              register: str | None = None, run_id: str | None = None, settings: Settings | None = None) -> ModelInfo:
    """Save ``model`` into the active run (or ``run_id``) as the artifact folder ``name``.

    ``register="churn"`` also registers it as the next version of the registered
    model ``churn`` (created if needed); ``ModelInfo.registered`` is its URI.
    """
    from keel.artifacts.paths import normalize_artifact_path
    from keel.tracking.fluent import active_run, client_for

    artifact_path = normalize_artifact_path(name)
    if register is not None:  # refuse a bad name before anything is written
        from keel.service.registry import check_model_name

        check_model_name(register)
    active = active_run()
    if run_id is None:
        if active is None:
            raise InvalidInput("log_model needs a run: call it inside `with keel.start_run():` or pass run_id=")
        run_id, client = active.id, active.client
    else:
        client = client_for(settings)
    run = client.get_run(run_id)
    lineage = {"run_id": run_id, "experiment_id": run.experiment_id,
               "datasets": [{"name": d.name, "digest": d.digest, "context": d.context}
                            for d in client.run_datasets(run_id)]}
    with tempfile.TemporaryDirectory(prefix="keel-model-") as tmp:
        manifest = save_bundle(model, Path(tmp) / "bundle", format=format, input_example=input_example,
                               lineage=lineage, source_commit=run.source.commit)
        infos = client.log_artifacts(run_id, manifest.path, artifact_path)
    manifest_sha = next(i.sha256 for i in infos if i.path == f"{artifact_path}/{MANIFEST}")
    client.set_tags(run_id, {f"keel.model.{artifact_path}": f"{manifest.format}:{manifest_sha}"})
    registered = None
    if register is not None:
        from keel.service.registry import register_version

        registered = register_version(client.ctx, register, run_id, artifact_path, format=manifest.format).uri
    onnx = _start_onnx_copy(client, run_id, artifact_path, manifest, input_example)
    return ModelInfo(f"runs:/{run_id}/{artifact_path}", run_id, artifact_path, manifest.format, manifest_sha,
                     manifest.data.get("signature"), onnx, registered)


def _start_onnx_copy(client: Any, run_id: str, name: str, manifest: Manifest, example: Any) -> str:
    """Start the background ONNX conversion where it applies; say why not otherwise."""
    from keel.formats import onnx_copy

    if manifest.format not in onnx_copy.CONVERTIBLE:
        return f"not applicable to {manifest.format} models"
    if example is None:
        return "not attempted: no input_example to check parity on"
    converter = "skl2onnx" if manifest.format == "sklearn" else "onnxmltools"
    if any(importlib.util.find_spec(m) is None for m in ("onnxruntime", converter)):
        return "not attempted: install keel[onnx] for ONNX copies"
    client.set_tags(run_id, {onnx_copy.tag_key(name): '{"status": "pending"}'})
    onnx_copy.start(client, run_id, name, example)
    return "pending"


def load_model(uri: str | os.PathLike[str], *, strict: bool = False, allow_unverified_pickle: bool = False,
               settings: Settings | None = None) -> LoadedModel:
    """Load a model from a bundle path, ``runs:/`` or ``models:/`` URI, hash- and environment-checked.

    Every file's sha256 is checked before anything is read. A mismatch between
    the model's requirements.lock and this interpreter warns, or refuses with
    ``strict=True``. A pickle (custom Python models) loads only if its sha256
    was recorded by keel's store when the model was logged, unless
    ``allow_unverified_pickle=True``.
    """
    from keel.formats.registry import get_format

    text = os.fspath(uri)
    folder, trusted = resolve_bundle(text, settings)
    manifest = read_manifest(folder)
    verify_files(manifest)
    if manifest.data.get("pickles") and trusted is None:
        trusted = _hashes_known_to_store(manifest, settings)
    check_pickles(manifest, trusted or (), allow_unverified=allow_unverified_pickle)
    check_environment(manifest, strict=strict)
    plugin = get_format(manifest.format)
    if manifest.data.get("format_version", 0) > plugin.version:
        raise InvalidInput(f"model {text} uses {manifest.format} format version {manifest.data['format_version']}, "
                           f"newer than this keel reads ({plugin.version}); upgrade keel")
    return LoadedModel(manifest, plugin.load(folder, manifest.saved()), text)


def resolve_bundle(uri: str | os.PathLike[str], settings: Settings | None = None) -> tuple[Path, set[str] | None]:
    """The local bundle folder for a model URI, and the file hashes the store vouches for (None for a path)."""
    text = os.fspath(uri)
    if text.startswith("models:/"):
        return _fetch_registered(text, settings)
    match = _RUNS_URI.match(text)
    if match:
        return _fetch_run_model(match["run"], match["path"], settings)
    if "://" in text or text.startswith("runs:"):
        raise InvalidInput(f"unsupported model URI {text!r}: use runs:/RUN_ID/PATH or a bundle folder")
    return Path(text), None


def _fetch_registered(uri: str, settings: Settings | None) -> tuple[Path, set[str]]:
    """A registry URI's bundle; its keel.yaml must still be the one pinned at registration."""
    from keel.errors import IntegrityError
    from keel.service.registry import resolve_uri
    from keel.tracking.fluent import client_for

    version = resolve_uri(client_for(settings).ctx, uri)
    folder, trusted = _fetch_run_model(version.run_id, version.artifact_path, settings)
    if sha256_file(folder / MANIFEST) != version.manifest_sha256:
        raise IntegrityError(f"{uri} ({version.source}): keel.yaml differs from the one registered as version "
                             f"{version.version}; refusing to load it")
    return folder, trusted


def _fetch_run_model(run_id: str, path: str, settings: Settings | None) -> tuple[Path, set[str]]:
    """Download a run's model folder into the cache (each file hash-verified); its shas are trusted."""
    from keel.artifacts.paths import normalize_artifact_path
    from keel.tracking.fluent import client_for

    client = client_for(settings)
    prefix = normalize_artifact_path(path)
    infos = client.list_artifacts(run_id, prefix)
    manifest = next((i for i in infos if i.path == f"{prefix}/{MANIFEST}"), None)
    if manifest is None:
        raise NotFound(f"runs:/{run_id}/{prefix} is not a logged model (no {MANIFEST} there)")
    cache = client.settings.home / "cache" / "models" / manifest.sha256
    cached = cache / prefix / MANIFEST
    # A cached copy is reused only if its manifest is still the one the store
    # recorded; the manifest then vouches for every other file (verify_files).
    if not _cached_ok(cached, manifest.sha256):
        _download_atomically(client, run_id, prefix, cache / prefix, manifest.sha256)
    return cache / prefix, {i.sha256 for i in infos}


def _cached_ok(manifest_path: Path, sha: str) -> bool:
    return manifest_path.is_file() and sha256_file(manifest_path) == sha


def _download_atomically(client: Any, run_id: str, prefix: str, target: Path, sha: str) -> None:
    """Fill the cached bundle folder all at once: download beside it, then rename into place.

    Another thread or process loading the same model (the background ONNX
    copy, a second server worker) then never sees a half-written bundle.
    """
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name[:16]}-", dir=target.parent))
    try:
        client.download_artifacts(run_id, tmp, prefix)
        if target.exists() and not _cached_ok(target / MANIFEST, sha):
            shutil.rmtree(target, ignore_errors=True)  # a broken copy: the rename below needs its name
        try:
            os.rename(tmp / prefix, target)
        except OSError:
            if not _cached_ok(target / MANIFEST, sha):  # not another loader's complete copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _hashes_known_to_store(manifest: Manifest, settings: Settings | None) -> set[str]:
    """Which of the bundle's pickle hashes keel's store recorded as logged artifacts."""
    import sqlalchemy as sa

    from keel.store.schema import artifacts
    from keel.tracking.fluent import client_for

    shas = [manifest.files[p] for p in manifest.data.get("pickles", []) if p in manifest.files]
    client = client_for(settings)
    with client.ctx.store.read() as conn:
        return set(conn.execute(sa.select(artifacts.c.sha256).where(artifacts.c.sha256.in_(shas))).scalars())
