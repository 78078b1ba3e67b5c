"""`keel env show/verify/build MODEL_URI`: a model's pinned dependencies."""

from __future__ import annotations

import subprocess
from pathlib import Path

import typer

from keel.cli.common import err, out, print_json, settings_from

app = typer.Typer(help="A model's dependency lock: show it, check it, build an environment from it.",
                  no_args_is_help=True)


def _lock(ctx: typer.Context, uri: str):
    from keel.envs.lock import EnvironmentLock
    from keel.formats.api import resolve_bundle
    from keel.formats.bundle import LOCK, read_manifest, verify_files

    folder, _ = resolve_bundle(uri, settings_from(ctx))
    manifest = read_manifest(folder)
    verify_files(manifest)  # the lock is one of the hashed files
    return manifest, EnvironmentLock.from_text((folder / LOCK).read_text())


@app.command("show")
def show(ctx: typer.Context, uri: str = typer.Argument(..., help="Model URI or bundle folder."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the model's requirements.lock (Python, platform, pinned packages)."""
    manifest, lock = _lock(ctx, uri)
    if as_json:
        return print_json({"format": manifest.format, "libraries": manifest.data.get("libraries", {}),
                           **lock.to_dict()})
    out.print(lock.to_text(), markup=False, end="")


@app.command("verify")
def verify(ctx: typer.Context, uri: str = typer.Argument(..., help="Model URI or bundle folder."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Compare the lock with this interpreter; exit 1 listing every mismatch."""
    from keel.envs.lock import verify as verify_lock

    _, lock = _lock(ctx, uri)
    problems = verify_lock(lock)
    if as_json:
        print_json([{"kind": m.kind, "name": m.name, "expected": m.expected, "found": m.found} for m in problems])
    elif problems:
        err.print(f"{len(problems)} mismatch(es) with this interpreter:", markup=False)
        for m in problems:
            err.print(f"  {m}", markup=False)
    else:
        out.print(f"environment matches the model's lock ({len(lock.packages)} packages, Python {lock.python})")
    if problems:
        raise typer.Exit(1)


@app.command("build")
def build(ctx: typer.Context, uri: str = typer.Argument(..., help="Model URI or bundle folder."),
          path: Path = typer.Option(..., "--path", help="Folder for the new virtual environment."),
          check: bool = typer.Option(True, "--check/--no-check", help="Load the model in the new environment.")) -> None:
    """Create a virtual environment from the lock (uv, else pip) in which the model loads."""
    from keel.envs.build import build_environment
    from keel.envs.self_spec import keel_requirement

    manifest, lock = _lock(ctx, uri)
    python = build_environment(lock, path, extra=[keel_requirement()])
    out.print(f"built {path} from the lock ({len(lock.packages)} packages): {python}")
    if check:
        code = ("import sys, keel; m = keel.load_model(sys.argv[1], strict=True, allow_unverified_pickle=True); "
                "print(type(m.native).__name__)")
        proc = subprocess.run([str(python), "-c", code, str(manifest.path)], capture_output=True, text=True)
        if proc.returncode != 0:
            from keel.errors import KeelError

            raise KeelError(f"the model does not load in {path}: {proc.stderr.strip().splitlines()[-1]}")
        out.print(f"checked: the model loads there ({proc.stdout.strip()})")
