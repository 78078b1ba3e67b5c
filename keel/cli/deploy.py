"""`keel deploy MODEL_URI --target T` and `keel deployments list/show/stop/profiles`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from keel.cli.common import client_from, fmt_time, out, print_json, settings_from

deployments_app = typer.Typer(help="Deployments: list, show and stop them; check the resource profiles.",
                              no_args_is_help=True)


def deploy(
    ctx: typer.Context,
    uri: str = typer.Argument(..., metavar="MODEL_URI", help="models:/NAME/VERSION, models:/NAME@ALIAS, "
                                                             "runs:/RUN/PATH or a bundle folder."),
    target: str = typer.Option(..., "--target", "-t",
                               help="local, systemd, docker, kubernetes, kserve, edge or job."),
    stage: Optional[str] = typer.Option(None, "--stage", "-s",
                                        help="Resource profile: [profiles.STAGE] in keel.toml (default: none)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o",
                                           help="New folder for the files (default: $KEEL_HOME/deployments/...)."),
    port: Optional[int] = typer.Option(None, "--port", help="Port the server listens on (8080)."),
    name: Optional[str] = typer.Option(None, "--name", help="Deployment name (default: from the model)."),
    image: Optional[str] = typer.Option(None, "--image", help="Container image (kubernetes, kserve, docker tag)."),
    bundle_from: Optional[str] = typer.Option(None, "--bundle-from",
                                              help="kubernetes/kserve: fetch, image or pvc:CLAIM."),
    install_dir: Optional[str] = typer.Option(None, "--install-dir", help="systemd: where install.sh puts it."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="edge: int8 dynamic quantization."),
    tolerance: Optional[float] = typer.Option(None, "--quantize-tolerance",
                                              help="edge: largest share of changed labels accepted (0.01)."),
    sample: Optional[Path] = typer.Option(None, "--sample", help="edge: CSV/.npy rows to check quantization on."),
    build: bool = typer.Option(False, "--build", help="docker: build the image with buildah."),
    score_input: Optional[str] = typer.Option(None, "--input", help="job: the .csv/.parquet file to score (URL)."),
    score_output: Optional[str] = typer.Option(None, "--output", help="job: the .parquet file to write (URL)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="job: rows scored at a time (10000)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Deploy a model: write the target's files (and start it, for local), recorded and audited."""
    from keel.service.deployments import deploy as run_deploy

    options = {"bundle_from": bundle_from, "install_dir": install_dir, "quantize": quantize,
               "quantize_tolerance": tolerance, "sample": str(sample) if sample else None, "build": build,
               "input": score_input, "output": score_output, "batch_size": batch_size}
    record = run_deploy(client_from(ctx).ctx, uri, target=target, stage=stage, out=out_dir, port=port, name=name,
                        image=image, options=options)
    if as_json:
        return print_json(record)
    out.print(f"deployment {record.id}: {record.model_uri} -> {record.target} ({record.status}, stage "
              f"{record.stage}), {len(record.files)} files in {record.out_dir}", markup=False)
    if record.state.get("url"):
        out.print(f"serving on {record.state['url']} (pid {record.state['pid']}, log {record.state['log']})",
                  markup=False)
    if record.state.get("quantization"):
        q = record.state["quantization"]
        out.print(f"int8: label agreement {q['label_agreement']:.4f} on {q['rows']} rows, "
                  f"{q['size_before']} -> {q['size_after']} bytes", markup=False)
    for note in record.notes:
        out.print(f"next: {note}", markup=False)


@deployments_app.command("list")
def list_cmd(ctx: typer.Context,
             model: Optional[str] = typer.Option(None, "--model", help="Only this registered model."),
             target: Optional[str] = typer.Option(None, "--target", help="Only this target."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List deployments, newest first (a local server that exited shows as stopped)."""
    from rich.table import Table

    from keel.service.deployments import list_deployments

    found = list_deployments(client_from(ctx).ctx, model=model, target=target, live=True)
    if as_json:
        return print_json(found)
    table = Table("id", "target", "stage", "model", "status", "by", "created (UTC)", "folder")
    for d in found:
        model_text = f"{d.model_name}/{d.model_version}" if d.model_name else d.model_uri
        table.add_row(d.id[:12], d.target, d.stage, model_text, d.status, d.created_by, fmt_time(d.created_at),
                      d.out_dir)
    out.print(table)


@deployments_app.command("show")
def show(ctx: typer.Context, deployment_id: str = typer.Argument(..., metavar="ID", help="Id or unique prefix."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show one deployment: model, profile, files with their sha256, state."""
    from keel.service.deployments import get_deployment

    d = get_deployment(client_from(ctx).ctx, deployment_id, live=True)
    if as_json:
        return print_json(d)
    for key in ("id", "target", "stage", "model_uri", "model_name", "model_version", "bundle_sha256", "status",
                "out_dir", "created_by"):
        out.print(f"{key}: {getattr(d, key)}", markup=False)
    out.print(f"created: {fmt_time(d.created_at)}", markup=False)
    if d.stopped_at:
        out.print(f"stopped: {fmt_time(d.stopped_at)} by {d.stopped_by}", markup=False)
    for key, value in d.state.items():
        out.print(f"state.{key}: {value}", markup=False)
    out.print(f"files ({len(d.files)}):", markup=False)
    for rel, sha in sorted(d.files.items()):
        out.print(f"  {sha}  {rel}", markup=False)


@deployments_app.command("stop")
def stop_cmd(ctx: typer.Context, deployment_id: str = typer.Argument(..., metavar="ID", help="Id or unique prefix."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Stop a deployment (ends a local server; marks others stopped). Its files stay."""
    from keel.service.deployments import stop

    d = stop(client_from(ctx).ctx, deployment_id)
    if as_json:
        return print_json(d)
    out.print(f"deployment {d.id} stopped", markup=False)


@deployments_app.command("profiles")
def profiles(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Check keel.toml's [profiles] and print them (exit 1 naming the first bad field)."""
    from keel.deploy.profiles import load_profiles

    found = load_profiles(settings_from(ctx).profiles)
    if as_json:
        return print_json({stage: p.to_dict() for stage, p in found.items()})
    if not found:
        out.print("no [profiles.STAGE] tables in keel.toml", markup=False)
    for stage, p in found.items():
        parts = [f"{k}={v}" for k, v in p.to_dict().items() if k != "stage" and v not in (None, {}, [], 0)]
        out.print(f"{stage}: {' '.join(parts) or '(defaults)'}", markup=False)
