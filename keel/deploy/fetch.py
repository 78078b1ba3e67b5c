"""``python -m keel.deploy.fetch MODEL_URI DEST``: the Kubernetes init step that fetches a bundle.

It resolves the URI against the store named by KEEL_STORE_URI and
KEEL_ARTIFACT_URI (the ``keel-store`` Secret), checks every file's sha256,
and copies the bundle into DEST (an emptyDir the server mounts read-only).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def fetch(uri: str, dest: str | Path, settings=None) -> Path:
    """Copy the verified bundle of ``uri`` into ``dest`` (which must not exist or be empty).

    Idempotent: init steps run again when a pod restarts, and the emptyDir
    keeps what the first run copied. A ``dest`` that already holds this very
    bundle (same manifest, every file verifying) is left as it is; one that
    holds anything else is refused, never overwritten.
    """
    from keel.deploy.files import check_out
    from keel.formats.api import resolve_bundle
    from keel.formats.bundle import MANIFEST, read_manifest, sha256_file, verify_files

    folder, _ = resolve_bundle(uri, settings)
    manifest = read_manifest(folder)
    verify_files(manifest)
    existing = Path(dest).expanduser().absolute()
    if (existing / MANIFEST).is_file() and sha256_file(existing / MANIFEST) == sha256_file(folder / MANIFEST):
        verify_files(read_manifest(existing))  # a file changed since the first copy fails here
        return existing
    target = check_out(dest)
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(folder, staging)
    verify_files(read_manifest(staging))  # what the server will read is what the store vouched for
    if target.exists():
        target.rmdir()
    staging.rename(target)
    return target


def main(argv: list[str] | None = None) -> int:
    from keel.errors import KeelError

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m keel.deploy.fetch MODEL_URI DEST", file=sys.stderr)
        return 2
    try:
        path = fetch(args[0], args[1])
    except KeelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"fetched {args[0]} into {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
